"""Money-leak scenarios: ways a deployed stack could lose track of a training job that keeps billing, each run offline
on the synthesized state machine (moto's interpreter, the real handlers, the local SageMaker) and each followed by
the same check.

THE INVARIANT (checked by `assert_nothing_bills_unwatched` after every scenario, once its executions have ended, their
status changes were delivered and, where the scenario has one, the reconciler's tick ran):
  every training job with this deployment's name prefix
  (a) is InProgress or Stopping only while a RUNNING execution of its run watches it, and
  (b) has exactly one ledger row, whose billable seconds are at least what SageMaker bills for it
      (BillableTimeInSeconds): every billed second is in the ledger.

`jobs_left` shows, per job, what SageMaker and the ledger say at the end (printed with `pytest -s`).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import boto3
import pytest

from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import REGION, LocalAccount
from lambdas import cleanup, naming
from tests.faults.test_fault_injection import _wait_for
from tests.support.workflow import GOOD_METRICS, approach_of

ONE_JOB = {"experiments": [{"model": "mistral-7b", "approach": "lora"}], "budget_usd": 500, "max_runtime_hours": 2}
TWO_JOBS = {
    "experiments": [{"model": "mistral-7b", "approach": "lora"}, {"model": "mistral-7b", "approach": "qlora"}],
    "budget_usd": 500,
    "max_runtime_hours": 2,
}
STILL_TRAINING = ScriptedOutcome(polls_in_progress=10_000, metrics=GOOD_METRICS)
# Scripted jobs bill this long once they end (stopped ones: ScriptedTrainingBackend.stop's outcome).
COMPLETES_AFTER_THREE_POLLS = ScriptedOutcome(polls_in_progress=3, metrics=GOOD_METRICS, billable_seconds=300)


def jobs_left(account: LocalAccount) -> list[dict[str, Any]]:
    """Every job SageMaker holds, with its status, its run, whether a running execution watches it, and its ledger
    row(s): what each scenario leaves behind."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    executions = stepfunctions.list_executions(stateMachineArn=account.state_machine_arn, statusFilter="RUNNING")
    watched_runs = {naming.run_id_from_execution_name(e["name"]) for e in executions["executions"]}
    rows = [row for row in account.ledger_rows() if row["sk"].startswith("JOB#")]
    left = []
    for name in sorted(account.services.training_jobs):
        description = sagemaker.describe_training_job(TrainingJobName=name)
        run_id = {tag["Key"]: tag["Value"] for tag in account.services._tags(name)}.get("run_id")
        own_rows = [row for row in rows if row["job_name"] == name]
        left.append(
            {
                "job": name,
                "sagemaker_status": description["TrainingJobStatus"],
                "billed_seconds": int(description.get("BillableTimeInSeconds") or 0),
                "watched": run_id in watched_runs,
                "ledger_rows": len(own_rows),
                "ledger_status": [row["status"] for row in own_rows],
                "ledger_billable_seconds": [row["billable_seconds"] for row in own_rows],
                "ledger_cost_usd": [row["cost_usd"] for row in own_rows],
            }
        )
    return left


def assert_nothing_bills_unwatched(account: LocalAccount, scenario: str) -> list[dict[str, Any]]:
    """THE INVARIANT (module docstring), with every violation named; the jobs left, for the record."""
    left = jobs_left(account)
    print(f"\n[{scenario}] jobs left:")
    for job in left:
        print(f"  {job}")
    problems = []
    for job in left:
        if job["sagemaker_status"] in cleanup.RUNNING_STATUSES and not job["watched"]:
            problems.append(f"{job['job']} is {job['sagemaker_status']} and no running execution watches it")
        if job["ledger_rows"] != 1:
            problems.append(f"{job['job']} has {job['ledger_rows']} ledger rows")
        elif job["ledger_billable_seconds"][0] < job["billed_seconds"]:
            problems.append(
                f"{job['job']}: SageMaker bills {job['billed_seconds']} s, the ledger holds "
                f"{job['ledger_billable_seconds'][0]} s"
            )
    assert not problems, "\n".join(problems)
    return left


