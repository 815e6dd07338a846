"""Ranking a run's jobs: Wilson intervals, the cost-vs-accuracy Pareto front, ties with the best job (a paired test
via `lambdas/paired.py`, else overlapping intervals), tiers, attempts folded into one line per job, and the order.

Every function takes report entries (`entries.job_entry`) and marks or returns them; nothing here reads AWS.
"""

from __future__ import annotations

import math
from typing import Any

from lambdas import cost, paired

# Cost per point alone rewards a cheap job that learned nothing ($0.01 for 2% is "cheaper per point" than $3 for 92%),
# so the ranking first asks whether a job is as accurate as the best one within the evidence (the 95% intervals
# overlap), and only then how cheap each point was.
RANKING = (
    "tiers, then cost per accuracy point (cost_usd / (primary metric x 100), lowest first): (1) completed jobs "
    "not significantly worse than the most accurate job (exact McNemar test on their paired answers when both "
    "answered the same samples, else overlapping 95% intervals), (2) the rest of the cost-vs-accuracy Pareto front, "
    "(3) dominated jobs, (4) jobs without an accuracy, (5) zero-shot baselines, which are references: they show what "
    "fine-tuning bought (each trained job's gain_over_baseline_pts) and never compete for best"
)
TIERS = ("tied with the best", "Pareto front", "dominated", "no accuracy", "zero-shot baseline")
BASELINE_TIER = TIERS.index("zero-shot baseline")
NO_ACCURACY_TIER = TIERS.index("no accuracy")
Z_95 = 1.959964  # two-sided 95% normal quantile


