"""One ledger row as a report entry: its metrics under their report names, cost and cost per point, the Wilson
interval of its accuracy, what it used (resources, resolved hyperparameters), its estimate next to what it took.

`job_entry` is the one reader of ledger rows for the report and `finetune compare`: a field means the same in both.
"""

from __future__ import annotations

from typing import Any

from lambdas import calibration, catalog, cost
from lambdas.estimate import PARTS
from lambdas.ledger import to_json_value
from lambdas.report.ranking import wilson_interval

# The values the training code resolved and used (the ledger row's `resolved`, written by Record), in report order.
RESOLVED_FIELDS = ("learning_rate", "effective_batch_size", "max_seq_length", "strategy")


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def resource_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a job used and what shaped it, from its (JSON) ledger row: hyperparameters, dataset, peak memory, GPU
    utilization, time split, interruptions and the model artifact (None or empty where a row predates them)."""
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


def resolved_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters the training code actually used (auto learning rate, effective batch, sequence length,
    strategy) from a (JSON) ledger row's `resolved`; each None where the job never trained or its row predates it."""
    resolved = row.get("resolved") or {}
    return {name: resolved.get(name) for name in RESOLVED_FIELDS}


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


def _metric_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The primary metric as `accuracy`, its Wilson interval over the samples evaluated, and the other metrics."""
    metrics = row.get("metrics") or {}
    metric = primary_metric(row)
    accuracy = _number(metrics.get(metric))  # "accuracy": the run's primary metric (intent accuracy by default)
    samples, samples_assumed = _eval_samples(row, metrics)
    # Wilson intervals are for shares of samples answered right; a mean ROUGE or BERTScore gets none.
    low, high = (
        wilson_interval(accuracy, samples)
        if accuracy is not None and metric in catalog.PROPORTION_METRICS
        else (None, None)
    )
    return {
        "accuracy": accuracy,
        "primary_metric": metric,
        "exact_match": _number(metrics.get("eval_exact_match")),
        "parse_rate": _number(metrics.get("eval_parse_rate")),
        "rouge_l": _number(metrics.get("eval_rougeL")),
        "bertscore_f1": _number(metrics.get("eval_bertscore_f1")),
        "inference_seconds": _number(metrics.get("eval_inference_seconds")),
        "eval_samples": samples,
        "eval_samples_assumed": samples_assumed,
        "accuracy_ci_low": None if low is None else round(low, 4),
        "accuracy_ci_high": None if high is None else round(high, 4),
    }


def _cost_fields(row: dict[str, Any], accuracy: float | None) -> dict[str, Any]:
    """What the job cost, per accuracy point (completed jobs only) and next to its pre-launch estimate."""
    cost_usd = float(row.get("cost_usd") or 0)
    per_point = cost.cost_per_accuracy_point(cost_usd, accuracy) if row.get("status") == "Completed" else None
    estimated = _number(row.get("estimated_cost_usd"))  # copied from the job spec by Record; absent in older rows
    return {
        "training_seconds": row.get("training_seconds") or 0,
        "billable_seconds": row.get("billable_seconds") or 0,
        "spot_savings_pct": _number(row.get("spot_savings_pct")),
        "cost_usd": cost_usd,
        "cost_per_accuracy_point": None if per_point is None else float(per_point),
        "estimated_cost_usd": estimated,
        "estimated_hours": _number(row.get("estimated_hours")),
        "cost_vs_estimate": round(cost_usd / estimated, 3) if estimated else None,
    }


def _attempt_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Attempts (lambdas/remedies.py): rows of one job share its base name."""
    return {
        "attempt": int(row.get("attempt") or 1),
        "base_job_name": row.get("base_job_name") or row.get("job_name"),
        "failure_class": row.get("failure_class"),
        "remedy": (row.get("remedy") or {}).get("remedy"),
    }


def job_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One ledger row as a report line (metrics by their report names; None where a job produced none)."""
    row = to_json_value(row)
    metrics = _metric_fields(row)
    return {
        "job_name": row.get("job_name"),
        "model": row.get("model"),
        "approach": row.get("approach"),
        "instance_type": row.get("instance_type"),
        "instance_count": row.get("instance_count"),
        "spot": row.get("spot"),
        "status": row.get("status"),
        "failure_reason": row.get("failure_reason"),
        **metrics,
        **_cost_fields(row, metrics["accuracy"]),
        **resource_fields(row),
        "resolved": resolved_fields(row),
        "time_split_seconds": {k: float(v) for k, v in (row.get("time_split_seconds") or {}).items() if v is not None},
        **estimate_error_fields(row),
        "run_id": row.get("run_id"),
        "created_at": row.get("created_at"),
        **_attempt_fields(row),
    }
