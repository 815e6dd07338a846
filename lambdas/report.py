"""The run report: rank a run's jobs by cost per accuracy point and say which job wins on what.

`build_report` and `render_markdown` are pure (ledger rows in, dict/str out) so the offline demo and the CLI print
the very same table the Report Lambda writes to S3.
"""

from __future__ import annotations

import html
import json
from typing import Any

from lambdas import cost, naming
from lambdas.ledger import to_json_value

CHART_NAME = "chart.svg"  # next to report.md, which links it
MESSAGE_MAX_BYTES = 1024  # SNS allows far more; this keeps e-mail and chat notifications readable
RANKING = "cost per accuracy point = cost_usd / (eval_intent_accuracy x 100), lowest first; jobs without accuracy last"


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def resource_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a job used and what shaped it, from its (JSON) ledger row: hyperparameters, dataset, peak memory, GPU
    utilisation, time split, interruptions and the model artifact (None or empty where a row predates them)."""
    metrics = row.get("metrics") or {}
    return {
        "price_source": row.get("price_source"),
        "hyperparameters": row.get("hyperparameters") or {},
        "dataset": row.get("dataset"),
        "peak_memory_gb": _number(metrics.get("peak_memory_gb")),
        "gpu_utilization_pct": row.get("gpu_utilization_pct"),
        "gpu_memory_utilization_pct": row.get("gpu_memory_utilization_pct"),
        "time_split_seconds": row.get("time_split_seconds"),
        "interruptions": row.get("interruptions") or 0,
        "artifact_uri": row.get("artifact_uri"),
        "artifact_bytes": row.get("artifact_bytes"),
    }


def job_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One ledger row as a report line (metrics by their report names; None where a job produced none)."""
    row = to_json_value(row)
    metrics = row.get("metrics") or {}
    accuracy = _number(metrics.get("eval_intent_accuracy"))
    cost_usd = float(row.get("cost_usd") or 0)
    per_point = cost.cost_per_accuracy_point(cost_usd, accuracy) if row.get("status") == "Completed" else None
    return {
        "job_name": row.get("job_name"),
        "model": row.get("model"),
        "approach": row.get("approach"),
        "instance_type": row.get("instance_type"),
        "instance_count": row.get("instance_count"),
        "spot": row.get("spot"),
        "status": row.get("status"),
        "failure_reason": row.get("failure_reason"),
        "accuracy": accuracy,
        "parse_rate": _number(metrics.get("eval_parse_rate")),
        "rouge_l": _number(metrics.get("eval_rougeL")),
        "bertscore_f1": _number(metrics.get("eval_bertscore_f1")),
        "inference_seconds": _number(metrics.get("eval_inference_seconds")),
        "training_seconds": row.get("training_seconds") or 0,
        "billable_seconds": row.get("billable_seconds") or 0,
        "spot_savings_pct": _number(row.get("spot_savings_pct")),
        "cost_usd": cost_usd,
        "cost_per_accuracy_point": None if per_point is None else float(per_point),
        **resource_fields(row),
        # Attempts (lambdas/remedies.py): rows of one job share its base name.
        "attempt": int(row.get("attempt") or 1),
        "base_job_name": row.get("base_job_name") or row.get("job_name"),
        "failure_class": row.get("failure_class"),
        "remedy": (row.get("remedy") or {}).get("remedy"),
    }


