"""Calibration from actuals: what recorded jobs really spent per part of the time model, and the factors that
correct the next estimate of jobs like them.

Jobs are alike when they share a *calibration key*, `<instance family>#<approach>#<strategy>` (e.g.
`g5#lora#single`): the same kind of GPU and interconnect, the same training arithmetic, the same communication.
For each key and each part of the estimate (`lambdas.estimate.PARTS`), every recorded job gives a ratio
actual / table seconds (its estimate with the factors it was made with divided out); the factor is their geometric
mean shrunk toward 1.0 (the table's value):

    factor = exp( sum(log ratio_i) / (n + PRIOR_WEIGHT) )

so one sample moves a factor a little (ratio 4 -> 4^(1/4) = 1.41 with a prior weight of 3), twenty most of the way
(4^(20/23) = 3.34). Each ratio is clipped to [1/RATIO_BOUND, RATIO_BOUND] first: one job that waited an hour for
spot capacity or hit a broken mirror does not rescale every later estimate. A part no job measured (no metric, an
estimate of 0 s) keeps 1.0.

Everything here is pure: Plan reads the rows (`lambdas.ledger.calibration_rows`), Record builds the actuals
(`actual_seconds`) and the estimator multiplies each part's seconds by `Calibration.factors.get(part, 1.0)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lambdas.estimate import PARTS

# How many samples' worth of belief the table's own value carries: with 3, a key needs 3 agreeing jobs before the
# factor is half-way (in log space) to what they measured.
PRIOR_WEIGHT = 3.0
# The most one job's ratio may say (either way): larger ratios are clipped to it before averaging.
RATIO_BOUND = 10.0
# Jobs read per key (Plan's Query Limit): recent jobs describe today's images, libraries and mirrors.
RECENT_JOBS = 20
# Only jobs that ran to the end measure every part; an interrupted spot job restarts and waits for capacity again,
# which the spot band covers, not the factors.
CALIBRATING_STATUS = "Completed"

# Metrics the training code prints at the end of each phase (catalog.METRICS; training_code), by estimate part.
# Loading/quantizing onto the device goes with the download: the estimate has one part for getting the model ready.
PHASE_METRICS: Mapping[str, tuple[str, ...]] = {
    "download": ("time_download_seconds", "time_load_seconds"),
    "train": ("time_train_seconds",),
    "checkpoint": ("time_checkpoint_seconds",),
    "evaluate": ("time_evaluate_seconds",),
}
SAVE_METRIC = "time_save_seconds"  # the final model/adapter save: part of getting the result out (upload)
# Without this one the training code predates the phase metrics: its Training phase cannot be split.
SPLIT_MARKER_METRIC = "time_train_seconds"


def instance_family(instance_type: str) -> str:
    """`ml.g5.12xlarge` -> `g5` (the family shares GPU, memory and interconnect per GPU)."""
    return instance_type.removeprefix("ml.").split(".", 1)[0]


def calibration_key(instance_type: str, approach: str, strategy: str) -> str:
    """The key jobs are calibrated under: `<instance family>#<approach>#<strategy>`."""
    return f"{instance_family(instance_type)}#{approach}#{strategy}"


def job_calibration_key(job: Mapping[str, Any]) -> str:
    """The calibration key of a resolved experiment or JobSpec."""
    return calibration_key(job["instance_type"], job["approach"], job["strategy"])


@dataclass(frozen=True)
class Calibration:
    """Per-part correction factors for one key (1.0 = the time model's table), from `samples` recorded jobs."""

    key: str
    factors: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    source: str = "table (no recorded jobs)"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON (the JobSpec, Plan's output, the report)."""
        return {"key": self.key, "samples": self.samples, "factors": dict(self.factors), "source": self.source}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Calibration:
        """The inverse of `as_dict` (a JobSpec's `calibration`)."""
        return cls(
            key=str(value["key"]),
            factors={part: float(factor) for part, factor in (value.get("factors") or {}).items()},
            samples=int(value.get("samples") or 0),
            source=str(value.get("source") or ""),
        )


def carried_over(job: Mapping[str, Any], key: str) -> Calibration:
    """The calibration for a changed job (a remedied attempt, which cannot read the ledger): the one its job was
    planned with when the key is unchanged, else none (the table's values)."""
    planned = job.get("calibration") or {}
    return Calibration.from_dict(planned) if planned.get("key") == key else uncalibrated(key)


def uncalibrated(key: str) -> Calibration:
    """The calibration of a key no job has measured yet: every factor 1.0."""
    return Calibration(key=key)


def _number(value: Any) -> float | None:
    """A float from a ledger value (Decimal from DynamoDB, int, float); None when absent or not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def actual_seconds(row: Mapping[str, Any]) -> dict[str, float]:
    """What a recorded job spent per estimate part, from its SageMaker time split and its phase metrics.

    startup  = waiting + downloading (SageMaker's provisioning, image pull and channel download)
    download = time_download_seconds + time_load_seconds
    train, checkpoint, evaluate = time_train_seconds, time_checkpoint_seconds, time_evaluate_seconds
    install  = the Training phase minus every phase the training code printed (the toolkit's requirements install,
               imports and process start)
    upload   = the Uploading phase + time_save_seconds

    Parts that cannot be told apart are left out: without a time split nothing is known; without the phase metrics
    (older training code) only startup and upload are, since the Training phase cannot be split. `total` is the
    job's wall time over the four SageMaker phases, whenever the split exists."""
    split = row.get("time_split_seconds") or {}
    if not split:
        return {}
    phase = {name: _number(split.get(name)) or 0.0 for name in ("waiting", "downloading", "training", "uploading")}
    metrics = row.get("metrics") or {}
    metric = {name: _number(value) for name, value in metrics.items()}
    parts: dict[str, float] = {"startup": phase["waiting"] + phase["downloading"]}
    save = metric.get(SAVE_METRIC) or 0.0
    if metric.get(SPLIT_MARKER_METRIC) is not None:
        printed = 0.0
        for part, names in PHASE_METRICS.items():
            values = [value for name in names if (value := metric.get(name)) is not None]
            if values:
                parts[part] = sum(values)
                printed += parts[part]
        # The printed phases are measured inside the Training phase; clock granularity can make them exceed it.
        parts["install"] = max(phase["training"] - printed - save, 0.0)
    else:
        save = 0.0  # inside the unsplit Training phase
    parts["upload"] = phase["uploading"] + save
    parts["total"] = sum(phase.values())
    return parts


def _ratios(row: Mapping[str, Any]) -> dict[str, float]:
    """actual / table seconds per part of one row, clipped to the ratio bound; parts without both left out.

    The row's estimate was itself calibrated (by the factors of its `calibration`): dividing them out compares every
    job with the same table value, so factors converge instead of compounding run after run."""
    estimated = row.get("estimated_seconds") or {}
    in_force = (row.get("calibration") or {}).get("factors") or {}
    actual = row.get("actual_seconds") or actual_seconds(row)
    ratios: dict[str, float] = {}
    for part in PARTS:
        expected, measured = _number(estimated.get(part)), _number(actual.get(part))
        factor = _number(in_force.get(part)) or 1.0
        if expected is None or measured is None or expected <= 0:
            continue
        ratio = max(measured, 0.0) / (expected / factor)
        ratios[part] = min(max(ratio, 1.0 / RATIO_BOUND), RATIO_BOUND)
    return ratios


def calibrates(row: Mapping[str, Any]) -> bool:
    """Whether a ledger row can calibrate: a completed, uninterrupted job with an estimate split into parts."""
    return (
        row.get("status") == CALIBRATING_STATUS
        and not _number(row.get("interruptions"))
        and bool(row.get("estimated_seconds"))
        and bool(row.get("calibration_key"))
    )


def shrunk_factor(ratios: Iterable[float], prior_weight: float = PRIOR_WEIGHT) -> float:
    """The geometric mean of `ratios` shrunk toward 1.0 as if `prior_weight` samples had said 1.0."""
    logs = [math.log(ratio) for ratio in ratios if ratio > 0]
    if not logs:
        return 1.0
    return math.exp(sum(logs) / (len(logs) + prior_weight))


def calibrations(rows: Iterable[Mapping[str, Any]]) -> dict[str, Calibration]:
    """Per calibration key, the factors its recorded jobs call for (see the module docstring). Rows that cannot
    calibrate (`calibrates`) are ignored; a key with none of them is absent (callers use `uncalibrated`)."""
    by_key: dict[str, list[dict[str, float]]] = {}
    for row in rows:
        if calibrates(row):
            by_key.setdefault(str(row["calibration_key"]), []).append(_ratios(row))
    result: dict[str, Calibration] = {}
    for key, samples in sorted(by_key.items()):
        factors = {
            part: round(shrunk_factor(ratios[part] for ratios in samples if part in ratios), 4)
            for part in PARTS
            if any(part in ratios for ratios in samples)
        }
        result[key] = Calibration(
            key=key,
            factors=factors,
            samples=len(samples),
            source=f"ledger: {len(samples)} completed job(s), prior weight {PRIOR_WEIGHT:g}",
        )
    return result
