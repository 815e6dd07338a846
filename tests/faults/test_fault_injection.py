"""Faults injected into the synthesized state machine's offline run (the real definition in moto's interpreter, the
real handlers in-process), each followed by the same accounting check: every job SageMaker accepted is in the ledger
exactly once, no job was created twice, and the report's totals are the ledger's.

Injected AWS errors are what a caller sees after botocore's own retries gave up (`LocalServices.inject`); Lambda
faults are injected where Lambda would raise them (`LocalAccount.inject_lambda_fault`). The offline settings retry a
Lambda task twice (FAST_SETTINGS.lambda_retry.max_attempts), so "fails twice" is the most a task may fail and recover.

Already covered elsewhere, not repeated here: a job failing (tests/workflow/test_state_machine.py), a launch over
quota (test_state_machine.py, test_lifecycle.py), an operator stopping the run (test_lifecycle.py). The spot job that
ends Stopped/MaxWaitTimeExceeded is in test_state_machine.py too; here it runs under throttled polling and with the
accounting check.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import ExecutionResult, LocalAccount
from tests.support.workflow import GOOD_METRICS, approach_of

ONE_JOB = {"experiments": [{"model": "mistral-7b", "approach": "lora"}], "budget_usd": 500, "max_runtime_hours": 2}
TWO_JOBS = {
    "experiments": [{"model": "mistral-7b", "approach": "lora"}, {"model": "mistral-7b", "approach": "qlora"}],
    "budget_usd": 500,
    "max_runtime_hours": 2,
}
COMPLETES = ScriptedOutcome(metrics=GOOD_METRICS, training_seconds=900, billable_seconds=300)


def _job_rows(result: ExecutionResult) -> list[dict[str, Any]]:
    return [row for row in result.ledger_rows if row["sk"].startswith("JOB#")]


def assert_accounted_for(account: LocalAccount, result: ExecutionResult, *, jobs: int) -> dict[str, dict[str, Any]]:
    """No job missing from the ledger, none duplicated, the report's totals equal to the ledger's; the rows by job."""
    created = set(account.services.training_jobs)
    rows = _job_rows(result)
    names = Counter(row["job_name"] for row in rows)
    assert len(created) == jobs, f"SageMaker holds {sorted(created)}, expected {jobs} jobs"
    assert created <= set(names), f"accepted by SageMaker but missing from the ledger: {created - set(names)}"
    assert all(count == 1 for count in names.values()), f"duplicated ledger rows: {names}"
    # Every CreateTrainingJob that did not fail on its own name went to one job name of the plan.
    assert set(result.create_training_job_calls) == created
    run_ids = {row["run_id"] for row in rows}
    assert len(run_ids) == 1, run_ids
    report = json.loads(result.reports[f"reports/{run_ids.pop()}/report.json"])
    totals = report["totals"]
    # One ranked entry per job (its last attempt); every attempt a ledger row, billed in the total
    jobs_of_run = {row["base_job_name"] for row in rows}
    assert (totals["jobs"], totals["attempts"]) == (len(jobs_of_run), len(rows))
    assert totals["cost_usd"] == pytest.approx(sum(row["cost_usd"] for row in rows), abs=1e-3)
    assert totals["completed"] + totals["failed"] + totals["stopped"] == len(jobs_of_run)
    ranked = {job["job_name"] for job in report["jobs"]}
    retried = {attempt["job_name"] for job in report["attempts"] for attempt in job["attempts"]}
    assert len(ranked) == len(jobs_of_run) and ranked | retried == set(names)
    return {row["job_name"]: row for row in rows}


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def test_sagemaker_throttling_on_create_and_describe_is_recovered_by_retries(account_with) -> None:
    # Given SageMaker throttles the first two CreateTrainingJob and the first two DescribeTrainingJob calls
    account = account_with(lambda _request: COMPLETES)
    create = account.services.inject("sagemaker", "CreateTrainingJob", "ThrottlingException", times=2)
    describe = account.services.inject("sagemaker", "DescribeTrainingJob", "ThrottlingException", times=2)

    result = account.execute(ONE_JOB, "throttled")

    # Then the retries got through: one job, completed, recorded once
    assert result.status == "SUCCEEDED", result.cause
    assert create.hits == 2 and describe.hits == 2
    [row] = assert_accounted_for(account, result, jobs=1).values()
    assert row["status"] == "Completed" and row["cost_usd"] > 0


def test_a_record_lambda_failing_transiently_twice_is_retried_into_one_ledger_row(account_with) -> None:
    account = account_with(lambda _request: COMPLETES)
    fault = account.inject_lambda_fault("record", error_type="Lambda.ServiceException", times=2)

    result = account.execute(ONE_JOB, "record-flaky")

    assert result.status == "SUCCEEDED", result.cause
    assert fault.hits == 2
    [row] = assert_accounted_for(account, result, jobs=1).values()
    assert row["status"] == "Completed"


def test_launch_timing_out_after_sagemaker_accepted_the_job_starts_no_second_job(account_with) -> None:
    # Given Launch's CreateTrainingJob succeeds but the function then times out (Sandbox.Timedout)
    account = account_with(lambda _request: COMPLETES)
    fault = account.inject_lambda_fault("launch", error_type="Sandbox.Timedout", when="after")

    result = account.execute(ONE_JOB, "launch-timeout")

    # Then the retried Launch finds its own job (ResourceInUse, same spec) and adopts it
    assert result.status == "SUCCEEDED", result.cause
    assert fault.hits == 1
    assert len(result.create_training_job_calls) == 2  # the first call, and the retry that hit ResourceInUse
    [row] = assert_accounted_for(account, result, jobs=1).values()
    assert row["status"] == "Completed"


def test_a_duplicate_launch_delivery_starts_no_second_job(account_with) -> None:
    account = account_with(lambda _request: COMPLETES)
    fault = account.inject_lambda_fault("launch", when="duplicate")

    result = account.execute(ONE_JOB, "launch-twice")

    assert result.status == "SUCCEEDED", result.cause
    assert fault.hits == 1
    [row] = assert_accounted_for(account, result, jobs=1).values()
    assert row["status"] == "Completed"


def test_record_writing_then_timing_out_rewrites_the_same_row(account_with) -> None:
    # Given Record's PutItem lands, then the function times out, and the retry writes again
    account = account_with(lambda _request: COMPLETES)
    fault = account.inject_lambda_fault("record", error_type="Sandbox.Timedout", when="after")

    result = account.execute(ONE_JOB, "record-timeout")

    assert result.status == "SUCCEEDED", result.cause
    assert fault.hits == 1
    [row] = assert_accounted_for(account, result, jobs=1).values()
    assert row["status"] == "Completed"


@pytest.mark.parametrize("code", ["TransactionConflictException", "ProvisionedThroughputExceededException"])
def test_a_dynamodb_conflict_on_record_is_retried_into_one_row(account_with, code: str) -> None:
    # Given the ledger refuses Record's first write (a conflicting transaction, a throttled partition), after the
    # SDK's own retries. (A ConditionalCheckFailed cannot happen: the ledger writes unconditionally, a row being a
    # pure function of the job and its end; tests/ledger checks conditional semantics on both engines.)
    account = account_with(lambda _request: COMPLETES)
    fault = account.services.inject("dynamodb", "PutItem", code)

    result = account.execute(ONE_JOB, f"record-{code[:20].lower()}")

    # Then Record is retried and the job is in the ledger once, as it ended
    assert result.status == "SUCCEEDED", result.cause
    assert fault.hits == 1
    [row] = assert_accounted_for(account, result, jobs=1).values()
    assert row["status"] == "Completed"


def test_two_records_of_the_same_job_racing_leave_one_identical_row(account_with) -> None:
    # Given Record delivered twice for the same job (the second write lands on the first one's item)
    account = account_with(lambda _request: COMPLETES)
    fault = account.inject_lambda_fault("record", when="duplicate")

    result = account.execute(ONE_JOB, "record-twice")

    assert result.status == "SUCCEEDED", result.cause
    assert fault.hits == 1
    [row] = assert_accounted_for(account, result, jobs=1).values()
    assert row["status"] == "Completed"


def test_a_spot_job_out_of_wait_under_throttled_polling_is_recorded_billed_and_run_on_demand(account_with) -> None:
    def outcome(request: dict[str, Any]) -> ScriptedOutcome:
        if approach_of(request) == "lora" and request.get("EnableManagedSpotTraining"):
            return ScriptedOutcome(
                status="Stopped", secondary_status="MaxWaitTimeExceeded", training_seconds=500, billable_seconds=100
            )
        return COMPLETES

    account = account_with(outcome)
    account.services.inject("sagemaker", "DescribeTrainingJob", "ThrottlingException", times=2)

    result = account.execute(TWO_JOBS, "spot-out-of-wait")

    # The spot attempt is recorded and billed; the remedy (spot_wait_exceeded -> on-demand) runs it again
    assert result.status == "SUCCEEDED", result.cause
    rows = sorted(assert_accounted_for(account, result, jobs=3).values(), key=lambda r: (r["approach"], r["attempt"]))
    spot, on_demand, qlora = rows
    assert (spot["status"], spot["secondary_status"]) == ("Stopped", "MaxWaitTimeExceeded")
    assert spot["billable_seconds"] == 100 and spot["cost_usd"] > 0 and spot["failure_class"] == "spot_wait_exceeded"
    assert (on_demand["attempt"], on_demand["spot"], on_demand["status"]) == (2, False, "Completed")
    assert qlora["status"] == "Completed"


def test_an_execution_hitting_its_timeout_is_cleaned_up_with_what_ran(account_with) -> None:
    # Given a run whose first job completed and whose second is still training
    def outcome(request: dict[str, Any]) -> ScriptedOutcome:
        return COMPLETES if approach_of(request) == "lora" else ScriptedOutcome(polls_in_progress=10_000)

    account = account_with(outcome)
    arn = account.start(TWO_JOBS, "timed-out")
    _wait_for(lambda: len(account.services.training_jobs) == 2 and len(_ledger_job_rows(account)) == 1)

    # When the execution reaches the state machine's timeout
    account.time_out(arn)
    result = account.wait(arn)

    # Then Cleanup got the TIMED_OUT status change, stopped the running job and recorded both, once each
    assert result.status == "TIMED_OUT"
    [delivery] = result.lifecycle
    assert "result" in delivery, delivery
    assert delivery["event"]["detail"]["status"] == "TIMED_OUT"
    rows = {row["approach"]: row for row in assert_accounted_for(account, result, jobs=2).values()}
    assert rows["lora"]["status"] == "Completed"
    assert rows["qlora"]["status"] == "Stopped" and "TIMED_OUT" in rows["qlora"]["failure_reason"]
    assert result.stop_training_job_calls == [rows["qlora"]["job_name"]]


def _ledger_job_rows(account: LocalAccount) -> list[dict[str, Any]]:
    return [row for row in account.ledger_rows() if row["sk"].startswith("JOB#")]
