"""The run lifecycle, end to end: an execution that ends FAILED/TIMED_OUT/ABORTED is delivered (as EventBridge shapes
the status change) to the template's rule, whose Cleanup Lambda stops, records, reports and notifies."""

from __future__ import annotations

import json
import time

import pytest

from finetune.local.backends import ScriptedOutcome
from tests.support.workflow import GOOD_METRICS

TWO_JOBS = {
    "experiments": [
        {"model": "mistral-7b", "approach": "lora"},
        {"model": "mistral-7b", "approach": "qlora"},
    ],
    "budget_usd": 500,
    "max_runtime_hours": 2,
}
STILL_TRAINING = ScriptedOutcome(polls_in_progress=10_000, metrics=GOOD_METRICS)


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def _job_rows(result) -> dict[str, dict]:
    return {row["approach"]: row for row in result.ledger_rows if row["sk"].startswith("JOB#")}


def test_stopping_a_run_mid_training_stops_records_reports_and_notifies(account_with) -> None:
    # Given a run of two jobs that are both training
    account = account_with(lambda _request: STILL_TRAINING)
    arn = account.start(TWO_JOBS, "stopped-mid-training")
    _wait_for(lambda: len(account.services.create_calls) == 2)

    # When an operator stops the execution
    account.stop_execution(arn, error="OperatorStop", cause="wrong dataset, stopping to save money")
    result = account.wait(arn)

    # Then EventBridge's status change reached Cleanup, which stopped both jobs ...
    assert result.status == "ABORTED"
    [delivery] = result.lifecycle
    assert "CleanupFunction" in delivery["function"] and "result" in delivery, delivery
    assert delivery["event"]["detail"]["status"] == "ABORTED"
    assert sorted(result.stop_training_job_calls) == sorted(result.create_training_job_calls)
    # ... recorded both with their cost so far and the execution's cause ...
    rows = _job_rows(result)
    assert set(rows) == {"lora", "qlora"}
    for row in rows.values():
        assert row["status"] == "Stopped"
        assert row["billable_seconds"] > 0 and row["cost_usd"] > 0
        assert row["cost_usd"] == pytest.approx(row["billable_seconds"] * row["hourly_price_usd"] / 3600, abs=1e-4)
        assert "ABORTED" in row["failure_reason"] and "wrong dataset" in row["failure_reason"]
    # ... wrote a partial report and a summary ...
    run_id = delivery["result"]["run_id"]
    report = json.loads(result.reports[f"reports/{run_id}/report.json"])
    assert report["partial"] is True and report["execution_status"] == "ABORTED"
    assert report["totals"]["stopped"] == 2
    assert result.reports[f"reports/{run_id}/report.md"].startswith(b"> **Partial report.**")
    [summary] = [row for row in result.ledger_rows if row["sk"] == "SUMMARY"]
    assert summary["partial"] is True
    # ... and published the cause, once.
    [message] = result.notifications
    assert "ABORTED" in message and "wrong dataset" in message and f"reports/{run_id}/report.md" in message


def test_a_run_that_fails_before_launching_is_notified_but_records_nothing(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome())

    result = account.execute({"experiments": [{"model": "mistral-7b", "approach": "prefix-tuning"}]}, "fails-at-plan")

    assert result.status == "FAILED"
    [delivery] = result.lifecycle
    assert delivery["result"]["jobs_found"] == [] and delivery["result"]["report_md_uri"] is None
    assert result.ledger_rows == [] and result.reports == {}
    [message] = result.notifications
    assert "InvalidExecutionInput" in message


def test_a_run_that_succeeds_is_not_delivered_to_cleanup(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))

    result = account.execute({**TWO_JOBS, "experiments": TWO_JOBS["experiments"][:1]}, "succeeds")

    assert result.status == "SUCCEEDED", result.cause
    assert result.lifecycle == []  # the rule's pattern lets FAILED, TIMED_OUT and ABORTED through only
    assert result.stop_training_job_calls == []


def test_a_launch_over_quota_waits_and_retries_until_the_quota_frees(account_with) -> None:
    attempts = []

    def outcome(_request):
        attempts.append(1)
        if len(attempts) == 1:
            return ScriptedOutcome(
                launch_error="ResourceLimitExceeded",
                failure_reason="The account-level service limit 'ml.g5.2xlarge for spot training job usage' is 1",
            )
        return ScriptedOutcome(metrics=GOOD_METRICS)

    result = account_with(outcome).execute({**TWO_JOBS, "experiments": TWO_JOBS["experiments"][:1]}, "quota-busy")

    assert result.status == "SUCCEEDED", result.cause
    assert len(attempts) == 2
    assert _job_rows(result)["lora"]["status"] == "Completed"


def test_the_runner_gives_the_handlers_the_environment_the_stack_gives_them(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome())

    env = account.environment
    assert env["DATA_KEY_ARN"].startswith("arn:aws:kms:us-east-1:123456789012:key/")
    assert env["EXECUTION_TIMEOUT_SECONDS"] == str(48 * 3600)
    # Plan judges execution limits at the deployed poll interval; only the Wait state polls every second locally.
    assert env["STATUS_POLL_SECONDS"] == "300"
    assert env["TOPIC_ARN"] == account.topic_arn
    assert env["JOB_NAME_PREFIX"].startswith("finetune-")
    assert int(env["CLEANUP_STOP_WAIT_SECONDS"]) >= 0