def wilson_interval(accuracy: float, samples: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion: `accuracy` of `samples` evaluated (95% by default).

    Better than the normal approximation near 0 and 1, where a fine-tuned classifier's accuracy lives."""
    if samples <= 0:
        return (0.0, 1.0)
    p = min(max(accuracy, 0.0), 1.0)
    z2 = z * z
    denominator = 1 + z2 / samples
    centre = (p + z2 / (2 * samples)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / samples + z2 / (4 * samples * samples))
    return (max(0.0, centre - half), min(1.0, centre + half))


def is_baseline(entry: dict[str, Any]) -> bool:
    """A zero-shot baseline: a reference row, not a candidate for best."""
    return entry["approach"] == "baseline"


def is_scored(entry: dict[str, Any]) -> bool:
    """A completed job with an accuracy: a candidate for the Pareto front and the charts."""
    return entry["status"] == "Completed" and entry["accuracy"] is not None


def _dominates(other: dict[str, Any], entry: dict[str, Any]) -> bool:
    """`other` costs no more and is no less accurate than `entry`, and is strictly better on one of the two."""
    no_worse = other["cost_usd"] <= entry["cost_usd"] and other["accuracy"] >= entry["accuracy"]
    return no_worse and (other["cost_usd"] < entry["cost_usd"] or other["accuracy"] > entry["accuracy"])


def pareto_front(entries: list[dict[str, Any]]) -> set[str]:
    """Job names of the completed, scored jobs that no other such job beats on both cost and accuracy (no cheaper or
    equal job is at least as accurate, with one of the two strictly better)."""
    scored = [e for e in entries if is_scored(e)]
    return {e["job_name"] for e in scored if not any(_dominates(o, e) for o in scored)}


def mark_baseline_gains(entries: list[dict[str, Any]]) -> None:
    """Set `gain_over_baseline_pts` on each trained job: its accuracy minus its model's zero-shot accuracy in this
    run, in points (None when the run evaluated no baseline of that model, or either accuracy is missing)."""
    baseline_accuracy = {
        e["model"]: e["accuracy"]
        for e in entries
        # 0.0 is a measured accuracy (a zero-shot model often answers no chat sample exactly), not a missing one
        if is_baseline(e) and is_scored(e)
    }
    for e in entries:
        zero_shot = None if is_baseline(e) else baseline_accuracy.get(e["model"])
        gain = None if zero_shot is None or e["accuracy"] is None else (e["accuracy"] - zero_shot) * 100
        e["gain_over_baseline_pts"] = None if gain is None else round(gain, 2)


def _tied_with_best(entry: dict[str, Any], best: dict[str, Any], answers: dict[str, paired.Answers]) -> bool:
    """Whether `entry` is as good as `best` within the evidence: the exact McNemar test on their paired answers when
    both jobs answered the same samples of the same dataset (recorded as `paired_with_best`), else overlapping
    Wilson intervals (a proportion metric's; a mean metric without answers ties only the best itself)."""
    mine, theirs = answers.get(entry["job_name"]), answers.get(best["job_name"])
    same_data = (entry["dataset"] or {}).get("name") == (best["dataset"] or {}).get("name")
    if entry is not best and mine and theirs and mine.keys() == theirs.keys() and same_data:
        entry["paired_with_best"] = {"best_job_name": best["job_name"], **paired.compare_with_best(theirs, mine)}
        return entry["paired_with_best"]["tied"]
    if entry["accuracy_ci_high"] is None or best["accuracy_ci_low"] is None:
        return entry is best
    return entry["accuracy_ci_high"] >= best["accuracy_ci_low"]


def _tier(entry: dict[str, Any], best: dict[str, Any] | None, answers: dict[str, paired.Answers]) -> int:
    """A candidate's tier (an index into TIERS); `on_pareto_front` must be set already."""
    if entry["cost_per_accuracy_point"] is None:
        return NO_ACCURACY_TIER
    if best is not None and _tied_with_best(entry, best, answers):
        return TIERS.index("tied with the best")
    return TIERS.index("Pareto front") if entry["on_pareto_front"] else TIERS.index("dominated")


def mark_tiers(entries: list[dict[str, Any]], answers: dict[str, paired.Answers] | None = None) -> None:
    """Set `on_pareto_front` and `tier` (an index into TIERS) on each entry; baselines are references, outside.
    `answers`: per-sample answers by job name (lambdas/paired.py), for the paired test against the best job."""
    candidates = [e for e in entries if not is_baseline(e)]
    front = pareto_front(candidates)
    scored = [e for e in candidates if e["cost_per_accuracy_point"] is not None]
    best = max(scored, key=lambda e: (e["accuracy"], -e["cost_usd"]), default=None)
    for e in entries:
        if is_baseline(e):
            e["on_pareto_front"], e["tier"] = None, BASELINE_TIER
            continue
        # None: not a candidate (no accuracy, or not completed), rather than "dominated"
        e["on_pareto_front"] = e["job_name"] in front if is_scored(e) else None
        e["tier"] = _tier(e, best, answers or {})


def rank(entries: list[dict[str, Any]]) -> None:
    """Sort by tier, then cost per point (then accuracy, then name: deterministic), and number them from 1."""
    entries.sort(
        key=lambda e: (
            e["tier"],
            e["cost_per_accuracy_point"] or 0.0,
            -(e["accuracy"] or 0.0),
            e["job_name"] or "",
        )
    )
    for position, entry in enumerate(entries, start=1):
        entry["rank"] = position


def attempts_by_job(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each job's entries, one per attempt in attempt order, by its base job name (job_entry fills both fields)."""
    by_job: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(entries, key=lambda e: e["attempt"]):
        by_job.setdefault(entry["base_job_name"], []).append(entry)
    return by_job


def final_attempts(by_job: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per job: its last attempt, carrying how many attempts it took (`attempts`) and what they cost
    together (`attempts_cost_usd`); its cost per accuracy point is over that total, what the accuracy really cost."""
    finals = []
    for attempts in by_job.values():
        final = attempts[-1]
        total = round(sum(e["cost_usd"] for e in attempts), 4)
        final["attempts"], final["attempts_cost_usd"] = len(attempts), total
        if final["cost_per_accuracy_point"] is not None:
            per_point = cost.cost_per_accuracy_point(total, final["accuracy"])
            final["cost_per_accuracy_point"] = None if per_point is None else float(per_point)
        finals.append(final)
    return finals