def attempts_section(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per job with more than one attempt (or a failure Classify saw): its attempts in order, what failed, what
    was changed, how it ended and what all its attempts cost together."""
    by_job: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_job.setdefault(entry.get("base_job_name") or entry["job_name"], []).append(entry)
    section = []
    for base, attempts in sorted(by_job.items()):
        attempts = sorted(attempts, key=lambda e: e.get("attempt") or 1)
        if len(attempts) == 1 and not attempts[0].get("failure_class"):
            continue
        last = attempts[-1]
        section.append(
            {
                "base_job_name": base,
                "model": last["model"],
                "approach": attempts[0]["approach"],
                "final_status": last["status"],
                "attempts": [
                    {
                        "attempt": e.get("attempt") or 1,
                        "job_name": e["job_name"],
                        "instance_type": e["instance_type"],
                        "spot": e["spot"],
                        "status": e["status"],
                        "failure_class": e.get("failure_class"),
                        "remedy": e.get("remedy"),
                        "cost_usd": e["cost_usd"],
                    }
                    for e in attempts
                ],
                "total_cost_usd": round(sum(e["cost_usd"] for e in attempts), 4),
            }
        )
    return section


def render_attempts(section: list[dict[str, Any]]) -> list[str]:
    """The attempts section as Markdown lines (nothing when no job needed a remedy)."""
    if not section:
        return []
    lines = [
        "",
        "## Attempts",
        "",
        "| job | attempt | instance | status | failure | remedy | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for job in section:
        for a in job["attempts"]:
            lines.append(
                f"| `{job['base_job_name']}` | {a['attempt']} | {a['instance_type']}{' (spot)' if a['spot'] else ''} "
                f"| {a['status']} | {a['failure_class'] or ''} | {a['remedy'] or ''} | {_usd(a['cost_usd'])} |"
            )
        lines.append(
            f"| `{job['base_job_name']}` | **{len(job['attempts'])} attempts** | | **{job['final_status']}** | | "
            f"| **{_usd(job['total_cost_usd'])}** |"
        )
    return lines


def _best(entry: dict[str, Any] | None, value_key: str) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {
        "job_name": entry["job_name"],
        "model": entry["model"],
        "approach": entry["approach"],
        "value": entry[value_key],
    }


def build_report(run_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report document: ranked jobs, the best job per criterion, totals. Deterministic for the same rows."""
    entries = [job_entry(row) for row in rows]
    entries.sort(
        key=lambda e: (
            e["cost_per_accuracy_point"] is None,
            e["cost_per_accuracy_point"] or 0.0,
            -(e["accuracy"] or 0.0),
            e["job_name"] or "",
        )
    )
    for rank, entry in enumerate(entries, start=1):
        entry["rank"] = rank
    completed = [e for e in entries if e["status"] == "Completed"]
    scored = [e for e in completed if e["accuracy"] is not None]
    statuses = [e["status"] for e in entries]
    return {
        "run_id": run_id,
        "ranking": RANKING,
        "jobs": entries,
        "best": {
            "accuracy": _best(max(scored, key=lambda e: (e["accuracy"], -e["cost_usd"]), default=None), "accuracy"),
            "cost": _best(min(completed, key=lambda e: (e["cost_usd"], e["job_name"]), default=None), "cost_usd"),
            "cost_per_accuracy_point": _best(
                next((e for e in entries if e["cost_per_accuracy_point"] is not None), None),
                "cost_per_accuracy_point",
            ),
        },
        "totals": {
            "jobs": len(entries),
            "completed": statuses.count("Completed"),
            "failed": statuses.count("Failed"),
            "stopped": statuses.count("Stopped"),
            # Failed and stopped jobs are billed too: the total is what the run cost.
            "cost_usd": round(sum(e["cost_usd"] for e in entries), 4),
            "billable_instance_seconds": sum(e["billable_seconds"] * (e["instance_count"] or 1) for e in entries),
        },
        "attempts": attempts_section(entries),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if abs(value) >= 0.1 else f"${value:.4f}"


def _per_point(value: float | None) -> str:
    # Cents hide the differences that matter here (a LoRA job is often $0.03 per point).
    return "-" if value is None else f"${value:.4f}"


def _best_line(label: str, best: dict[str, Any] | None, fmt: Any) -> str:
    if best is None:
        return f"- **{label}**: none"
    return f"- **{label}**: {best['model']} {best['approach']} ({fmt(best['value'])}) - `{best['job_name']}`"


def _partial_banner(report: dict[str, Any]) -> str:
    return (
        f"> **Partial report.** The execution `{report['execution_name']}` ended {report['execution_status']} before "
        "the workflow finished; any job still running was stopped and is recorded with its cost so far. "
        f"{report['partial_reason']}\n"
    )


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: one ranked table, the winners, the totals; a partial report (written by
    Cleanup for an execution that ended early) opens with a banner that says so and why."""
    totals = report["totals"]
    lines = [_partial_banner(report)] if report.get("partial") else []
    lines += [
        f"# Fine-tuning run `{report['run_id']}`",
        "",
        f"{totals['jobs']} jobs: {totals['completed']} completed, {totals['failed']} failed, {totals['stopped']} "
        f"stopped. Total cost {_usd(totals['cost_usd'])} (failed and stopped jobs included).",
        "",
        f"Ranked by {report['ranking']}.",
        "",
        f"![cost per accuracy point]({CHART_NAME})",
        "",
        "| # | model | approach | instance | status | accuracy | parse rate | ROUGE-L | BERTScore F1 | inference s "
        "| cost | $/accuracy point |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["jobs"]:
        count = e["instance_count"] or 1
        instance = e["instance_type"] if count == 1 else f"{count}x {e['instance_type']}"
        lines.append(
            f"| {e['rank']} | {e['model']} | {e['approach']} | {instance}{' (spot)' if e['spot'] else ''} "
            f"| {e['status']} | {_pct(e['accuracy'])} | {_pct(e['parse_rate'])} | {_num(e['rouge_l'])} "
            f"| {_num(e['bertscore_f1'])} | {_num(e['inference_seconds'], 1)} | {_usd(e['cost_usd'])} "
            f"| {_per_point(e['cost_per_accuracy_point'])} |"
        )
    best = report["best"]
    lines += [
        "",
        "## Best",
        "",
        _best_line("Accuracy", best["accuracy"], _pct),
        _best_line("Cost", best["cost"], _usd),
        _best_line("Cost per accuracy point", best["cost_per_accuracy_point"], _per_point),
    ]
    lines += render_attempts(report.get("attempts") or [])
    failures = [e for e in report["jobs"] if e["status"] != "Completed" and e["failure_reason"]]
    if failures:
        lines += ["", "## Not completed", ""]
        lines += [f"- `{e['job_name']}` ({e['status']}): {e['failure_reason'][:300]}" for e in failures]
    return "\n".join(lines) + "\n"


def summary_message(report: dict[str, Any], report_md_uri: str) -> str:
    """A short plain-text summary (at most 1 KB) for the SNS notification."""
    totals, best = report["totals"], report["best"]
    parts = [
        f"Fine-tuning run {report['run_id']}: {totals['jobs']} jobs, {totals['completed']} completed, "
        f"{totals['failed']} failed, {totals['stopped']} stopped; total cost {_usd(totals['cost_usd'])}.",
    ]
    for label, key, fmt in (
        ("Best accuracy", "accuracy", _pct),
        ("Cheapest", "cost", _usd),
        ("Best cost per accuracy point", "cost_per_accuracy_point", _per_point),
    ):
        if best[key] is not None:
            parts.append(f"{label}: {best[key]['model']} {best[key]['approach']} ({fmt(best[key]['value'])}).")
    parts.append(f"Report: {report_md_uri}")
    message = "\n".join(parts)
    encoded = message.encode()
    if len(encoded) <= MESSAGE_MAX_BYTES:
        return message
    return encoded[: MESSAGE_MAX_BYTES - 3].decode(errors="ignore") + "..."


def render_chart_svg(report: dict[str, Any]) -> str:
    """A horizontal bar chart of cost per accuracy point (ranked, best on top) as standalone SVG.

    Plain SVG text: the Lambda has no plotting library, and a browser or the S3 console renders it as is.
    """
    scored = [e for e in report["jobs"] if e["cost_per_accuracy_point"] is not None]
    width, label_width, row, top = 760, 220, 26, 40
    bar_room = width - label_width - 140
    height = top + row * max(len(scored), 1) + 20
    biggest = max((e["cost_per_accuracy_point"] for e in scored), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<text x="10" y="22" font-size="14" font-weight="bold">{html.escape(report["run_id"])}: cost per accuracy '
        "point (lower is better)</text>",
    ]
    if not scored:
        parts.append(f'<text x="10" y="{top + 14}">No completed job reported an accuracy.</text>')
    for i, e in enumerate(scored):
        y = top + i * row
        length = max(1, round(bar_room * e["cost_per_accuracy_point"] / biggest))
        label = html.escape(f"{e['model']} {e['approach']}")
        parts += [
            f'<text x="10" y="{y + 15}">{label}</text>',
            f'<rect x="{label_width}" y="{y + 3}" width="{length}" height="{row - 8}" fill="#3b6ea5"/>',
            f'<text x="{label_width + length + 6}" y="{y + 15}">{_per_point(e["cost_per_accuracy_point"])} '
            f"({_pct(e['accuracy'])})</text>",
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_report(s3: Any, bucket: str, report: dict[str, Any]) -> tuple[str, str]:
    """Put `reports/<run>/report.json`, `report.md` and `chart.svg`; returns the JSON and Markdown s3:// URIs."""
    json_key, md_key = naming.report_keys(report["run_id"])
    chart_key = md_key.rsplit("/", 1)[0] + "/" + CHART_NAME
    s3.put_object(
        Bucket=bucket,
        Key=json_key,
        Body=json.dumps(report, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=bucket, Key=md_key, Body=render_markdown(report).encode(), ContentType="text/markdown; charset=utf-8"
    )
    s3.put_object(Bucket=bucket, Key=chart_key, Body=render_chart_svg(report).encode(), ContentType="image/svg+xml")
    return f"s3://{bucket}/{json_key}", f"s3://{bucket}/{md_key}"


def summary_fields(report: dict[str, Any], report_json_uri: str, report_md_uri: str) -> dict[str, Any]:
    """What the ledger's SUMMARY row holds for a run."""
    best = report["best"]
    return {
        **report["totals"],
        "best_accuracy_job": best["accuracy"]["job_name"] if best["accuracy"] else None,
        "best_cost_job": best["cost"]["job_name"] if best["cost"] else None,
        "best_cost_per_point_job": best["cost_per_accuracy_point"]["job_name"]
        if best["cost_per_accuracy_point"]
        else None,
        "report_json_uri": report_json_uri,
        "report_md_uri": report_md_uri,
    }
