"""`finetune logs`: a training job's CloudWatch streams from every host, interleaved by time (moto's logs backend)."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from finetune import logs as job_logs
from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import REGION
from tests.support.cli import finetune
from tests.support.workflow import GOOD_METRICS


def _now_ms() -> int:
    # CloudWatch (and moto) refuse events older than 14 days: real timestamps.
    return int(time.time() * 1000)


def _write(logs: Any, stream: str, events: list[tuple[int, str]]) -> None:
    try:
        logs.create_log_group(logGroupName=job_logs.LOG_GROUP)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    try:
        logs.create_log_stream(logGroupName=job_logs.LOG_GROUP, logStreamName=stream)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    logs.put_log_events(
        logGroupName=job_logs.LOG_GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": ts, "message": message} for ts, message in events],
    )


def test_logs_interleave_every_hosts_stream_by_time_and_name_the_host(account_with) -> None:
    # Given a two-host job that has run, its hosts' streams in CloudWatch (and a neighbour job's stream)
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    started = finetune(account, "start", "--model", "mistral-7b", "--approach", "qlora", "--name", "logs-1", "--wait")
    assert started.exit_code == 0, started.output
    [job] = account.services.create_calls
    logs = boto3.client("logs", region_name=REGION)
    t = _now_ms()
    _write(logs, f"{job}/algo-1-1700000000", [(t, "host1 starts"), (t + 20, "host1 step 1"), (t + 40, "host1 done")])
    _write(logs, f"{job}/algo-2-1700000001", [(t + 10, "host2 starts"), (t + 30, "host2 step 1")])
    _write(logs, f"{job}x/algo-1-1700000000", [(t + 5, "another job")])

    # When the user reads the job's logs
    result = finetune(account, "logs", job)

    # Then every host's lines come in time order, each named by its host, and nothing of the other job
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "[algo-1] host1 starts",
        "[algo-2] host2 starts",
        "[algo-1] host1 step 1",
        "[algo-2] host2 step 1",
        "[algo-1] host1 done",
    ]
    assert "job Completed/Completed" in result.stderr


def test_logs_of_a_failed_job_without_streams_say_so_and_exit_1(account_with) -> None:
    failing = ScriptedOutcome(status="Failed", secondary_status="Failed", failure_reason="AlgorithmError: boom")
    account = account_with(lambda _request: failing)
    finetune(account, "start", "--model", "mistral-7b", "--approach", "qlora", "--name", "logs-2", "--wait")
    [job] = account.services.create_calls

    result = finetune(account, "logs", job, "--follow")

    assert result.exit_code == 1, result.output
    assert f"no log stream yet for {job}" in result.stderr
    assert "job Failed: AlgorithmError: boom" in result.stderr


class _JobThatEnds:
    """DescribeTrainingJob answers: InProgress for `polls` calls, then `final`."""

    def __init__(self, polls: int, final: str = "Completed", reason: str = "") -> None:
        self.polls, self.final, self.reason, self.calls = polls, final, reason, 0

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.polls:
            return {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}
        return {"TrainingJobStatus": self.final, "SecondaryStatus": self.final, "FailureReason": self.reason}


@mock_aws
def test_follow_prints_each_line_once_and_ends_after_reading_what_the_job_wrote_last() -> None:
    # Given a job whose second host starts late and which writes its last lines just before it ends
    logs = boto3.client("logs", region_name=REGION)
    sagemaker = _JobThatEnds(polls=3)
    t = _now_ms()
    _write(logs, "job/algo-1-1", [(t, "a0"), (t, "a0 same millisecond")])
    later: list[tuple[str, list[tuple[int, str]]]] = [
        ("job/algo-2-1", [(t + 1, "b1"), (t + 3, "b3")]),
        ("job/algo-1-1", [(t + 2, "a2"), (t + 4, "a4")]),
        ("job/algo-1-1", [(t + 5, "a5 written as the job ended")]),
    ]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        # Between polls the hosts write more; the last batch lands as the job ends.
        sleeps.append(seconds)
        stream, events = later.pop(0)
        _write(logs, stream, events)

    # When the logs are followed
    lines: list[job_logs.LogLine] = []
    final = job_logs.tail(logs, sagemaker, "job", lines.append, follow=True, poll_seconds=0, sleep=sleep)

    # Then every line came once, in time order per poll, and the loop ended with the job after a last read
    assert [(line.host, line.message) for line in lines] == [
        ("algo-1", "a0"),
        ("algo-1", "a0 same millisecond"),
        ("algo-2", "b1"),
        ("algo-2", "b3"),
        ("algo-1", "a2"),
        ("algo-1", "a4"),
        ("algo-1", "a5 written as the job ended"),
    ]
    assert final["TrainingJobStatus"] == "Completed" and sleeps == [0, 0, 0]


@mock_aws
def test_without_follow_the_logs_are_read_once() -> None:
    logs = boto3.client("logs", region_name=REGION)
    _write(logs, "job/algo-1-1", [(_now_ms(), "Traceback: CUDA out of memory")])
    sagemaker = _JobThatEnds(polls=0, final="Failed", reason="AlgorithmError: ExecuteUserScriptError")
    lines: list[job_logs.LogLine] = []

    final = job_logs.tail(logs, sagemaker, "job", lines.append, sleep=pytest.fail)

    assert [line.message for line in lines] == ["Traceback: CUDA out of memory"]
    assert final["TrainingJobStatus"] == "Failed" and sagemaker.calls == 1


def test_host_of_a_stream_name() -> None:
    assert job_logs.host_of("run-mistral-lora/algo-2-1700000000") == "algo-2"
    assert job_logs.host_of("odd-stream") == "odd-stream"
