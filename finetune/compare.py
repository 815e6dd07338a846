"""`finetune compare`: the same jobs (model × approach) side by side across runs, from the ledger's job rows.

Each run's rows become report lines with the report's own `job_entry` (so accuracy, parse rate and cost per accuracy
point mean here what they mean in report.md); a job is identified across runs by (model, approach), the only fields
stable across runs (job names embed the run id). A combination a run did not have is None (json) or "-" (tables).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lambdas import report

# The fields compared, with the column header and how a value prints.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("status", "status", "{}"),
    ("accuracy", "acc", "{:.3f}"),
    ("parse_rate", "parse", "{:.3f}"),
    ("cost_usd", "$", "{:.2f}"),
    ("cost_per_accuracy_point", "$/pt", "{:.4f}"),
)


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
                **{name: entry[name] for name, _, _ in FIELDS},
            }
    return {
        "runs": runs,
        "jobs": [
            {"model": model, "approach": approach, "runs": by_run} for (model, approach), by_run in entries.items()
        ],
    }


def _cell(entry: dict[str, Any] | None, name: str, fmt: str) -> str:
    value = None if entry is None else entry.get(name)
    return "-" if value is None else fmt.format(value)


def columns(document: dict[str, Any]) -> list[str]:
    """Header cells: model, approach, then `<run> <field>` for each run and field."""
    return ["model", "approach"] + [f"{run} {header}" for run in document["runs"] for _, header, _ in FIELDS]


def cells(document: dict[str, Any]) -> list[list[str]]:
    """One row of cells per (model, approach)."""
    return [
        [job["model"], job["approach"]]
        + [_cell(job["runs"][run], name, fmt) for run in document["runs"] for name, _, fmt in FIELDS]
        for job in document["jobs"]
    ]


def run_cell(entry: dict[str, Any] | None) -> str:
    """One run's figures for a combination in one cell (the terminal table: one column per run)."""
    if entry is None:
        return "-"
    return (
        f"{entry['status']}: acc {_cell(entry, 'accuracy', '{:.3f}')}, parse {_cell(entry, 'parse_rate', '{:.3f}')}, "
        f"${_cell(entry, 'cost_usd', '{:.2f}')}, {_cell(entry, 'cost_per_accuracy_point', '${:.4f}')}/pt"
    )


def render_markdown(document: dict[str, Any]) -> str:
    """A Markdown table of the comparison."""
    header = columns(document)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells(document)]
    return "\n".join(lines) + "\n"
