"""The Classify step: a failed attempt's final status and class, from the iteration's state."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from lambdas.handlers.classify import classify_attempt

QUOTA = (
    "The account-level service limit 'ml.g5.2xlarge for spot training job usage' is 0 Instances, with current "
    "utilization of 0 Instances and a request delta of 1 Instances."
)


class FakeSageMaker:
    """DescribeTrainingJob answering with `description`, or SageMaker's "not found" when it is None."""

    def __init__(self, description: dict[str, Any] | None) -> None:
        self.description = description

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        if self.description is None:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Requested resource not found."}},
                "DescribeTrainingJob",
            )
        return {"TrainingJobName": TrainingJobName, **self.description}


def test_a_refused_launch_is_classified_from_createtrainingjobs_error() -> None:
    error = {"Error": "QuotaExhausted", "Cause": json.dumps({"errorType": "QuotaExhausted", "errorMessage": QUOTA})}

    result = classify_attempt(FakeSageMaker(None), {"job": {"job_name": "job-1"}, "error": error})

    assert result["failure_class"] == "quota_exhausted"
    assert result["status"]["status"] == "Failed" and result["status"]["billable_seconds"] == 0


def test_an_ended_job_is_classified_from_its_status_and_transitions() -> None:
    transitions = [{"Status": "Interrupted", "StatusMessage": "Spot capacity was reclaimed."}]
    status = {"status": "Stopped", "secondary_status": "Stopped", "failure_reason": None, "billable_seconds": 60}
    sagemaker = FakeSageMaker({"TrainingJobStatus": "Stopped", "SecondaryStatusTransitions": transitions})

    result = classify_attempt(sagemaker, {"job": {"job_name": "job-1"}, "status": status})

    assert result["failure_class"] == "spot_wait_exceeded"
    assert result["status"] is status


def test_a_lost_job_that_still_runs_is_never_remedied() -> None:
    sagemaker = FakeSageMaker({"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"})
    error = {"Error": "States.Timeout", "Cause": "Status timed out"}

    result = classify_attempt(sagemaker, {"job": {"job_name": "job-1"}, "error": error})

    assert result["still_running"] is True and result["failure_class"] == "unknown"
