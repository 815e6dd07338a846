"""Record: cost and spot savings from billable seconds, one idempotent ledger row per job, failures included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas import aws, cost, job_resources, ledger, naming, training_job
from lambdas.handlers import launch as launch_handler
from lambdas.handlers import record as record_handler
from tests.support.lambdas import BUCKET, PREFIX, TABLE, describe_response, one_job


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


# --- What the job used: GPU utilization, artifact, time split, hyperparameters, dataset ------------------------------

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def metric_result(query_id: str, label: str, values: list[float]) -> dict[str, Any]:
    """One MetricDataResults entry as CloudWatch returns it (newest-first unless ScanBy says otherwise)."""
    return {
        "Id": query_id,
        "Label": label,
        "Timestamps": [START + timedelta(minutes=i) for i in range(len(values))],
        "Values": values,
        "StatusCode": "Complete",
    }


def test_gpu_utilization_is_per_gpu_mean_and_max_over_every_host() -> None:
    # Given a 2-instance job with 4 GPUs each: SageMaker sums utilization over an instance's GPUs (0-400%)
    cloudwatch = aws.client("cloudwatch")
    expected_queries = job_resources.metric_queries("ft-job", 2)
    assert [q["MetricStat"]["Metric"]["Dimensions"] for q in expected_queries] == [
        [{"Name": "Host", "Value": "ft-job/algo-1"}],
        [{"Name": "Host", "Value": "ft-job/algo-1"}],
        [{"Name": "Host", "Value": "ft-job/algo-2"}],
        [{"Name": "Host", "Value": "ft-job/algo-2"}],
    ]
    with Stubber(cloudwatch) as stub:
        stub.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    metric_result("gpu_1", "GPUUtilization", [320.0, 360.0]),
                    metric_result("memory_1", "GPUMemoryUtilization", [200.0, 280.0]),
                    metric_result("gpu_2", "GPUUtilization", [300.0, 380.0]),
                    metric_result("memory_2", "GPUMemoryUtilization", [240.0, 300.0]),
                ],
                "Messages": [],
            },
            {
                "MetricDataQueries": expected_queries,
                "StartTime": START - timedelta(minutes=1),
                "EndTime": START + timedelta(minutes=31),
                "ScanBy": "TimestampAscending",
            },
        )
        # When summarized over the job's run
        used = job_resources.gpu_utilization(
            cloudwatch,
            "ft-job",
            instance_count=2,
            gpus_per_instance=4,
            started=START.isoformat(),
            ended=(START + timedelta(minutes=30)).isoformat(),
        )
    # Then percentages are per GPU: mean of (80, 90, 75, 95), max 95; memory max 300/4
    assert used == {"gpu_utilization_pct": {"mean": 85.0, "max": 95.0}, "gpu_memory_utilization_pct": {"max": 75.0}}


def test_gpu_utilization_follows_next_tokens() -> None:
    cloudwatch = aws.client("cloudwatch")
    with Stubber(cloudwatch) as stub:
        stub.add_response(
            "get_metric_data",
            {"MetricDataResults": [metric_result("gpu_1", "GPUUtilization", [50.0])], "NextToken": "page-2"},
        )
        stub.add_response(
            "get_metric_data",
            {"MetricDataResults": [metric_result("gpu_1", "GPUUtilization", [70.0])]},
            {
                "MetricDataQueries": job_resources.metric_queries("j", 1),
                "StartTime": START - timedelta(minutes=1),
                "EndTime": START + timedelta(minutes=3),
                "ScanBy": "TimestampAscending",
                "NextToken": "page-2",
            },
        )
        used = job_resources.gpu_utilization(
            cloudwatch,
            "j",
            instance_count=1,
            gpus_per_instance=1,
            started=START.isoformat(),
            ended=(START + timedelta(minutes=2)).isoformat(),
        )
    assert used["gpu_utilization_pct"] == {"mean": 60.0, "max": 70.0}
    assert used["gpu_memory_utilization_pct"] is None


def test_cpu_job_without_gpu_points_has_no_utilization() -> None:
    # Given CloudWatch has no GPU points for the job's host (a CPU instance publishes none)
    cloudwatch = aws.client("cloudwatch")
    with Stubber(cloudwatch) as stub:
        stub.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    {
                        "Id": "gpu_1",
                        "Label": "GPUUtilization",
                        "Timestamps": [],
                        "Values": [],
                        "StatusCode": "Complete",
                    },
                    {
                        "Id": "memory_1",
                        "Label": "GPUMemoryUtilization",
                        "Timestamps": [],
                        "Values": [],
                        "StatusCode": "Complete",
                    },
                ]
            },
        )
        used = job_resources.gpu_utilization(
            cloudwatch, "j", instance_count=1, gpus_per_instance=0, started=START.isoformat(), ended=START.isoformat()
        )
    assert used == {"gpu_utilization_pct": None, "gpu_memory_utilization_pct": None}


def test_job_that_never_started_asks_cloudwatch_nothing() -> None:
    cloudwatch = aws.client("cloudwatch")
    with Stubber(cloudwatch):  # any call would fail: no response queued
        used = job_resources.gpu_utilization(
            cloudwatch, "j", instance_count=1, gpus_per_instance=1, started=None, ended=None
        )
    assert used == {"gpu_utilization_pct": None, "gpu_memory_utilization_pct": None}


def test_an_uncompressed_artifacts_size_is_the_sum_of_the_objects_under_its_prefix(moto_aws: None) -> None:
    # Given a job's uncompressed model folder (CompressionType NONE), files in a subfolder, and a neighbour job
    # whose name extends this one's
    s3 = aws.client("s3")
    prefix = "models/m-full/j/output/model/"
    for key, size in {"model.safetensors": 1000, "config.json": 200, "adapter/tokenizer.json": 34}.items():
        s3.put_object(Bucket=BUCKET, Key=prefix + key, Body=b"x" * size)
    s3.put_object(Bucket=BUCKET, Key="models/m-full/j/output/model-other/x", Body=b"x" * 99)
    # When its size is read from DescribeTrainingJob's S3ModelArtifacts, with or without the trailing slash
    # Then it is the sum of the folder's objects, and nothing outside it
    assert job_resources.artifact_bytes(s3, f"s3://{BUCKET}/{prefix}") == 1234
    assert job_resources.artifact_bytes(s3, f"s3://{BUCKET}/{prefix.rstrip('/')}") == 1234


def test_an_uncompressed_artifact_listed_over_several_pages_is_summed_in_full() -> None:
    # Given ListObjectsV2 answering in two pages (a sharded 7B model has many files)
    s3 = aws.client("s3")
    prefix = "models/m-full/j/output/model/"
    with Stubber(s3) as stub:
        first = {"Contents": [{"Key": prefix + "a", "Size": 1000}], "IsTruncated": True, "NextContinuationToken": "t"}
        stub.add_response("list_objects_v2", first, {"Bucket": BUCKET, "Prefix": prefix})
        second = {"Contents": [{"Key": prefix + "b", "Size": 234}], "IsTruncated": False}
        stub.add_response("list_objects_v2", second, {"Bucket": BUCKET, "Prefix": prefix, "ContinuationToken": "t"})
        # When its size is read
        size = job_resources.artifact_bytes(s3, f"s3://{BUCKET}/{prefix}")
        stub.assert_no_pending_responses()
    # Then both pages count
    assert size == 1234


def test_a_job_that_uploaded_no_model_has_no_artifact_size(moto_aws: None) -> None:
    s3 = aws.client("s3")
    assert job_resources.artifact_bytes(s3, f"s3://{BUCKET}/models/m-lora/failed/output/model/") is None
    assert job_resources.artifact_bytes(s3, None) is None


def test_a_gzipped_artifact_of_a_job_launched_before_uncompressed_output_is_still_sized(moto_aws: None) -> None:
    # Given a job launched with the default GZIP output (before this deployment), still recorded after it
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="models/m-lora/j/output/model.tar.gz", Body=b"x" * 1234)
    # Then its artifact is the one archive
    assert job_resources.artifact_bytes(s3, f"s3://{BUCKET}/models/m-lora/j/output/model.tar.gz") == 1234


def test_dataset_name_comes_from_the_s3_layout() -> None:
    assert naming.dataset_name("s3://b/datasets/banking77/train/") == "banking77"
    assert naming.dataset_name("s3://b/elsewhere/train/") is None


def test_recorded_row_carries_what_a_reader_needs_to_compare_jobs(
    moto_aws: None, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a completed job whose artifact is in S3, with its time split, an interruption and row counts
    job = {**priced_job(), "estimated_cost_usd": 1.25, "estimated_hours": 0.5}
    artifact = f"{job['output_s3_uri']}{job['job_name']}/output/model/"
    bucket, key = naming.split_s3_uri(artifact)
    for name, size in (("adapter_model.safetensors", 4000), ("adapter_config.json", 96)):
        aws.client("s3").put_object(Bucket=bucket, Key=key + name, Body=b"\0" * size)
    split = {"waiting": 600, "downloading": 240, "training": 3000, "uploading": 120}
    final = {
        **status(
            training=4000,
            billable=3600,
            metrics={"dataset_train_rows": 900, "dataset_test_rows": 100, "peak_memory_gb": 17.5},
        ),
        "time_split_seconds": split,
        "interruptions": 1,
        "artifact_uri": artifact,
    }
    # When recorded
    row = record_handler.handler({"job": job, "status": final}, lambda_context)
    # Then the row holds the hyperparameters that shaped the job, the dataset, the artifact and the time split
    assert row["hyperparameters"]["learning_rate"] == job["learning_rate"]
    assert {"epochs", "batch_size", "lora_r", "lora_alpha", "prompt_style", "seed", "max_seq_length"} <= set(
        row["hyperparameters"]
    )
    assert row["dataset"] == {"name": "banking77", "train_rows": 900, "test_rows": 100}
    assert (row["artifact_uri"], row["artifact_bytes"]) == (artifact, 4096)
    assert row["time_split_seconds"] == split and row["interruptions"] == 1
    assert row["metrics"]["peak_memory_gb"] == 17.5
    assert (row["estimated_cost_usd"], row["estimated_hours"]) == (1.25, 0.5)
    # moto's CloudWatch has no GPU points for the job: none recorded rather than zero
    assert row["gpu_utilization_pct"] is None and row["gpu_memory_utilization_pct"] is None
    [item] = stored_items()
    assert item["time_split_seconds"]["M"]["waiting"] == {"N": "600"} and item["artifact_bytes"] == {"N": "4096"}
    # And two EMF lines (Powertools) carry its cost by run and in total, and its status
    spend, recorded = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert spend["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": "Finetune",
            "Dimensions": [["Deployment", "RunId"], ["Deployment"]],
            "Metrics": [{"Name": "JobCostUSD", "Unit": "None"}],
        }
    ]
    assert recorded["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": "Finetune",
            "Dimensions": [["Deployment", "Status"]],
            "Metrics": [{"Name": "JobsRecorded", "Unit": "Count"}],
        }
    ]
    assert (spend["Deployment"], spend["RunId"], spend["JobCostUSD"]) == (PREFIX, job["run_id"], [3.0])
    assert (recorded["Deployment"], recorded["Status"], recorded["JobsRecorded"]) == (PREFIX, "Completed", [1.0])
    assert spend["job_name"] == recorded["job_name"] == job["job_name"]


def test_rows_of_specs_and_statuses_from_before_these_fields_still_build() -> None:
    # Given a status without the time split or artifact, and a spec without the expected cost
    job = priced_job()
    for key in ("estimated_cost_usd", "estimated_hours"):
        job.pop(key, None)
    row = ledger.job_row(job, status())
    assert row["time_split_seconds"] is None and row["interruptions"] == 0
    assert row["artifact_uri"] is None and row["artifact_bytes"] is None
    assert row["estimated_cost_usd"] is None and row["dataset"]["train_rows"] is None


def test_recorded_row_carries_the_estimate_by_part_its_calibration_and_the_actual_parts(
    moto_aws: None, lambda_context: Any
) -> None:
    # Given a planned 2-instance job (DDP; its spec carries the estimate by part and its key) that printed its phases
    job = priced_job()
    split = {"waiting": 200, "downloading": 40, "training": 900, "uploading": 30}
    phases = {"time_download_seconds": 100, "time_load_seconds": 20, "time_train_seconds": 600}
    phases |= {"time_checkpoint_seconds": 30, "time_evaluate_seconds": 60, "time_save_seconds": 10}
    final = {**status(training=1170, billable=1170, metrics=phases), "time_split_seconds": split}
    # When recorded
    row = record_handler.handler({"job": job, "status": final}, lambda_context)
    # Then the row holds what the estimate said by part, under which key and calibration, and what each part took
    assert row["estimated_seconds"] == pytest.approx(job["estimated_seconds"])
    assert row["calibration_key"] == job["calibration_key"] == "g5#lora#ddp"
    assert row["calibration"]["samples"] == 0 and row["calibration"]["factors"] == {}
    assert row["actual_seconds"] == {
        "startup": 240,
        "download": 120,
        "train": 600,
        "checkpoint": 30,
        "evaluate": 60,
        "install": 80,
        "upload": 40,
        "total": 1170,
    }
    # And the stored item is in the calibration index (its key is a string attribute), numbers as numbers
    [item] = stored_items()
    assert item["calibration_key"] == {"S": "g5#lora#ddp"}
    assert item["actual_seconds"]["M"]["train"] == {"N": "600.0"}
    [read] = ledger.calibration_rows(aws.client("dynamodb"), TABLE, "g5#lora#ddp")
    assert read["job_name"] == job["job_name"]


def test_rows_of_specs_planned_before_calibration_stay_out_of_the_calibration_index(moto_aws: None) -> None:
    # Given a spec without the estimate by part or calibration key (planned before them)
    job = priced_job()
    for key in ("estimated_seconds", "calibration_key", "calibration"):
        job.pop(key, None)  # type: ignore[misc]
    row = ledger.job_row(job, status())
    assert row["estimated_seconds"] is None and row["calibration_key"] is None and row["actual_seconds"] is None
    # When written, DynamoDB accepts it (an index key may be absent, never NULL)
    ledger.put_row(aws.client("dynamodb"), TABLE, row)
    [item] = stored_items()
    assert "calibration_key" not in item


def test_a_failing_metrics_lookup_still_records_the_jobs_cost(moto_aws: None, lambda_context: Any) -> None:
    # Given CloudWatch refuses GetMetricData (after botocore's own retries)
    cloudwatch = aws.client("cloudwatch")
    final = {**status(training=3600, billable=3600), "artifact_uri": None}
    with Stubber(cloudwatch) as stub:
        stub.add_client_error("get_metric_data", "ThrottlingException", "Rate exceeded", 400)
        row = record_handler.handler({"job": priced_job(hourly=1.5, count=1), "status": final}, lambda_context)
    # Then the row is written with its cost, and no GPU figures
    assert row["cost_usd"] == 1.5 and row["gpu_utilization_pct"] is None
    assert len(stored_items()) == 1


def test_a_metrics_library_that_raises_never_fails_the_recording(
    moto_aws: None, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the metrics library raising as Powertools 3.23.0 did (no EphemeralMetrics.add_dimensions before 3.25.0)
    def old_powertools(*args: Any, **kwargs: Any) -> None:
        raise AttributeError("'AmazonCloudWatchEMFProvider' object has no attribute 'add_dimensions'")

    monkeypatch.setattr(record_handler.run_metrics, "emit", old_powertools)
    final = {**status(training=3600, billable=3600), "artifact_uri": None}
    # When the job is recorded
    row = record_handler.handler({"job": priced_job(hourly=1.5, count=1), "status": final}, lambda_context)
    # Then Record succeeds with the row it wrote (no Unrecorded path, no Lambda error) and logs what failed
    assert row["cost_usd"] == 1.5 and len(stored_items()) == 1
    assert any(r.message == "metrics not emitted" and r.exc_info for r in caplog.records)
