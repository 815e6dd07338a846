"""Status: DescribeTrainingJob normalised for the state machine's Choice and for Record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas import aws, training_job
from lambdas.errors import Throttled, TrainingJobNotFound
from lambdas.handlers import launch as launch_handler
from lambdas.handlers import status as status_handler
from tests.lambdas.lambda_testkit import describe_response, one_job


def test_completed_spot_job_is_normalised() -> None:
    # Given a completed spot job with times and final metrics
    description = describe_response(
        "job-1",
        TrainingJobStatus="Completed",
        SecondaryStatus="Completed",
        TrainingTimeInSeconds=500,
        BillableTimeInSeconds=100,
        TrainingEndTime=datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
        FinalMetricDataList=[
            {"MetricName": "eval_intent_accuracy", "Value": 0.93, "Timestamp": datetime(2026, 11, 25, tzinfo=UTC)},
            {"MetricName": "train_loss", "Value": float("nan")},
        ],
    )
    # When normalised
    status = training_job.normalise_description(description)
    # Then it says ended, carries seconds and finite metrics, and ISO times
    assert status == {
        "job_name": "job-1",
        "status": "Completed",
        "secondary_status": "Completed",
        "ended": True,
        "training_seconds": 500,
        "billable_seconds": 100,
        "metrics": {"eval_intent_accuracy": 0.93},
        "failure_reason": None,
        "creation_time": "2026-11-25T12:00:00+00:00",
        "end_time": "2026-11-25T13:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("state", "ended"),
    [("InProgress", False), ("Stopping", False), ("Failed", True), ("Stopped", True), ("Completed", True)],
)
def test_only_final_states_end_the_wait(state: str, ended: bool) -> None:
    assert training_job.normalise_description(describe_response("j", TrainingJobStatus=state))["ended"] is ended


def test_missing_time_fields_read_as_zero() -> None:
    status = training_job.normalise_description(
        describe_response("j", TrainingJobStatus="Failed", FailureReason="AlgorithmError: boom")
    )
    assert (status["training_seconds"], status["billable_seconds"]) == (0, 0)
    assert status["failure_reason"] == "AlgorithmError: boom" and status["end_time"] is None


def test_status_handler_describes_a_launched_job(moto_aws: None, lambda_context: Any) -> None:
    job = one_job()
    launch_handler.handler(job, lambda_context)
    result = status_handler.handler({"job_name": job["job_name"]}, lambda_context)
    assert result["job_name"] == job["job_name"] and result["ended"] is True  # moto completes at once
    assert result["billable_seconds"] == 0 and isinstance(result["creation_time"], str)


def test_status_of_an_unknown_job_is_a_typed_error(moto_aws: None) -> None:
    with pytest.raises(TrainingJobNotFound):
        training_job.status(aws.client("sagemaker"), "ft-no-such-job")


def test_throttled_describe_is_a_typed_error() -> None:
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_training_job", "ThrottlingException", "Rate exceeded")
        with pytest.raises(Throttled):
            training_job.status(sagemaker, "job-1")
