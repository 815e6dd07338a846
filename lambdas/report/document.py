"""The report document: a run's ledger rows in, ranked jobs, the best job per criterion, totals, attempts, the
calibration in force, paired comparisons and (given the history) earlier runs out. Pure and deterministic."""

from __future__ import annotations

import math
from typing import Any

from lambdas import paired
from lambdas.report.entries import job_entry
from lambdas.report.history import comparison
from lambdas.report.ranking import (
    RANKING,
    attempts_by_job,
    final_attempts,
    is_baseline,
    mark_baseline_gains,
    mark_tiers,
    rank,
)


def attempts_section(by_job: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per job with more than one attempt (or a failure Classify saw): its attempts in order, what failed, what
    was changed, how it ended and what all its attempts cost together."""
    keys = ("attempt", "job_name", "instance_type", "spot", "status", "failure_class", "remedy", "cost_usd")
    return [
        {
            "base_job_name": base,
            "model": attempts[-1]["model"],
            "approach": attempts[0]["approach"],
            "final_status": attempts[-1]["status"],
            "attempts": [{key: e[key] for key in keys} for e in attempts],
            "total_cost_usd": round(sum(e["cost_usd"] for e in attempts), 4),
        }
        for base, attempts in sorted(by_job.items())
        if len(attempts) > 1 or attempts[0]["failure_class"]
    ]


def calibration_section(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per calibration key of the run's jobs: the calibration their estimates were made with (samples, factors,
    source) and how far off those estimates were (the geometric mean of actual / expected cost over its jobs)."""
    section = []
    for key in sorted({e["calibration_key"] for e in entries if e["calibration_key"]}):
        jobs = [e for e in entries if e["calibration_key"] == key]
        in_force = next((e["calibration"] for e in jobs if e["calibration"]), None) or {}
        ratios = [e["cost_vs_estimate"] for e in jobs if e["cost_vs_estimate"]]
        section.append(
            {
                "key": key,
                "samples": int(in_force.get("samples") or 0),
                "factors": {part: float(f) for part, f in (in_force.get("factors") or {}).items()},
                "source": in_force.get("source"),
                "jobs": len(jobs),
                "cost_vs_estimate": (
                    round(math.exp(sum(math.log(r) for r in ratios) / len(ratios)), 3) if ratios else None
                ),
            }
        )
    return section


def _best(entry: dict[str, Any] | None, value_key: str) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {**{key: entry[key] for key in ("job_name", "model", "approach")}, "value": entry[value_key]}


def bests(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """The best trained job by accuracy, by cost and by cost per point (`entries` ranked; baselines never win)."""
    completed = [e for e in entries if e["status"] == "Completed" and not is_baseline(e)]
    scored = [e for e in completed if e["accuracy"] is not None]
    return {
        "accuracy": _best(max(scored, key=lambda e: (e["accuracy"], -e["cost_usd"]), default=None), "accuracy"),
        "cost": _best(min(completed, key=lambda e: (e["cost_usd"], e["job_name"]), default=None), "cost_usd"),
        "cost_per_accuracy_point": _best(
            next((e for e in entries if e["cost_per_accuracy_point"] is not None and not is_baseline(e)), None),
            "cost_per_accuracy_point",
        ),
    }


def totals(entries: list[dict[str, Any]], every_attempt: list[dict[str, Any]]) -> dict[str, Any]:
    """Jobs by how their last attempt ended; every attempt is billed, so money and time count them all."""
    statuses = [e["status"] for e in entries]
    estimated = [e["estimated_cost_usd"] for e in every_attempt if e["estimated_cost_usd"] is not None]
    return {
        "jobs": len(entries),
        "attempts": len(every_attempt),
        "completed": statuses.count("Completed"),
        "failed": statuses.count("Failed"),
        "stopped": statuses.count("Stopped"),
        # Failed and stopped jobs (and attempts) are billed too: the total is what the run cost.
        "cost_usd": round(sum(e["cost_usd"] for e in every_attempt), 4),
        "billable_instance_seconds": sum(e["billable_seconds"] * (e["instance_count"] or 1) for e in every_attempt),
        # Only over the jobs whose rows carry an estimate (rows written before estimates existed have none).
        "estimated_cost_usd": round(sum(estimated), 4) if estimated else None,
    }


def build_report(
    run_id: str,
    rows: list[dict[str, Any]],
    *,
    history: dict[str, list[dict[str, Any]]] | None = None,
    answers: dict[str, paired.Answers] | None = None,
) -> dict[str, Any]:
    """The report document: ranked jobs, the best job per criterion, totals, and (given `history`, earlier ledger rows
    by "<model>#<approach>") a comparison with earlier runs. `answers` (per-sample answers by job name, from
    `paired.fetch_answers`) lets "tied with the best" be decided by a paired test. Deterministic for the same rows."""
    every_attempt = [job_entry(row) for row in rows]
    by_job = attempts_by_job(every_attempt)
    entries = final_attempts(by_job)
    mark_tiers(entries, answers)
    mark_baseline_gains(entries)
    rank(entries)
    return {
        "run_id": run_id,
        "ranking": RANKING,
        "jobs": entries,
        "best": bests(entries),
        "totals": totals(entries, every_attempt),
        **({"comparison": comparison(run_id, entries, history)} if history is not None else {}),
        "attempts": attempts_section(by_job),
        "calibration": calibration_section(every_attempt),
        "paired": [{"job_name": e["job_name"], **e["paired_with_best"]} for e in entries if e.get("paired_with_best")],
    }
