"""Record: cost and spot savings from billable seconds, one idempotent ledger row per job, failures included."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas import aws, cost, ledger, training_job
from lambdas.handlers import launch as launch_handler
from lambdas.handlers import record as record_handler
from tests.lambdas.lambda_testkit import TABLE, describe_response, one_job


def status(state: str = "Completed", training: int = 500, billable: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "job_name": extra.pop("job_name", "j"),
        "status": state,
        "secondary_status": state,
        "ended": True,
        "training_seconds": training,
        "billable_seconds": billable,
        "metrics": extra.pop("metrics", {}),
        "failure_reason": extra.pop("failure_reason", None),
        "creation_time": "2026-11-25T12:00:00+00:00",
        "end_time": "2026-11-25T13:00:00+00:00",
    }


def priced_job(hourly: float = 1.5, count: int = 2) -> dict[str, Any]:
    return {**one_job(instance_type="ml.g5.2xlarge", instance_count=count), "hourly_price_usd": hourly}


def stored_items() -> list[dict[str, Any]]:
    return aws.client("dynamodb").scan(TableName=TABLE)["Items"]


def test_cost_is_billable_seconds_times_instances_times_hourly_price() -> None:
    # 3600 billable s x 2 instances x $1.50/h
    assert cost.job_cost_usd(3600, 2, 1.5) == Decimal("3.00")


def test_spot_savings_follow_sagemakers_definition() -> None:
    assert cost.spot_savings_pct(100, 500) == Decimal("80.00")  # the AWS docs' example
    assert cost.spot_savings_pct(500, 500) == 0
    assert cost.spot_savings_pct(0, 0) == 0  # never trained: no division, no savings


def test_completed_spot_job_is_recorded_with_cost_savings_and_metrics(moto_aws: None, lambda_context: Any) -> None:
    # Given a 2-instance job at $1.50/h that trained 500 s and was billed 3600 s... per instance
    job = priced_job()
    final = status(training=4000, billable=3600, metrics={"eval_intent_accuracy": 0.9312, "train_loss": 0.41})
    # When recorded
    row = record_handler.handler({"job": job, "status": final}, lambda_context)
    # Then the returned row and the stored item carry the contract fields, numbers as DynamoDB numbers
    assert row["cost_usd"] == 3.0 and row["spot_savings_pct"] == 10.0
    assert row["pk"] == f"RUN#{job['run_id']}" and row["sk"] == f"JOB#{job['job_name']}"
    assert (row["model"], row["approach"], row["instance_type"], row["instance_count"]) == (
        "mistral-7b",
        "lora",
        "ml.g5.2xlarge",
        2,
    )
    assert row["metrics"] == {"eval_intent_accuracy": 0.9312, "train_loss": 0.41}
    assert (row["price_source"], row["hourly_price_usd"], row["spot"]) == ("catalog", 1.5, True)
    assert (row["created_at"], row["ended_at"]) == ("2026-11-25T12:00:00+00:00", "2026-11-25T13:00:00+00:00")
    [item] = stored_items()
    assert item["cost_usd"] == {"N": "3.0000"} and item["billable_seconds"] == {"N": "3600"}
    assert item["metrics"]["M"]["eval_intent_accuracy"] == {"N": "0.9312"}
    json.dumps(row)


def test_retried_record_writes_one_identical_row(moto_aws: None, lambda_context: Any) -> None:
    event = {"job": priced_job(), "status": status(metrics={"eval_intent_accuracy": 0.9})}
    first = record_handler.handler(event, lambda_context)
    first_items = stored_items()
    again = record_handler.handler(event, lambda_context)
    assert first == again and stored_items() == first_items and len(first_items) == 1


@pytest.mark.parametrize("state", ["Failed", "Stopped"])
def test_failed_and_stopped_jobs_are_billed_and_recorded(state: str, moto_aws: None, lambda_context: Any) -> None:
    # Given a job that ran 20 minutes before failing or being stopped
    final = status(state, training=1200, billable=1200, failure_reason="AlgorithmError: CUDA out of memory")
    row = record_handler.handler({"job": priced_job(hourly=1.5, count=1), "status": final}, lambda_context)
    # Then its cost is recorded like any other job's
    assert row["status"] == state and row["cost_usd"] == 0.5
    assert row["failure_reason"] == "AlgorithmError: CUDA out of memory"
    assert len(stored_items()) == 1


def test_job_that_never_launched_is_recorded_failed_and_unbilled(moto_aws: None, lambda_context: Any) -> None:
    # Given Launch failed (the Map's Catch passes the Lambda error) and SageMaker never saw the job
    cause = json.dumps({"errorType": "QuotaExceeded", "errorMessage": "ft-x: The account-level service limit ..."})
    event = {"job": priced_job(), "error": {"Error": "QuotaExceeded", "Cause": cause}}
    row = record_handler.handler(event, lambda_context)
    # Then it is Failed, costs nothing, and says why
    assert (row["status"], row["billable_seconds"], row["cost_usd"]) == ("Failed", 0, 0)
    assert row["failure_reason"] == "QuotaExceeded: ft-x: The account-level service limit ..."
    assert row["created_at"] is None


def test_job_that_ran_although_status_failed_is_recorded_from_sagemaker(moto_aws: None, lambda_context: Any) -> None:
    # Given a job that exists (moto completes it at once) but whose Status step failed
    job = priced_job()
    launch_handler.handler(job, lambda_context)
    event = {"job": job, "error": {"Error": "Throttled", "Cause": "Rate exceeded"}}
    row = record_handler.handler(event, lambda_context)
    # Then SageMaker's own final state is recorded
    assert row["status"] == "Completed" and row["failure_reason"] is None


def test_job_still_running_when_the_workflow_lost_it_is_recorded_failed_with_cost_so_far() -> None:
    # Given SageMaker says the job is still training and has been billed 20 minutes
    job = priced_job(hourly=1.5, count=1)
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_response(
            "describe_training_job",
            describe_response(job["job_name"], TrainingTimeInSeconds=1200, BillableTimeInSeconds=1200),
            {"TrainingJobName": job["job_name"]},
        )
        final = training_job.outcome_after_error(sagemaker, job["job_name"], {"Error": "States.Timeout"})
    row = ledger.job_row(job, final)
    assert row["status"] == "Failed" and row["cost_usd"] == Decimal("0.5000")
    assert "stopped watching this job while it was InProgress/Training" in row["failure_reason"]
    assert row["failure_reason"].endswith("States.Timeout")


def test_rows_never_hold_floats(moto_aws: None) -> None:
    row = ledger.job_row(priced_job(), status(metrics={"eval_rougeL": 0.1}))
    ledger.put_row(aws.client("dynamodb"), TABLE, row)
    [stored] = ledger.run_rows(aws.client("dynamodb"), TABLE, row["run_id"])
    assert stored["metrics"]["eval_rougeL"] == Decimal("0.1") and isinstance(stored["hourly_price_usd"], Decimal)
