"""`finetune start/watch/stop/report/runs/data/quotas` against the emulated account: the real state machine and
handlers in moto, scripted training jobs, the CLI's clients in the same moto account."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest

from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import DATA_BUCKET, REGION
from lambdas import report
from tests.support.cli import answer_quota_requests, finetune
from tests.support.workflow import GOOD_METRICS

TRAINS_WELL = ScriptedOutcome(metrics=GOOD_METRICS)
STILL_TRAINING = ScriptedOutcome(polls_in_progress=10_000, metrics=GOOD_METRICS)


def _executions(account) -> list[dict]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return sfn.list_executions(stateMachineArn=account.state_machine_arn)["executions"]


def test_start_wait_follows_a_run_to_success_and_its_report_agrees_with_the_ledger(account_with, tmp_path) -> None:
    # Given a deployed stack whose training jobs train well
    account = account_with(lambda _request: TRAINS_WELL)

    # When a user starts one job and waits for it
    started = finetune(account, "start", "--model", "mistral-7b", "--approach", "qlora", "--name", "cli-ok", "--wait")

    # Then the CLI printed the execution, followed the job to its record, and exited 0 on SUCCEEDED
    assert started.exit_code == 0, started.output
    [execution] = _executions(account)
    assert f"started {execution['executionArn']}" in started.stdout
    assert "console: https://us-east-1.console.aws.amazon.com/states/home" in started.stdout
    assert "recorded " in started.stdout and "execution SUCCEEDED: run cli-ok" in started.stdout

    # And the JSON report (read back from S3) agrees with the ledger's job rows
    as_json = finetune(account, "report", execution["executionArn"], "--format", "json", "--out", str(tmp_path))
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    [row] = [r for r in account.ledger_rows() if r["sk"].startswith("JOB#")]
    [job] = document["jobs"]
    assert (job["job_name"], job["status"]) == (row["job_name"], "Completed")
    assert job["cost_usd"] == pytest.approx(row["cost_usd"]) and job["accuracy"] == pytest.approx(0.9)
    assert document["totals"]["cost_usd"] == pytest.approx(row["cost_usd"])
    assert {p.name for p in tmp_path.iterdir()} == {"report.json", "report.md", *report.charts(document)}

    # And the table, the Markdown and the runs list show the same run
    table = finetune(account, "report", "cli-ok")
    assert table.exit_code == 0 and "1 jobs: 1 completed" in table.stdout
    markdown = finetune(account, "report", "cli-ok", "--format", "md")
    assert markdown.exit_code == 0 and (tmp_path / "report.md").read_text().strip() in markdown.stdout
    listed = finetune(account, "runs")
    assert listed.exit_code == 0 and "cli-ok" in listed.stdout


def test_start_wait_exits_1_with_plans_error_when_the_execution_fails(account_with, tmp_path) -> None:
    # Given an input whose dataset was never uploaded (only Plan, in AWS, can tell)
    account = account_with(lambda _request: TRAINS_WELL)
    input_file = tmp_path / "no-data.json"
    input_file.write_text(
        json.dumps({**json.loads(Path("examples/smoke.json").read_text()), "dataset": {"name": "not-uploaded"}})
    )

    # When it is started and followed
    result = finetune(account, "start", "--input", str(input_file), "--name", "cli-no-data", "--wait")

    # Then the CLI exits 1 with Plan's typed error
    assert result.exit_code == 1
    assert "execution FAILED" in result.stdout
    assert "DatasetNotFound" in result.stderr


def test_an_over_budget_start_is_refused_locally_and_starts_nothing(account_with) -> None:
    account = account_with(lambda _request: TRAINS_WELL)

    result = finetune(account, "start", "--matrix", "study", "--budget", "10")

    assert result.exit_code == 2
    assert "BudgetExceeded (nothing was started)" in result.stderr and "exceeds the budget $10.00" in result.stderr
    assert _executions(account) == []


def test_stop_says_which_jobs_cleanup_stops_and_watch_then_reports_the_abort(account_with) -> None:
    # Given a run whose job is training
    account = account_with(lambda _request: STILL_TRAINING)
    started = finetune(account, "start", "--model", "mistral-7b", "--approach", "lora", "--name", "cli-stop")
    assert started.exit_code == 0, started.output
    deadline = time.monotonic() + 60
    while not account.services.create_calls and time.monotonic() < deadline:
        time.sleep(0.2)

    # When the user stops it by execution name
    stopped = finetune(account, "stop", "cli-stop")

    # Then the execution is stopped and the in-progress job is named as Cleanup's to stop
    assert stopped.exit_code == 0, stopped.output
    assert "stopped execution" in stopped.stdout
    assert "Cleanup Lambda stops these training jobs" in stopped.stdout
    [job_name] = account.services.create_calls
    assert f"{job_name}: InProgress" in stopped.stdout
    result = account.wait(_executions(account)[0]["executionArn"])  # EventBridge delivers the end to Cleanup
    assert result.stop_training_job_calls == [job_name]

    # And watching it afterwards exits 1 (it did not succeed); stopping it again changes nothing
    watched = finetune(account, "watch", "cli-stop")
    assert watched.exit_code == 1 and "execution ABORTED" in watched.stdout
    again = finetune(account, "stop", "cli-stop")
    assert again.exit_code == 0 and "already ended: ABORTED" in again.stdout
    # And Cleanup's partial report says so
    partial = finetune(account, "report", "cli-stop")
    assert partial.exit_code == 0 and "partial report: the execution ended ABORTED" in partial.stdout
    assert "0 completed, 0 failed, 1 stopped" in partial.stdout


def test_data_uploads_the_bundled_sample_and_refuses_a_malformed_row_by_its_line(account_with, tmp_path) -> None:
    account = account_with(lambda _request: TRAINS_WELL)

    uploaded = finetune(account, "data", "banking77-mini", "--name", "mini-copy")

    assert uploaded.exit_code == 0, uploaded.output
    keys = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=DATA_BUCKET, Prefix="datasets/mini-copy/")
    assert sorted(o["Key"] for o in keys["Contents"]) == [
        "datasets/mini-copy/test/test.jsonl",
        "datasets/mini-copy/train/train.jsonl",
    ]

    broken = tmp_path / "train.jsonl"
    broken.write_text('{"text": "where is my card", "label": "card_arrival"}\n{"text": "oops"\n')
    refused = finetune(account, "data", "--train", str(broken), "--test", str(broken), "--name", "broken")
    assert refused.exit_code == 2
    assert f"{broken}:2: not valid JSON" in refused.stderr


def test_quotas_compare_applied_values_with_what_the_study_holds_at_once(account_with) -> None:
    account = account_with(lambda _request: TRAINS_WELL)
    answer_quota_requests(account, [])

    result = finetune(account, "quotas", "--matrix", "study")

    assert result.exit_code == 0, result.output
    assert "ml.g6.xlarge for spot training job usage" in result.stdout
    assert "max_concurrency 3" in result.stdout
