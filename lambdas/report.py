"""The run report: rank a run's jobs, say which job wins on what, and show how sure and how expected each figure is.

Per job: accuracy with its 95% Wilson interval from the evaluated sample size, cost next to the pre-launch expected
cost (`lambdas/estimate.py`) and, part by part, its actual seconds next to the estimate's, whether it is on the
cost-vs-accuracy Pareto front, and its time split; the calibration each estimate was made with. Charts: cost per
accuracy point, cost vs accuracy with the front marked, time split per job. Optionally, earlier runs of each job's
model x approach from the ledger's index.

`build_report` and `render_markdown` are pure (ledger rows in, dict/str out) so the offline demo and the CLI print
the very same table the Report Lambda writes to S3.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from typing import Any

from lambdas import calibration, catalog, cost, naming, paired
from lambdas.estimate import PARTS
from lambdas.ledger import model_approach_key, to_json_value

CHART_NAME = "chart.svg"  # next to report.md, which links it
PARETO_CHART_NAME = "pareto.svg"
TIME_SPLIT_CHART_NAME = "time_split.svg"
MESSAGE_MAX_BYTES = 1024  # SNS allows far more; this keeps e-mail and chat notifications readable
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
Z_95 = 1.959964  # two-sided 95% normal quantile
# Earlier runs shown per model x approach in the comparison section.
COMPARISON_RUNS = 5
# The time split's phases, in the order a job goes through them (the Record step's `time_split_seconds`).
TIME_PHASES: tuple[tuple[str, str], ...] = (
    ("waiting", "#b0b0b0"),
    ("downloading", "#f0ad4e"),
    ("training", "#3b6ea5"),
    ("uploading", "#5cb85c"),
)


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
        "interruptions": row.get("interruptions") or 0,
        "artifact_uri": row.get("artifact_uri"),
        "artifact_bytes": row.get("artifact_bytes"),
    }


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


def _eval_samples(row: dict[str, Any], metrics: dict[str, Any]) -> tuple[int, bool]:
    """How many test samples the accuracy is over, and whether that is the catalog default (assumed, not recorded)."""
    hyperparameters = row.get("hyperparameters") or {}
    for value in (metrics.get("eval_samples"), row.get("eval_samples"), hyperparameters.get("eval_samples")):
        if value is not None and value != catalog.ALL_SAMPLES and float(value) > 0:
            return int(value), False
    return int(catalog.default("eval_samples")), True


def estimate_error_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A (JSON) ledger row's estimate by part, what each part actually took (`calibration.actual_seconds`, recorded
    by Record or derived here for older rows), actual / estimated per part known on both sides, and the key and
    calibration the estimate was made with (None or empty where a row predates them)."""
    estimated = {k: float(v) for k, v in (row.get("estimated_seconds") or {}).items() if v is not None}
    actual = {k: float(v) for k, v in (row.get("actual_seconds") or calibration.actual_seconds(row)).items()}
    return {
        "estimated_seconds": estimated,
        "actual_seconds": actual,
        "seconds_vs_estimate": {
            part: round(actual[part] / estimated[part], 3)
            for part in (*PARTS, "total")
            if estimated.get(part) and part in actual
        },
        "calibration_key": row.get("calibration_key"),
        "calibration": row.get("calibration"),
    }


def primary_metric(row: dict[str, Any]) -> str:
    """The metric a job is ranked by: its run's primary metric, else its task's default (rows that predate tasks:
    intent accuracy)."""
    hyperparameters = row.get("hyperparameters") or {}
    return catalog.primary_metric(hyperparameters.get("task"), hyperparameters.get("primary_metric"))