def test_a_job_launched_after_cleanups_first_search_is_stopped_and_recorded(account_with) -> None:
    # Given a run of two jobs whose second CreateTrainingJob is still in flight (Launch mid-call) and lands only
    # after Cleanup's first look
    searched, in_flight = threading.Event(), threading.Event()

    def hold_the_qlora_launch(request: dict[str, Any]) -> None:
        if approach_of(request) == "qlora":
            in_flight.set()
            searched.wait(timeout=30)

    account = account_with(lambda _request: STILL_TRAINING)
    account.services.before_create = hold_the_qlora_launch
    search = account.services._operations[("sagemaker", "Search")]

    def search_then_let_the_launch_land(params: dict[str, Any]) -> dict[str, Any]:
        found = search(params)
        searched.set()
        return found

    account.services._operations[("sagemaker", "Search")] = search_then_let_the_launch_land
    arn = account.start(TWO_JOBS, "abort-mid-launch")
    _wait_for(lambda: in_flight.is_set() and len(account.services.training_jobs) == 1)

    # When the execution is stopped while that Launch is mid-call
    account.stop_execution(arn, error="OperatorStop", cause="stopped while a job was being launched")
    result = account.wait(arn)

    # Then Cleanup's later look found the job created after its first search, stopped and recorded it
    [delivery] = result.lifecycle
    assert sorted(delivery["result"]["stopped"]) == sorted(account.services.training_jobs)
    assert len(account.services.training_jobs) == 2
    assert_nothing_bills_unwatched(account, "abort during Launch")


def test_jobs_the_search_index_does_not_show_yet_are_found_by_name(account_with) -> None:
    # Given SageMaker Search lags behind (its index is eventually consistent): jobs show there only after an hour
    account = account_with(lambda _request: STILL_TRAINING)
    account.services.search_lag_seconds = 3600
    arn = account.start(TWO_JOBS, "search-lag")
    _wait_for(lambda: len(account.services.training_jobs) == 2)

    # When the run is stopped
    account.stop_execution(arn, error="OperatorStop", cause="stopped while Search lags")
    result = account.wait(arn)

    # Then Cleanup found both jobs by name (ListTrainingJobs) and stopped and recorded them
    [delivery] = result.lifecycle
    assert sorted(delivery["result"]["stopped"]) == sorted(account.services.training_jobs)
    assert_nothing_bills_unwatched(account, "search lag")


def test_status_keeps_watching_through_unexpected_describe_errors(account_with) -> None:
    # Given a job that trains for three polls, and DescribeTrainingJob failing three times in a row with an error
    # that says nothing about the job (after botocore's own retries)
    account = account_with(lambda _request: COMPLETES_AFTER_THREE_POLLS)
    account.services.inject("sagemaker", "DescribeTrainingJob", "AccessDeniedException", times=3)

    # When the run executes
    result = account.execute(ONE_JOB, "status-errors")

    # Then Status waited the errors out and the job completed and was recorded by the workflow itself
    assert result.status == "SUCCEEDED", result.cause
    [row] = [row for row in result.ledger_rows if row["sk"].startswith("JOB#")]
    assert row["status"] == "Completed" and row["billable_seconds"] == 300
    assert_nothing_bills_unwatched(account, "Status hits unexpected errors mid-job")


def test_status_errors_past_the_watch_budget_fail_the_run_typed_and_cleanup_stops_the_job(account_with) -> None:
    # Given a job that trains on, and DescribeTrainingJob failing for longer than Status's watch_retry budget
    # (offline: 1 call + 4 retries)
    account = account_with(lambda _request: STILL_TRAINING)
    account.services.inject("sagemaker", "DescribeTrainingJob", "InternalFailure", times=5)

    # When the run executes
    result = account.execute(ONE_JOB, "status-gives-up")

    # Then the execution failed with the typed error, and Cleanup stopped and recorded the job
    assert (result.status, result.error) == ("FAILED", "JobUnwatched")
    [delivery] = result.lifecycle
    assert delivery["result"]["stopped"] == list(account.services.training_jobs)
    assert_nothing_bills_unwatched(account, "Status errors outlast the watch budget")


