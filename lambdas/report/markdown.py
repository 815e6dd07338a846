"""report.md: the report document as a Markdown page, each table rendered from its columns (`columns.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lambdas.report import columns, formats
from lambdas.report.charts import CHART_NAME, PARETO_CHART_NAME, TIME_SPLIT_CHART_NAME
from lambdas.report.columns import Column

SEPARATORS = {"left": "---", "right": "---:"}


def markdown_row(cells: Sequence[str]) -> str:
    """One Markdown table line."""
    return "| " + " | ".join(cells) + " |"


def markdown_head(table: Sequence[Column]) -> list[str]:
    """A Markdown table's header and separator lines."""
    return [markdown_row([column.header for column in table]), "|" + "".join(f"{SEPARATORS[c.align]}|" for c in table)]


def markdown_rows(table: Sequence[Column], rows: Iterable[dict[str, Any]]) -> list[str]:
    """One Markdown table line per row."""
    return [markdown_row([column.cell(row) for column in table]) for row in rows]


def markdown_table(table: Sequence[Column], rows: Iterable[dict[str, Any]]) -> list[str]:
    """A Markdown table: its header, separator and one line per row, all from `table`."""
    return markdown_head(table) + markdown_rows(table, rows)


def _section(title: str, *paragraphs: str) -> list[str]:
    """A section's heading and its paragraphs, each after a blank line, ready for its table."""
    lines = ["", f"## {title}", ""]
    for paragraph in paragraphs:
        lines += [paragraph, ""]
    return lines


def _partial_banner(report: dict[str, Any]) -> str:
    return (
        f"> **Partial report.** The execution `{report['execution_name']}` ended {report['execution_status']} before "
        "the workflow finished; any job still running was stopped and is recorded with its cost so far. "
        f"{report['partial_reason']}\n"
    )


def _preamble(report: dict[str, Any]) -> list[str]:
    """The title, the totals, how jobs are ranked and the charts."""
    totals = report["totals"]
    return [
        f"# Fine-tuning run `{report['run_id']}`",
        "",
        f"{totals['jobs']} jobs: {totals['completed']} completed, {totals['failed']} failed, {totals['stopped']} "
        f"stopped. Total cost {formats.usd(totals['cost_usd'])} (failed and stopped jobs included).",
        "",
        f"Ranked by {report['ranking']}. Accuracy: the run's primary metric "
        f"({', '.join(sorted({e['primary_metric'] for e in report['jobs']})) or '-'}). "
        "Accuracy intervals are 95% Wilson intervals over the n samples evaluated "
        "(~: n not recorded, the default assumed). Expected cost: the estimate made before launch.",
        "",
        f"![cost per accuracy point]({CHART_NAME}) ![cost vs accuracy]({PARETO_CHART_NAME}) "
        f"![time split]({TIME_SPLIT_CHART_NAME})",
        "",
    ]


def _best_line(label: str, best: dict[str, Any] | None, fmt: Callable[[Any], str]) -> str:
    if best is None:
        return f"- **{label}**: none"
    return f"- **{label}**: {best['model']} {best['approach']} ({fmt(best['value'])}) - `{best['job_name']}`"


def render_best(report: dict[str, Any]) -> list[str]:
    """The best job by accuracy, by cost and by value."""
    best, value = report["best"], formats.per_point
    return [
        *_section("Best"),
        _best_line("Accuracy", best["accuracy"], formats.pct),
        _best_line("Cost", best["cost"], formats.usd),
        _best_line("Best value (cheapest per point among the most accurate)", best["cost_per_accuracy_point"], value),
    ]