def job_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One ledger row as a report line (metrics by their report names; None where a job produced none)."""
    row = to_json_value(row)
    metrics = row.get("metrics") or {}
    metric = primary_metric(row)
    accuracy = _number(metrics.get(metric))  # "accuracy": the run's primary metric (intent accuracy by default)
    cost_usd = float(row.get("cost_usd") or 0)
    per_point = cost.cost_per_accuracy_point(cost_usd, accuracy) if row.get("status") == "Completed" else None
    samples, samples_assumed = _eval_samples(row, metrics)
    # Wilson intervals are for shares of samples answered right; a mean ROUGE or BERTScore gets none.
    proportion = accuracy is not None and metric in catalog.PROPORTION_METRICS
    low, high = wilson_interval(accuracy, samples) if proportion else (None, None)
    estimated = _number(row.get("estimated_cost_usd"))  # copied from the job spec by Record; absent in older rows
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
        "primary_metric": metric,
        "exact_match": _number(metrics.get("eval_exact_match")),
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
        "eval_samples": samples,
        "eval_samples_assumed": samples_assumed,
        "accuracy_ci_low": None if low is None else round(low, 4),
        "accuracy_ci_high": None if high is None else round(high, 4),
        "estimated_cost_usd": estimated,
        "estimated_hours": _number(row.get("estimated_hours")),
        "cost_vs_estimate": round(cost_usd / estimated, 3) if estimated else None,
        "time_split_seconds": {k: float(v) for k, v in (row.get("time_split_seconds") or {}).items() if v is not None},
        **estimate_error_fields(row),
        "run_id": row.get("run_id"),
        "created_at": row.get("created_at"),
        # Attempts (lambdas/remedies.py): rows of one job share its base name.
        "attempt": int(row.get("attempt") or 1),
        "base_job_name": row.get("base_job_name") or row.get("job_name"),
        "failure_class": row.get("failure_class"),
        "remedy": (row.get("remedy") or {}).get("remedy"),
    }


def pareto_front(entries: list[dict[str, Any]]) -> set[str]:
    """Job names of the completed, scored jobs that no other such job beats on both cost and accuracy (no cheaper or
    equal job is at least as accurate, with one of the two strictly better)."""
    scored = [e for e in entries if e["status"] == "Completed" and e["accuracy"] is not None]
    front = set()
    for e in scored:
        dominated = any(
            o["cost_usd"] <= e["cost_usd"]
            and o["accuracy"] >= e["accuracy"]
            and (o["cost_usd"] < e["cost_usd"] or o["accuracy"] > e["accuracy"])
            for o in scored
        )
        if not dominated:
            front.add(e["job_name"])
    return front


def is_baseline(entry: dict[str, Any]) -> bool:
    """A zero-shot baseline: a reference row, not a candidate for best."""
    return entry["approach"] == "baseline"


def _mark_baseline_gains(entries: list[dict[str, Any]]) -> None:
    """Set `gain_over_baseline_pts` on each trained job: its accuracy minus its model's zero-shot accuracy in this
    run, in points (None when the run evaluated no baseline of that model, or either accuracy is missing)."""
    baseline_accuracy = {
        e["model"]: e["accuracy"]
        for e in entries
        # 0.0 is a measured accuracy (a zero-shot model often answers no chat sample exactly), not a missing one
        if is_baseline(e) and e["status"] == "Completed" and e["accuracy"] is not None
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


def _mark_tiers(entries: list[dict[str, Any]], answers: dict[str, paired.Answers] | None = None) -> None:
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
        e["on_pareto_front"] = (
            e["job_name"] in front if e["status"] == "Completed" and e["accuracy"] is not None else None
        )
        if e["cost_per_accuracy_point"] is None:
            e["tier"] = 3
        elif best is not None and _tied_with_best(e, best, answers or {}):
            e["tier"] = 0
        else:
            e["tier"] = 1 if e["on_pareto_front"] else 2


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
            final["cost_per_accuracy_point"] = float(cost.cost_per_accuracy_point(total, final["accuracy"]))
        finals.append(final)
    return finals


def attempts_section(by_job: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per job with more than one attempt (or a failure Classify saw): its attempts in order, what failed, what
    was changed, how it ended and what all its attempts cost together."""
    section = []
    for base, attempts in sorted(by_job.items()):
        if len(attempts) == 1 and not attempts[0]["failure_class"]:
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
                        "attempt": e["attempt"],
                        "job_name": e["job_name"],
                        "instance_type": e["instance_type"],
                        "spot": e["spot"],
                        "status": e["status"],
                        "failure_class": e["failure_class"],
                        "remedy": e["remedy"],
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
    _mark_tiers(entries, answers)
    _mark_baseline_gains(entries)
    entries.sort(
        key=lambda e: (
            e["tier"],
            e["cost_per_accuracy_point"] or 0.0,
            -(e["accuracy"] or 0.0),
            e["job_name"] or "",
        )
    )
    for rank, entry in enumerate(entries, start=1):
        entry["rank"] = rank
    estimated = [e["estimated_cost_usd"] for e in every_attempt if e["estimated_cost_usd"] is not None]
    completed = [e for e in entries if e["status"] == "Completed" and not is_baseline(e)]
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
                next((e for e in entries if e["cost_per_accuracy_point"] is not None and not is_baseline(e)), None),
                "cost_per_accuracy_point",
            ),
        },
        "totals": {
            # Jobs by how their last attempt ended; every attempt is billed, so money and time count them all.
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
        },
        **({"comparison": comparison(run_id, entries, history)} if history is not None else {}),
        "attempts": attempts_section(by_job),
        "calibration": calibration_section(every_attempt),
        "paired": [{"job_name": e["job_name"], **e["paired_with_best"]} for e in entries if e.get("paired_with_best")],
    }


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


