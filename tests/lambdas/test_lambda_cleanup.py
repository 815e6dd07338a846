"""Cleanup's logic against moto (S3, DynamoDB, SNS) and the local SageMaker emulation (Search, Stop, Describe)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from finetune.local.backends import describe_fields
from finetune.local.services import LocalServices, local_services
from lambdas import aws, catalog, cleanup, ledger, settings
from lambdas.errors import ConfigurationError
from tests.support.lambdas import BUCKET, ROLE_ARN, TABLE

PREFIX = "finetune-abc123"
STARTED = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class Jobs:
    """A training backend whose jobs train until stopped; `stop_to` says whether a stop ends at once."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.stop_to = "Stopped"

    def create(self, request: dict[str, Any]) -> None:
        self.state[request["TrainingJobName"]] = "InProgress"

    def describe(self, job_name: str) -> dict[str, Any] | None:
        status = self.state.get(job_name)
        if status is None:
            return None
        ended = status in ("Completed", "Stopped")
        return describe_fields(
            status,
            {"InProgress": "Training", "Stopping": "Stopping"}.get(status, status),
            started=STARTED,
            ended=STARTED + timedelta(seconds=1800) if ended else None,
            training_seconds=1800,
            billable_seconds=600,
            metrics={"eval_intent_accuracy": 0.9} if status == "Completed" else {},
        )

    def stop(self, job_name: str) -> None:
        self.state[job_name] = self.stop_to


@pytest.fixture
def jobs(moto_aws) -> Iterator[Jobs]:
    backend = Jobs()
    with local_services(LocalServices(backend, "123456789012", "us-east-1")):
        yield backend


@pytest.fixture
def topic_arn(moto_aws) -> str:
    return aws.client("sns").create_topic(Name="runs")["TopicArn"]


def _settings(topic_arn: str, wait: int = 0) -> settings.CleanupSettings:
    return settings.CleanupSettings(
        table_name=TABLE, bucket_name=BUCKET, topic_arn=topic_arn, job_name_prefix=PREFIX, stop_wait_seconds=wait
    )