def render_paired(report: dict[str, Any]) -> list[str]:
    """The paired comparisons with the best job as Markdown lines (nothing when no job had paired answers)."""
    comparisons = report.get("paired") or []
    if not comparisons:
        return []
    metric = next((e["primary_metric"] for e in report["jobs"] if e.get("primary_metric")), "accuracy")
    explanation = (
        f"Primary metric {metric}. Exact McNemar test on the samples both jobs answered (b: only the best job right, "
        "c: only this job right); tied when p >= 0.05. Samples needed: to tell this difference apart at 80% power "
        "(two-sided 5%; Connor 1987, with the observed share of disagreements)."
    )
    return _section("Paired comparison with the best job", explanation) + markdown_table(columns.PAIRED, comparisons)


def render_attempts(section: list[dict[str, Any]]) -> list[str]:
    """The attempts section as Markdown lines (nothing when no job needed a remedy)."""
    if not section:
        return []
    lines = _section("Attempts") + markdown_head(columns.ATTEMPTS)
    for job in section:
        base = job["base_job_name"]
        lines += markdown_rows(columns.ATTEMPTS, [{**attempt, "base_job_name": base} for attempt in job["attempts"]])
        # The job's total under its attempts, in bold: attempts, final status and cost in their columns
        total = (f"**{len(job['attempts'])} attempts**", "", f"**{job['final_status']}**", "", "")
        lines.append(markdown_row([f"`{base}`", *total, f"**{formats.usd(job['total_cost_usd'])}**"]))
    return lines


def render_estimate_error(report: dict[str, Any]) -> list[str]:
    """The estimate error (actual / estimated seconds per part, per job) and the calibration in force, as Markdown
    lines (nothing when no job carries an estimate by part)."""
    jobs = [e for e in report["jobs"] if e.get("estimated_seconds")]
    if not jobs:
        return []
    explanation = (
        "Actual / estimated seconds per part of the time model (`-`: not measured, e.g. training code that does not "
        "print its phases). Calibration multiplies the next estimates of the same key by its factors."
    )
    return [
        *_section("Estimate error", explanation),
        *markdown_table(columns.ESTIMATE_ERROR, jobs),
        *_section("Calibration in force"),
        *markdown_table(columns.CALIBRATION, report.get("calibration") or []),
    ]


def render_comparison(groups: list[dict[str, Any]]) -> list[str]:
    """Each model x approach of the run next to its earlier runs (the ledger's index)."""
    lines = _section("Earlier runs of the same model x approach")
    if not any(group["earlier"] for group in groups):
        return [*lines, "None in the ledger yet: this is the first run of each of its model x approach pairs."]
    lines += markdown_head(columns.COMPARISON)
    for group in groups:
        pair = {"model": group["model"], "approach": group["approach"]}
        marked = [{**j, **pair, "mark": " (this run)"} for j in group["jobs"]]
        marked += [{**j, **pair, "mark": ""} for j in group["earlier"]]
        lines += markdown_rows(columns.COMPARISON, marked)
        if not group["earlier"]:
            lines.append(markdown_row([group["model"], group["approach"], "no earlier run", "", "", "", ""]))
    return lines


def render_failures(report: dict[str, Any]) -> list[str]:
    """Why each job that did not complete ended (one line each)."""
    failures = [e for e in report["jobs"] if e["status"] != "Completed" and e["failure_reason"]]
    if not failures:
        return []
    lines = _section("Not completed")
    for e in failures:
        reason = " ".join(e["failure_reason"].split())  # one line: reasons hold tracebacks
        lines.append(f"- `{e['job_name']}` ({e['status']}): {reason[:300]}")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: one ranked table, the winners, the totals; a partial report (written by
    Cleanup for an execution that ended early) opens with a banner that says so and why."""
    lines = [_partial_banner(report)] if report.get("partial") else []
    lines += _preamble(report)
    lines += markdown_table(columns.JOBS, report["jobs"])
    lines += ["", *markdown_table(columns.JOB_DETAILS, report["jobs"])]
    lines += render_best(report)
    lines += render_paired(report)
    lines += render_attempts(report.get("attempts") or [])
    lines += render_estimate_error(report)
    if report.get("comparison"):
        lines += render_comparison(report["comparison"])
    lines += render_failures(report)
    return "\n".join(lines) + "\n"