def render_estimate_error(report: dict[str, Any]) -> list[str]:
    """The estimate error (actual / estimated seconds per part, per job) and the calibration in force, as Markdown
    lines (nothing when no job carries an estimate by part)."""
    jobs = [e for e in report["jobs"] if e.get("estimated_seconds")]
    if not jobs:
        return []
    lines = [
        "",
        "## Estimate error",
        "",
        "Actual / estimated seconds per part of the time model (`-`: not measured, e.g. training code that does not "
        "print its phases). Calibration multiplies the next estimates of the same key by its factors.",
        "",
        "| # | key | " + " | ".join(PARTS) + " | total | cost |",
        "|---|---|" + "---|" * (len(PARTS) + 2),
    ]
    for e in jobs:
        cells = [
            "-"
            if part not in e["actual_seconds"] or part not in e["estimated_seconds"]
            else f"{e['actual_seconds'][part]:.0f} / {e['estimated_seconds'][part]:.0f}"
            for part in (*PARTS, "total")
        ]
        lines.append(
            f"| {e['rank']} | {e['calibration_key'] or '-'} | "
            + " | ".join(cells)
            + f" | {_ratio(e['cost_vs_estimate'])} |"
        )
    lines += [
        "",
        "## Calibration in force",
        "",
        "| key | recorded jobs | factors | run's actual / expected cost |",
        "|---|---|---|---|",
    ]
    for c in report.get("calibration") or []:
        factors = ", ".join(f"{part} {factor:.2f}" for part, factor in c["factors"].items()) or "none (the table)"
        lines.append(f"| {c['key']} | {c['samples']} | {factors} | {_ratio(c['cost_vs_estimate'])} |")
    return lines


