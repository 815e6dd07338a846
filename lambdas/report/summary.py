"""What a run's report leaves outside report.md: the ledger's SUMMARY row and the short SNS message."""

from __future__ import annotations

from typing import Any

from lambdas.report import formats

MESSAGE_MAX_BYTES = 1024  # SNS allows far more; this keeps e-mail and chat notifications readable


def summary_message(report: dict[str, Any], report_md_uri: str) -> str:
    """A short plain-text summary (at most 1 KB) for the SNS notification."""
    totals, best = report["totals"], report["best"]
    parts = [
        f"Fine-tuning run {report['run_id']}: {totals['jobs']} jobs, {totals['completed']} completed, "
        f"{totals['failed']} failed, {totals['stopped']} stopped; total cost {formats.usd(totals['cost_usd'])}.",
    ]
    for label, key, fmt in (
        ("Best accuracy", "accuracy", formats.pct),
        ("Cheapest", "cost", formats.usd),
        ("Best cost per accuracy point", "cost_per_accuracy_point", formats.per_point),
    ):
        if best[key] is not None:
            parts.append(f"{label}: {best[key]['model']} {best[key]['approach']} ({fmt(best[key]['value'])}).")
    parts.append(f"Report: {report_md_uri}")
    encoded = "\n".join(parts).encode()
    if len(encoded) <= MESSAGE_MAX_BYTES:
        return encoded.decode()
    return encoded[: MESSAGE_MAX_BYTES - 3].decode(errors="ignore") + "..."


def summary_fields(report: dict[str, Any], report_json_uri: str, report_md_uri: str) -> dict[str, Any]:
    """What the ledger's SUMMARY row holds for a run."""
    best = report["best"]

    def job_of(criterion: str) -> str | None:
        return best[criterion]["job_name"] if best[criterion] else None

    return {
        **report["totals"],
        "best_accuracy_job": job_of("accuracy"),
        "best_cost_job": job_of("cost"),
        "best_cost_per_point_job": job_of("cost_per_accuracy_point"),
        "report_json_uri": report_json_uri,
        "report_md_uri": report_md_uri,
    }
