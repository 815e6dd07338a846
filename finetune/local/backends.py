"""Training backends for the local account: a scripted one (workflow tests) and the real one (`make demo`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from finetune.local.services import ServiceError, utcnow

ENDED = {"Completed", "Failed", "Stopped"}


@dataclass(frozen=True)
class ScriptedOutcome:
    """How a scripted job ends, after `polls_in_progress` describes that say InProgress/Training."""

    status: str = "Completed"
    secondary_status: str = "Completed"
    training_seconds: int = 600
    billable_seconds: int = 600
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str = ""
    polls_in_progress: int = 1
    # When set, CreateTrainingJob itself fails with this error code (e.g. ResourceLimitExceeded).
    launch_error: str = ""


def describe_fields(
    status: str,
    secondary_status: str,
    *,
    started: Any,
    ended: Any | None,
    training_seconds: int,
    billable_seconds: int,
    metrics: dict[str, float],
    failure_reason: str = "",
) -> dict[str, Any]:
    """The DescribeTrainingJob fields a running or ended job has, shaped as SageMaker returns them."""
    fields: dict[str, Any] = {
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary_status,
        "TrainingStartTime": started,
        "FinalMetricDataList": [
            {"MetricName": name, "Value": float(value), "Timestamp": ended or started}
            for name, value in metrics.items()
        ],
    }
    if ended is not None:
        fields["TrainingEndTime"] = ended
        # SageMaker reports both times only once a job has ended; failed jobs may lack them (then 0 here).
        fields["TrainingTimeInSeconds"] = training_seconds
        fields["BillableTimeInSeconds"] = billable_seconds
    if failure_reason:
        fields["FailureReason"] = failure_reason[:1024]
    return fields


class ScriptedTrainingBackend:
    """Jobs end as `outcome_for(request)` says, without training anything."""

    def __init__(self, outcome_for: Callable[[dict[str, Any]], ScriptedOutcome]) -> None:
        self._outcome_for = outcome_for
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create(self, request: dict[str, Any]) -> None:
        outcome = self._outcome_for(request)
        if outcome.launch_error:
            raise ServiceError(outcome.launch_error, outcome.failure_reason or outcome.launch_error)
        with self._lock:
            self._jobs[request["TrainingJobName"]] = {
                "outcome": outcome,
                "polls": 0,
                "started": utcnow(),
            }

    def describe(self, job_name: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_name)
            if job is None:
                return None
            outcome: ScriptedOutcome = job["outcome"]
            job["polls"] += 1
            if job["polls"] <= outcome.polls_in_progress:
                return describe_fields(
                    "InProgress",
                    "Training",
                    started=job["started"],
                    ended=None,
                    training_seconds=0,
                    billable_seconds=0,
                    metrics={},
                )
            return describe_fields(
                outcome.status,
                outcome.secondary_status,
                started=job["started"],
                ended=job["started"] + timedelta(seconds=outcome.training_seconds),
                training_seconds=outcome.training_seconds,
                billable_seconds=outcome.billable_seconds,
                metrics=outcome.metrics,
                failure_reason=outcome.failure_reason,
            )

    def stop(self, job_name: str) -> None:
        with self._lock:
            job = self._jobs[job_name]
            job["outcome"] = ScriptedOutcome(status="Stopped", secondary_status="Stopped", polls_in_progress=0)