def fetch_history(
    rows: list[dict[str, Any]], query: Callable[[str, str, int], list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Earlier rows of each model x approach in `rows`, via `query(model, approach, limit)` (the ledger's index)."""
    history: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = model_approach_key(row.get("model"), row.get("approach"))
        if key not in history:
            # Ask for a few more: this run's own rows may already be in the index.
            history[key] = query(row["model"], row["approach"], COMPARISON_RUNS + 5)
    return history


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


def _comparison_line(entry: dict[str, Any]) -> dict[str, Any]:
    keys = (
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
    return {key: entry[key] for key in keys}


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


def _bounds(e: dict[str, Any]) -> tuple[float, float]:
    """A scored entry's interval, or its value twice where its metric has none (a mean ROUGE or BERTScore)."""
    if e["accuracy_ci_low"] is None:
        return e["accuracy"], e["accuracy"]
    return e["accuracy_ci_low"], e["accuracy_ci_high"]


def _interval(e: dict[str, Any]) -> str:
    """Accuracy with its 95% interval in points; `~` marks an interval over the assumed (default) sample size."""
    if e["accuracy"] is None:
        return "-"
    if e["accuracy_ci_low"] is None:  # a mean metric (ROUGE, BERTScore): no interval is claimed
        return f"{e['accuracy'] * 100:.1f}% (n={e['eval_samples']})"
    approx = "~" if e["eval_samples_assumed"] else ""
    return (
        f"{e['accuracy'] * 100:.1f}% ({approx}{e['accuracy_ci_low'] * 100:.1f}-{e['accuracy_ci_high'] * 100:.1f}, "
        f"n={e['eval_samples']})"
    )


def _job_cost(entry: dict[str, Any]) -> str:
    if entry.get("attempts", 1) == 1:
        return _usd(entry["cost_usd"])
    return f"{_usd(entry['cost_usd'])} ({entry['attempts']} attempts: {_usd(entry['attempts_cost_usd'])})"


def _savings(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} pts"


def _utilisation(value: dict[str, Any] | None) -> str:
    return "-" if not value else f"{value['mean']:.0f}% / {value['max']:.0f}%"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


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
        f"Ranked by {report['ranking']}. Accuracy: the run's primary metric "
        f"({', '.join(sorted({e['primary_metric'] for e in report['jobs']})) or '-'}). "
        "Accuracy intervals are 95% Wilson intervals over the n samples evaluated "
        "(~: n not recorded, the default assumed). Expected cost: the estimate made before launch.",
        "",
        f"![cost per accuracy point]({CHART_NAME}) ![cost vs accuracy]({PARETO_CHART_NAME}) "
        f"![time split]({TIME_SPLIT_CHART_NAME})",
        "",
        "| # | model | approach | instance | status | accuracy (95% CI) | cost | expected | actual / expected "
        "| $/accuracy point | Pareto |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["jobs"]:
        count = e["instance_count"] or 1
        instance = e["instance_type"] if count == 1 else f"{count}x {e['instance_type']}"
        front = "reference" if is_baseline(e) else {True: "front", False: "dominated", None: "-"}[e["on_pareto_front"]]
        lines.append(
            f"| {e['rank']} | {e['model']} | {e['approach']} | {instance}{' (spot)' if e['spot'] else ''} "
            f"| {e['status']} | {_interval(e)} | {_job_cost(e)} | {_usd(e['estimated_cost_usd'])} "
            f"| {_ratio(e['cost_vs_estimate'])} | {_per_point(e['cost_per_accuracy_point'])} | {front} |"
        )
    lines += [
        "",
        "| # | vs zero-shot | parse rate | ROUGE-L | BERTScore F1 | inference s | training s | billable s "
        "| spot savings | GPU util mean/max | peak GPU GB | artifact MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {e['rank']} | {_points(e['gain_over_baseline_pts'])} | {_pct(e['parse_rate'])} | {_num(e['rouge_l'])} "
        f"| {_num(e['bertscore_f1'])} | {_num(e['inference_seconds'], 1)} | {e['training_seconds']} "
        f"| {e['billable_seconds']} | {_savings(e['spot_savings_pct'])} "
        f"| {_utilisation(e['gpu_utilization_pct'])} | {_num(e['peak_memory_gb'], 1)} "
        f"| {_num(None if e['artifact_bytes'] is None else e['artifact_bytes'] / 1e6, 1)} |"
        for e in report["jobs"]
    ]
    best = report["best"]
    lines += [
        "",
        "## Best",
        "",
        _best_line("Accuracy", best["accuracy"], _pct),
        _best_line("Cost", best["cost"], _usd),
        _best_line(
            "Best value (cheapest per point among the most accurate)", best["cost_per_accuracy_point"], _per_point
        ),
    ]
    lines += render_paired(report)
    lines += render_attempts(report.get("attempts") or [])
    lines += render_estimate_error(report)
    if report.get("comparison"):
        lines += _comparison_markdown(report["comparison"])
    failures = [e for e in report["jobs"] if e["status"] != "Completed" and e["failure_reason"]]
    if failures:
        lines += ["", "## Not completed", ""]
        for e in failures:
            reason = " ".join(e["failure_reason"].split())  # one line: reasons hold tracebacks
            lines.append(f"- `{e['job_name']}` ({e['status']}): {reason[:300]}")
    return "\n".join(lines) + "\n"


def render_paired(report: dict[str, Any]) -> list[str]:
    """The paired comparisons with the best job as Markdown lines (nothing when no job had paired answers)."""
    comparisons = report.get("paired") or []
    if not comparisons:
        return []
    metric = next((e["primary_metric"] for e in report["jobs"] if e.get("primary_metric")), "accuracy")
    lines = [
        "",
        "## Paired comparison with the best job",
        "",
        f"Primary metric {metric}. Exact McNemar test on the samples both jobs answered (b: only the best job right, "
        "c: only this job right); tied when p >= 0.05. Samples needed: to tell this difference apart at 80% power "
        "(two-sided 5%; Connor 1987, with the observed share of disagreements).",
        "",
        "| job | vs best | n | b | c | difference | p | tied | samples needed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| `{c['job_name']}` | `{c['best_job_name']}` | {c['samples']} | {c['best_only_right']} "
            f"| {c['other_only_right']} | {c['difference_pts']:+.1f} pts | {c['p_value']:.4f} "
            f"| {'yes' if c['tied'] else 'no'} | {c['samples_needed'] or '-'} |"
        )
    return lines


def _comparison_markdown(groups: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Earlier runs of the same model x approach", ""]
    if not any(group["earlier"] for group in groups):
        return [*lines, "None in the ledger yet: this is the first run of each of its model x approach pairs."]
    lines += [
        "| model | approach | run | status | accuracy (95% CI) | cost | expected |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        for line, mark in [*((j, " (this run)") for j in group["jobs"]), *((j, "") for j in group["earlier"])]:
            accuracy = (
                "-"
                if line["accuracy"] is None
                else f"{line['accuracy'] * 100:.1f}%"
                if line["accuracy_ci_low"] is None
                else f"{line['accuracy'] * 100:.1f}% ({line['accuracy_ci_low'] * 100:.1f}-"
                f"{line['accuracy_ci_high'] * 100:.1f})"
            )
            lines.append(
                f"| {group['model']} | {group['approach']} | {line['run_id']}{mark} | {line['status']} | {accuracy} "
                f"| {_usd(line['cost_usd'])} | {_usd(line['estimated_cost_usd'])} |"
            )
        if not group["earlier"]:
            lines.append(f"| {group['model']} | {group['approach']} | no earlier run | | | | |")
    return lines


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


def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<text x="10" y="22" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]


def render_pareto_svg(report: dict[str, Any]) -> str:
    """Cost (x) vs accuracy (y) as standalone SVG: one circle per completed, scored job with its 95% interval as a
    vertical bar; Pareto-front jobs in red, joined by the front's staircase. Plain SVG text, like the bar chart."""
    scored = [e for e in report["jobs"] if e["status"] == "Completed" and e["accuracy"] is not None]
    width, height, left, right, top, bottom = 760, 440, 70, 260, 40, 50  # right: room for the point labels
    parts = _svg_open(width, height, f"{report['run_id']}: cost vs accuracy (red: Pareto front)")
    if not scored:
        parts += [f'<text x="10" y="{top + 14}">No completed job reported an accuracy.</text>', "</svg>"]
        return "\n".join(parts) + "\n"
    max_cost = max(e["cost_usd"] for e in scored) or 1.0
    low = min(_bounds(e)[0] for e in scored)
    y_min = math.floor(low * 10) / 10  # whole tenths: the axis starts at a round number below every interval
    plot_w, plot_h = width - left - right, height - top - bottom

    def x_of(value: float) -> float:
        return round(left + plot_w * value / (max_cost * 1.05), 1)

    def y_of(value: float) -> float:
        return round(top + plot_h * (1 - (value - y_min) / max(1.0 - y_min, 1e-9)), 1)

    axis_y = top + plot_h
    parts += [
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#333"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">cost (USD)</text>',
        f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
        'text-anchor="middle">accuracy</text>',
    ]
    for share in (0.0, 0.5, 1.0):
        value = max_cost * share
        parts.append(f'<text x="{x_of(value)}" y="{axis_y + 16}" text-anchor="middle">{_usd(value)}</text>')
    for tick in range(round(y_min * 10), 11):
        value = tick / 10
        parts.append(f'<text x="{left - 6}" y="{y_of(value) + 4}" text-anchor="end">{value * 100:.0f}%</text>')
    front = sorted((e for e in scored if e["on_pareto_front"]), key=lambda e: (e["cost_usd"], e["accuracy"]))
    if len(front) > 1:
        steps: list[str] = []
        for i, e in enumerate(front):
            if i:  # horizontal at the previous accuracy, then up: nothing between two front jobs does better
                steps.append(f"{x_of(e['cost_usd'])},{y_of(front[i - 1]['accuracy'])}")
            steps.append(f"{x_of(e['cost_usd'])},{y_of(e['accuracy'])}")
        parts.append(f'<polyline class="front" points="{" ".join(steps)}" fill="none" stroke="#d9534f"/>')
    for e in scored:
        x, y = x_of(e["cost_usd"]), y_of(e["accuracy"])
        colour = "#d9534f" if e["on_pareto_front"] else "#3b6ea5"
        label = html.escape(f"#{e['rank']} {e['model']} {e['approach']}")
        parts += [
            f'<line class="interval" x1="{x}" y1="{y_of(_bounds(e)[0])}" x2="{x}" '
            f'y2="{y_of(_bounds(e)[1])}" stroke="{colour}"/>',
            f'<circle class="job" cx="{x}" cy="{y}" r="5" fill="{colour}">'
            f"<title>{html.escape(e['job_name'] or '')}</title></circle>",
            f'<text x="{x + 8}" y="{y + 4}">{label} ({_usd(e["cost_usd"])}, {_pct(e["accuracy"])})</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render_time_split_svg(report: dict[str, Any]) -> str:
    """Each job's wall time split into waiting / downloading / training / uploading (what its ledger row has), as
    stacked horizontal bars on one time scale."""
    jobs = [e for e in report["jobs"] if e.get("time_split_seconds")]
    width, label_width, row, top = 760, 220, 26, 60
    bar_room = width - label_width - 100
    height = top + row * max(len(jobs), 1) + 20
    parts = _svg_open(width, height, f"{report['run_id']}: where each job's time went")
    known = [name for name, _ in TIME_PHASES]
    colours = dict(TIME_PHASES)
    for i, (name, colour) in enumerate(TIME_PHASES):
        parts += [
            f'<rect class="legend" x="{10 + i * 120}" y="32" width="12" height="12" fill="{colour}"/>',
            f'<text x="{26 + i * 120}" y="42">{name}</text>',
        ]
    if not jobs:
        parts += [f'<text x="10" y="{top + 14}">No job recorded a time split.</text>', "</svg>"]
        return "\n".join(parts) + "\n"
    longest = max(sum(e["time_split_seconds"].values()) for e in jobs) or 1.0
    for i, e in enumerate(jobs):
        y = top + i * row
        split = e["time_split_seconds"]
        phases = [p for p in known if p in split] + sorted(p for p in split if p not in known)
        label = html.escape(f"#{e['rank']} {e['model']} {e['approach']}")
        parts.append(f'<text x="10" y="{y + 15}">{label}</text>')
        x = float(label_width)
        for phase in phases:
            length = bar_room * split[phase] / longest
            if length <= 0:
                continue
            parts.append(
                f'<rect class="segment" x="{round(x, 1)}" y="{y + 3}" width="{round(length, 1)}" height="{row - 8}" '
                f'fill="{colours.get(phase, "#999999")}">'
                f"<title>{html.escape(phase)}: {split[phase]:.0f} s</title></rect>"
            )
            x += length
        parts.append(f'<text x="{round(x, 1) + 6}" y="{y + 15}">{sum(split.values()) / 60:.1f} min</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_report(s3: Any, bucket: str, report: dict[str, Any]) -> tuple[str, str]:
    """Put `reports/<run>/report.json`, `report.md` and the charts; returns the JSON and Markdown s3:// URIs."""
    json_key, md_key = naming.report_keys(report["run_id"])
    folder = md_key.rsplit("/", 1)[0]
    s3.put_object(
        Bucket=bucket,
        Key=json_key,
        Body=json.dumps(report, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=bucket, Key=md_key, Body=render_markdown(report).encode(), ContentType="text/markdown; charset=utf-8"
    )
    for name, svg in charts(report).items():
        s3.put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=svg.encode(), ContentType="image/svg+xml")
    return f"s3://{bucket}/{json_key}", f"s3://{bucket}/{md_key}"


def charts(report: dict[str, Any]) -> dict[str, str]:
    """Every chart of the report by file name (report.md links them by these names)."""
    return {
        CHART_NAME: render_chart_svg(report),
        PARETO_CHART_NAME: render_pareto_svg(report),
        TIME_SPLIT_CHART_NAME: render_time_split_svg(report),
    }


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