def _launch(name: str, run_id: str, approach: str = "lora", extra_tags: dict[str, str] | None = None) -> None:
    tags = {"project": "finetune", "run_id": run_id, "model": "mistral-7b", "approach": approach, **(extra_tags or {})}
    aws.client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        HyperParameters={"model_id": json.dumps("mistralai/Mistral-7B-v0.1")},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/models/mistral-7b-{approach}/"},
        ResourceConfig={"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 200},
        StoppingCondition={"MaxRuntimeInSeconds": 10800, "MaxWaitTimeInSeconds": 21600},
        EnableManagedSpotTraining=True,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def _event(name: str = "study-1", status: str = "ABORTED", error: str | None = None, cause: str | None = None):
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:finetune"
    return {
        "version": "0",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "detail": {
            "executionArn": f"{machine.replace('stateMachine', 'execution')}:{name}",
            "stateMachineArn": machine,
            "name": name,
            "status": status,
            "startDate": 1764144000000,
            "stopDate": 1764147600000,
            "input": "{}",
            "output": None,
            "error": error,
            "cause": cause,
        },
    }


def _run(topic_arn: str, event: dict[str, Any], wait: int = 0, now: datetime | None = None) -> dict[str, Any]:
    return cleanup.cleanup_run(
        cleanup.ExecutionEnd.from_event(event),
        _settings(topic_arn, wait),
        sagemaker=aws.client("sagemaker"),
        dynamodb=aws.client("dynamodb"),
        s3=aws.client("s3"),
        sns=aws.client("sns"),
        now=lambda: now or STARTED + timedelta(hours=1),
        sleep=lambda _seconds: None,
    )


def _rows(run_id: str) -> dict[str, dict[str, Any]]:
    return {row["job_name"]: row for row in ledger.run_rows(aws.client("dynamodb"), TABLE, run_id)}


def test_only_this_runs_running_jobs_of_this_deployment_are_stopped_across_search_pages(jobs, topic_arn) -> None:
    # Given: two running jobs and a completed one of run study-1; the same run id in another deployment (another
    # prefix); and another run of this deployment.
    for name, run_id in (
        (f"{PREFIX}-study-1-mistral-7b-lora-1", "study-1"),
        (f"{PREFIX}-study-1-mistral-7b-qlora-2", "study-1"),
        (f"{PREFIX}-study-1-mistral-7b-full-3", "study-1"),
        ("finetune-ffffff-study-1-mistral-7b-lora-4", "study-1"),
        (f"{PREFIX}-study-2-mistral-7b-lora-5", "study-2"),
    ):
        _launch(name, run_id)
    jobs.state[f"{PREFIX}-study-1-mistral-7b-full-3"] = "Completed"

    # When: Search pages hold one job each
    found = cleanup.find_run_jobs(aws.client("sagemaker"), "study-1", PREFIX, page_size=1)
    result = _run(topic_arn, _event(error="OperatorStop", cause="not needed"))

    # Then
    assert [j["TrainingJobName"] for j in found] == sorted(result["jobs_found"])
    assert len(found) == 3
    assert sorted(result["stopped"]) == [f"{PREFIX}-study-1-mistral-7b-lora-1", f"{PREFIX}-study-1-mistral-7b-qlora-2"]
    assert jobs.state["finetune-ffffff-study-1-mistral-7b-lora-4"] == "InProgress"
    assert jobs.state[f"{PREFIX}-study-2-mistral-7b-lora-5"] == "InProgress"
    rows = _rows("study-1")
    assert len(rows) == 3
    stopped = rows[f"{PREFIX}-study-1-mistral-7b-lora-1"]
    assert stopped["status"] == "Stopped"
    assert stopped["failure_reason"] == "execution ABORTED: OperatorStop: not needed"
    assert stopped["billable_seconds"] == 600
    price = catalog.INSTANCES["ml.g5.2xlarge"].hourly_price_usd
    assert float(stopped["cost_usd"]) == pytest.approx(600 * price / 3600, abs=1e-4)
    assert stopped["price_source"] == "catalog"
    completed = rows[f"{PREFIX}-study-1-mistral-7b-full-3"]
    assert completed["status"] == "Completed" and not completed["failure_reason"]  # ended on its own: as it ended


def test_a_job_still_stopping_at_the_deadline_is_recorded_with_its_elapsed_time_as_cost_so_far(jobs, topic_arn) -> None:
    jobs.stop_to = "Stopping"
    _launch(f"{PREFIX}-study-1-mistral-7b-lora-1", "study-1")

    _run(topic_arn, _event(status="TIMED_OUT"), wait=0, now=STARTED + timedelta(seconds=2700))

    [row] = _rows("study-1").values()
    assert row["status"] == "Stopped"
    assert row["training_seconds"] == row["billable_seconds"] == 2700  # an upper bound of the bill
    assert "TIMED_OUT" in row["failure_reason"] and "still Stopping" in row["failure_reason"]
    price = catalog.INSTANCES["ml.g5.2xlarge"].hourly_price_usd
    assert float(row["cost_usd"]) == pytest.approx(2700 * price / 3600, abs=1e-4)


def test_a_price_tag_on_the_job_wins_over_the_catalog(jobs, topic_arn) -> None:
    _launch(f"{PREFIX}-study-1-mistral-7b-lora-1", "study-1", extra_tags={"hourly_price_usd": "1.2"})

    _run(topic_arn, _event())

    [row] = _rows("study-1").values()
    assert float(row["hourly_price_usd"]) == 1.2 and float(row["cost_usd"]) == pytest.approx(0.2)


def test_cleanup_twice_stops_and_records_nothing_more(jobs, topic_arn) -> None:
    _launch(f"{PREFIX}-study-1-mistral-7b-lora-1", "study-1")
    first = _run(topic_arn, _event())

    second = _run(topic_arn, _event())

    assert first["stopped"] and first["recorded"]
    assert second["stopped"] == [] and second["recorded"] == []
    assert len(_rows("study-1")) == 1


def test_rows_and_a_finished_report_of_the_workflow_are_kept(jobs, topic_arn) -> None:
    # Record and Report ran (then Notify failed): nothing to stop, record or report again; the cause is published.
    name = f"{PREFIX}-study-1-mistral-7b-lora-1"
    _launch(name, "study-1")
    jobs.state[name] = "Completed"
    dynamodb = aws.client("dynamodb")
    ledger.put_row(dynamodb, TABLE, {"pk": "RUN#study-1", "sk": f"JOB#{name}", "job_name": name, "status": "Completed"})
    ledger.put_row(
        dynamodb, TABLE, ledger.summary_row("study-1", {"report_md_uri": "s3://b/reports/study-1/report.md"})
    )

    result = _run(topic_arn, _event(status="FAILED", error="SNS.AuthorizationErrorException", cause="KMS"))

    assert result["stopped"] == [] and result["recorded"] == [] and result["report_md_uri"] is None
    assert "SNS.AuthorizationErrorException" in result["message"]
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="reports/").get("KeyCount", 0) == 0


