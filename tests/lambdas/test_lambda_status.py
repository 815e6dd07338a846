"""Status: DescribeTrainingJob normalised for the state machine's Choice and for Record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas import aws, training_job
from lambdas.errors import Throttled, TrainingJobNotFound
from lambdas.handlers import launch as launch_handler
from lambdas.handlers import status as status_handler
from tests.support.lambdas import describe_response, one_job


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
        "time_split_seconds": {"waiting": 0, "downloading": 0, "training": 0, "uploading": 0},
        "interruptions": 0,
        "artifact_uri": "s3://b/m",
    }


def _at(minute: int) -> datetime:
    return datetime(2026, 11, 25, 12, 0, tzinfo=UTC) + timedelta(minutes=minute)


# A managed-spot job that waited 10 minutes for capacity, trained 30, was interrupted, waited 5 more, came back,
# downloaded again and finished: SecondaryStatusTransitions as DescribeTrainingJob returns them.
INTERRUPTED_SPOT_TRANSITIONS = [
    {
        "Status": "Starting",
        "StartTime": _at(0),
        "EndTime": _at(10),
        "StatusMessage": "Preparing the instances for training",
    },
    {"Status": "Downloading", "StartTime": _at(10), "EndTime": _at(14), "StatusMessage": "Downloading input data"},
    {
        "Status": "Training",
        "StartTime": _at(14),
        "EndTime": _at(44),
        "StatusMessage": "Training image download completed. Training in progress.",
    },
    {
        "Status": "Interrupted",
        "StartTime": _at(44),
        "EndTime": _at(45),
        "StatusMessage": "Spot instances were interrupted",
    },
    {
        "Status": "Starting",
        "StartTime": _at(45),
        "EndTime": _at(49),
        "StatusMessage": "Preparing the instances for training",
    },
    {"Status": "Downloading", "StartTime": _at(49), "EndTime": _at(51), "StatusMessage": "Downloading input data"},
    {"Status": "Training", "StartTime": _at(51), "EndTime": _at(71), "StatusMessage": "Training in progress."},
    {
        "Status": "Uploading",
        "StartTime": _at(71),
        "EndTime": _at(73),
        "StatusMessage": "Uploading generated training model",
    },
    {"Status": "Completed", "StartTime": _at(73), "EndTime": _at(73), "StatusMessage": "Training job completed"},
]


def _described(description: dict[str, Any]) -> dict[str, Any]:
    """`description` as DescribeTrainingJob returns it through botocore (the Stubber validates its shape)."""
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_response("describe_training_job", description, {"TrainingJobName": description["TrainingJobName"]})
        return training_job.status(sagemaker, description["TrainingJobName"])


def test_interrupted_spot_job_splits_its_time_and_counts_the_interruption() -> None:
    # Given a spot job interrupted once (SageMaker's transitions, shape-checked by botocore)
    status = _described(
        describe_response(
            "job-1",
            TrainingJobStatus="Completed",
            SecondaryStatus="Completed",
            TrainingTimeInSeconds=73 * 60,
            BillableTimeInSeconds=56 * 60,
            TrainingEndTime=_at(73),
            SecondaryStatusTransitions=INTERRUPTED_SPOT_TRANSITIONS,
        )
    )
    # Then waiting holds both capacity waits and the interruption itself; each phase adds up across the restart
    assert status["time_split_seconds"] == {
        "waiting": (10 + 1 + 4) * 60,
        "downloading": (4 + 2) * 60,
        "training": (30 + 20) * 60,
        "uploading": 2 * 60,
    }
    assert status["interruptions"] == 1


def test_running_phase_counts_up_to_the_last_modification() -> None:
    # Given a job still training (its current transition has no EndTime yet)
    transitions = [
        {
            "Status": "Starting",
            "StartTime": _at(0),
            "EndTime": _at(3),
            "StatusMessage": "Launching requested ML instances",
        },
        {"Status": "Training", "StartTime": _at(3), "StatusMessage": "Training in progress."},
    ]
    status = _described(describe_response("job-2", SecondaryStatusTransitions=transitions, LastModifiedTime=_at(13)))
    # Then the open phase runs to the description's LastModifiedTime
    assert status["time_split_seconds"] == {"waiting": 180, "downloading": 0, "training": 600, "uploading": 0}
    assert status["interruptions"] == 0 and status["ended"] is False


def test_job_that_never_got_spot_capacity_only_waited() -> None:
    transitions = [
        {"Status": "Starting", "StartTime": _at(0), "EndTime": _at(120), "StatusMessage": "Insufficient capacity"},
        {"Status": "MaxWaitTimeExceeded", "StartTime": _at(120), "EndTime": _at(120), "StatusMessage": "Stopped"},
    ]
    status = _described(
        describe_response(
            "job-3",
            TrainingJobStatus="Stopped",
            SecondaryStatus="MaxWaitTimeExceeded",
            TrainingEndTime=_at(120),
            SecondaryStatusTransitions=transitions,
        )
    )
    assert status["time_split_seconds"]["waiting"] == 7200 and sum(status["time_split_seconds"].values()) == 7200


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
