"""Earlier runs of each of a run's model x approach pairs, from the ledger's model x approach index.

`fetch_history` asks a query function (the handler passes `ledger.model_approach_rows` bound to its client) so this
module reads no AWS itself; `comparison` turns those rows into the report's "earlier runs" section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdas.ledger import model_approach_key
from lambdas.report.entries import job_entry

# Earlier runs shown per model x approach in the comparison section.
COMPARISON_RUNS = 5
# What the comparison keeps of each entry.
COMPARISON_KEYS = (
    "run_id",
    "job_name",
    "status",
    "instance_type",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "cost_usd",
    "estimated_cost_usd",
    "created_at",
)


def fetch_history(
    rows: list[dict[str, Any]], query: Callable[[str, str, int], list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Earlier rows of each model x approach in `rows`, via `query(model, approach, limit)` (the ledger's index)."""
    history: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = model_approach_key(row["model"], row["approach"])  # every job row has both (ledger.job_row)
        if key not in history:
            # Ask for a few more: this run's own rows may already be in the index.
            history[key] = query(row["model"], row["approach"], COMPARISON_RUNS + 5)
    return history


def _comparison_line(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry[key] for key in COMPARISON_KEYS}


def comparison(
    run_id: str, entries: list[dict[str, Any]], history: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Per model x approach of this run: its jobs and up to COMPARISON_RUNS earlier jobs (other runs, newest first)."""
    groups: list[dict[str, Any]] = []
    for key in sorted({model_approach_key(e["model"], e["approach"]) for e in entries}):
        current = [e for e in entries if model_approach_key(e["model"], e["approach"]) == key]
        earlier = [job_entry(row) for row in history.get(key, []) if row.get("run_id") != run_id]
        earlier.sort(key=lambda e: (e["created_at"] or "", e["run_id"] or ""), reverse=True)
        groups.append(
            {
                "model": current[0]["model"],
                "approach": current[0]["approach"],
                "jobs": [_comparison_line(e) for e in current],
                "earlier": [_comparison_line(e) for e in earlier[:COMPARISON_RUNS]],
            }
        )
    return groups