def test_a_job_still_running_after_its_run_succeeded_is_stopped_and_recorded_by_the_reconciler(account_with) -> None:
    # Given a run that SUCCEEDED, and a job of that run still training that no execution watches (left by a
    # workflow that lost track of it: Cleanup never fires for a SUCCEEDED run)
    account = account_with(
        lambda _request: (
            STILL_TRAINING if "orphan" in _request["TrainingJobName"] else ScriptedOutcome(metrics=GOOD_METRICS)
        )
    )
    result = account.execute(ONE_JOB, "succeeded-with-a-stray")
    assert result.status == "SUCCEEDED", result.cause
    stray = account.seed_orphan_job("orphan-stray", result.run_id)

    # When the reconciler's schedule ticks
    [tick] = account.run_schedules()

    # Then it stopped the stray job and recorded it with its cost, and published what it did
    outcome = tick["result"]
    print(f"\n[reconciler on a seeded orphan]\n{outcome['message']}")
    assert outcome["unwatched"] == [stray] and outcome["stopped"] == [stray] and outcome["recorded"] == [stray]
    assert "stopped" in outcome["message"] and stray in account.notifications()[-1]
    left = assert_nothing_bills_unwatched(account, "SUCCEEDED run with a job still running")
    assert {job["job"]: job["ledger_status"] for job in left}[stray] == ["Stopped"]

    # And a second tick finds nothing to do (idempotent)
    [again] = account.run_schedules()
    assert (again["result"]["stopped"], again["result"]["recorded"]) == ([], [])


def test_the_reconciler_corrects_a_row_written_while_its_job_still_ran(account_with) -> None:
    # Given an ended run whose job's ledger row was written while the job still ran (0 s billed then), and the job
    # has since been billed in full
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS, billable_seconds=480))
    result = account.execute(ONE_JOB, "under-recorded")
    assert result.status == "SUCCEEDED", result.cause
    [row] = [row for row in result.ledger_rows if row["sk"].startswith("JOB#")]
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.update_item(
        TableName=account.environment["TABLE_NAME"],
        Key={"pk": {"S": row["pk"]}, "sk": {"S": row["sk"]}},
        UpdateExpression="SET billable_seconds = :zero, cost_usd = :zero",
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )

    # When the reconciler ticks
    [tick] = account.run_schedules()

    # Then the row holds SageMaker's final bill again
    assert tick["result"]["corrected"] == [row["job_name"]]
    assert_nothing_bills_unwatched(account, "row written while the job ran")


def test_a_run_whose_remedies_could_pass_the_history_limit_is_refused_before_launching(
    account_with, monkeypatch
) -> None:
    # Given the study polled every 2 minutes, 3 at a time: its first attempts fit the 25,000-event history, but the
    # remedies may give every job 3 attempts (the default remedies.max_attempts)
    from lambdas import plan, settings
    from lambdas.errors import ExecutionLimitExceeded
    from tests.support.lambdas import study_jobs

    limits = {"max_concurrency": 3, "execution_timeout_seconds": 48 * 3600, "status_poll_seconds": 120}
    plan.check_execution_limits(study_jobs(), **limits)  # first attempts alone: accepted (all Plan counted before)
    with pytest.raises(ExecutionLimitExceeded, match="up to 3 attempts each"):
        plan.check_execution_limits(study_jobs(), **limits, attempts_per_job=3)

    # When the same run is started on a deployment that polls every 2 minutes
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    monkeypatch.setenv("STATUS_POLL_SECONDS", "120")
    settings.clear_cache()
    result = account.execute({"budget_usd": 5000}, "history-limit")

    # Then Plan refuses it before anything is launched, so nothing can bill
    assert (result.status, result.error) == ("FAILED", "ExecutionLimitExceeded"), result.cause
    assert "attempts" in (result.cause or "")
    assert account.services.create_calls == []
    assert_nothing_bills_unwatched(account, "remedies multiply attempts up to the history limit")


def test_the_invariant_check_catches_an_unwatched_unrecorded_job(account_with) -> None:
    # The check itself: a seeded orphan, before any reconciler tick, violates both halves.
    account = account_with(lambda _request: STILL_TRAINING)
    account.seed_orphan_job("orphan-unchecked", "run-nobody")
    with pytest.raises(AssertionError) as caught:
        assert_nothing_bills_unwatched(account, "check of the check")
    assert "no running execution watches it" in str(caught.value) and "0 ledger rows" in str(caught.value)
    assert Counter(job["sagemaker_status"] for job in jobs_left(account)) == {"InProgress": 1}
