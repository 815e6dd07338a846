"""`finetune compare`: the same jobs (model × approach) side by side across runs, from the ledger's job rows.

Each run's rows become report lines with the report's own `job_entry` (so accuracy, parse rate and cost per accuracy
point mean here what they mean in report.md); a job is identified across runs by (model, approach), the only fields
stable across runs (job names embed the run id). A combination a run did not have is None (json) or "-" (tables).
The figures shown per run are `lambdas/report/columns.RUN_FIGURES`, for Markdown and the terminal alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lambdas import report
from lambdas.report import columns
from lambdas.report.columns import Column
from lambdas.report.markdown import markdown_table

# The entry fields a run's figures show (what the document keeps of each entry).
FIELDS = tuple(str(column.key) for column in columns.RUN_FIGURES)


def comparison(rows_by_run: Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """`{"runs": [...], "jobs": [{"model", "approach", "runs": {run: entry | None}}]}` in the runs' order, jobs in
    the order they first appear. When a run holds a combination twice (e.g. a retried job under another name), the
    last row by `ended_at` counts."""
    runs = list(rows_by_run)
    entries: dict[tuple[str, str], dict[str, dict[str, Any] | None]] = {}
    for run, rows in rows_by_run.items():
        for row in sorted(rows, key=lambda r: str(r.get("ended_at") or "")):
            entry = report.job_entry(row)
            key = (str(entry["model"]), str(entry["approach"]))
            entries.setdefault(key, dict.fromkeys(runs))[run] = {
                "job_name": entry["job_name"],
                **{name: entry[name] for name in FIELDS},
            }
    return {
        "runs": runs,
        "jobs": [
            {"model": model, "approach": approach, "runs": by_run} for (model, approach), by_run in entries.items()
        ],
    }


def _of_run(run: str, figure: Column) -> Column:
    """`figure` of one run's entry, headed `<run> <header>`."""
    return Column(f"{run} {figure.header}", lambda job: figure.cell(job["runs"][run]), figure.align, figure.key)


def table(document: dict[str, Any]) -> tuple[Column, ...]:
    """The comparison's columns: model, approach, then each run's figures."""
    return (
        columns.MODEL,
        columns.APPROACH,
        *(_of_run(run, figure) for run in document["runs"] for figure in columns.RUN_FIGURES),
    )


def render_markdown(document: dict[str, Any]) -> str:
    """A Markdown table of the comparison."""
    return "\n".join(markdown_table(table(document), document["jobs"])) + "\n"