def test_the_partial_report_says_so_and_the_message_names_the_cause(jobs, topic_arn) -> None:
    from moto.sns.models import sns_backends

    _launch(f"{PREFIX}-study-1-mistral-7b-lora-1", "study-1")
    cause = json.dumps({"errorType": "Throttled", "errorMessage": "DescribeTrainingJob throttled"})

    result = _run(topic_arn, _event(status="FAILED", error="Throttled", cause=cause))

    s3 = aws.client("s3")
    document = json.loads(s3.get_object(Bucket=BUCKET, Key="reports/study-1/report.json")["Body"].read())
    assert document["partial"] is True and document["execution_status"] == "FAILED"
    markdown = s3.get_object(Bucket=BUCKET, Key="reports/study-1/report.md")["Body"].read().decode()
    assert markdown.startswith("> **Partial report.**") and "Throttled: DescribeTrainingJob throttled" in markdown
    [(_id, message, subject, *_)] = sns_backends["123456789012"]["us-east-1"].topics[topic_arn].sent_notifications
    assert message == result["message"] and subject == "Fine-tuning run FAILED: study-1"
    assert "Throttled: DescribeTrainingJob throttled" in message and "reports/study-1/report.md" in message


@pytest.mark.parametrize(
    ("status", "error", "cause", "expected"),
    [
        ("TIMED_OUT", None, None, "execution TIMED_OUT: it ran past the state machine's timeout"),
        ("ABORTED", None, None, "execution ABORTED: stopped (StopExecution) without an error or cause"),
        ("FAILED", "States.Runtime", "boom", "execution FAILED: States.Runtime: boom"),
    ],
)
def test_the_reason_says_how_the_execution_ended(status, error, cause, expected) -> None:
    end = cleanup.ExecutionEnd.from_event(_event(status=status, error=error, cause=cause))
    assert end.reason.startswith(expected)
    assert end.run_id == "study-1"


def test_an_event_that_is_not_an_execution_status_change_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Step Functions execution status change"):
        cleanup.ExecutionEnd.from_event({"source": "aws.sagemaker", "detail-type": "SageMaker Training Job"})


def test_a_missing_environment_variable_is_named() -> None:
    env = {"TABLE_NAME": "t", "BUCKET_NAME": "b", "JOB_NAME_PREFIX": "p", "CLEANUP_STOP_WAIT_SECONDS": "300"}
    with pytest.raises(ConfigurationError, match="TOPIC_ARN"):
        settings.CleanupSettings.from_env(env)
    assert settings.CleanupSettings.from_env({**env, "TOPIC_ARN": "arn"}).stop_wait_seconds == 300
