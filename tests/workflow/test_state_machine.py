"""The synthesized state machine, executed by moto's ASL interpreter with the real handlers in-process."""

from __future__ import annotations

import json

import pytest

from finetune.local.backends import ScriptedOutcome
from tests.support.workflow import GOOD_METRICS, approach_of

# SageMaker's shape for a script that died of CUDA OOM.
OOM_FAILURE = (
    'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "torch.OutOfMemoryError: CUDA out of memory"'
)
THREE_JOBS = {
    "experiments": [
        {"model": "mistral-7b", "approach": "full"},
        {"model": "mistral-7b", "approach": "lora"},
        {"model": "mistral-7b", "approach": "qlora"},
    ],
    "budget_usd": 500,
    "max_runtime_hours": 2,
}


def _job_rows(result) -> dict[str, dict]:
    return {row["approach"]: row for row in result.ledger_rows if row["sk"].startswith("JOB#")}


def test_three_job_matrix_succeeds_with_three_ledger_rows_a_summary_and_a_report(account_with) -> None:
    account = account_with(
        lambda _request: ScriptedOutcome(metrics=GOOD_METRICS, training_seconds=900, billable_seconds=300)
    )

    result = account.execute(THREE_JOBS, "three-jobs")

    assert result.status == "SUCCEEDED", result.cause
    rows = _job_rows(result)
    assert set(rows) == {"full", "lora", "qlora"}
    assert all(row["status"] == "Completed" for row in rows.values())
    assert all(row["spot_savings_pct"] == pytest.approx(100 * (1 - 300 / 900), abs=0.01) for row in rows.values())
    assert any(row["sk"] == "SUMMARY" for row in result.ledger_rows)
    # What a reader compares jobs by travels from DescribeTrainingJob and the spec to the row
    for approach, row in rows.items():
        assert row["time_split_seconds"] == {"waiting": 0, "downloading": 0, "training": 900, "uploading": 0}
        assert row["hyperparameters"]["approach"] == approach and row["dataset"]["name"] == "banking77"
        # Launch asks for an uncompressed model: DescribeTrainingJob names its folder's prefix, not a model.tar.gz
        assert row["artifact_uri"].endswith(f"/{row['job_name']}/output/model/")
        assert row["gpu_utilization_pct"] is None  # moto's CloudWatch has no points for the scripted jobs
    run_id = result.run_id
    assert {f"reports/{run_id}/report.json", f"reports/{run_id}/report.md"} <= set(result.reports)
    report = json.loads(result.reports[f"reports/{run_id}/report.json"])
    assert len(report["jobs"]) == 3
    assert len(result.create_training_job_calls) == 3
    [notification] = result.notifications
    assert f"reports/{run_id}/report.md" in notification


def test_one_failed_job_is_recorded_failed_and_the_others_still_complete(account_with) -> None:
    def outcome(request):
        if approach_of(request) == "full":
            return ScriptedOutcome(
                status="Failed",
                secondary_status="Failed",
                training_seconds=120,
                billable_seconds=120,
                failure_reason=OOM_FAILURE,
            )
        return ScriptedOutcome(metrics=GOOD_METRICS)

    result = account_with(outcome).execute(THREE_JOBS, "one-fails")

    assert result.status == "SUCCEEDED", result.cause
    rows = _job_rows(result)
    assert rows["full"]["status"] == "Failed"
    assert "OutOfMemoryError" in rows["full"]["failure_reason"]
    assert rows["full"]["cost_usd"] > 0  # failed jobs are billed too
    assert rows["lora"]["status"] == rows["qlora"]["status"] == "Completed"


def test_interrupted_spot_job_that_runs_out_of_wait_is_recorded_with_its_billable_time(account_with) -> None:
    def outcome(request):
        if approach_of(request) == "lora":
            return ScriptedOutcome(
                status="Stopped", secondary_status="MaxWaitTimeExceeded", training_seconds=500, billable_seconds=100
            )
        return ScriptedOutcome(metrics=GOOD_METRICS)

    result = account_with(outcome).execute(THREE_JOBS, "spot-stopped")

    assert result.status == "SUCCEEDED", result.cause
    stopped = _job_rows(result)["lora"]
    assert stopped["status"] == "Stopped"
    assert stopped["billable_seconds"] == 100
    assert stopped["spot_savings_pct"] == 80
    assert stopped["cost_usd"] == pytest.approx(100 * stopped["hourly_price_usd"] / 3600, abs=1e-4)


def test_a_launch_refused_for_quota_is_recorded_failed_and_does_not_sink_the_run(account_with) -> None:
    def outcome(request):
        if approach_of(request) == "qlora":
            return ScriptedOutcome(
                launch_error="ResourceLimitExceeded",
                failure_reason="The account-level service limit 'ml.g5.xlarge for spot training job usage' is 0",
            )
        return ScriptedOutcome(metrics=GOOD_METRICS)

    result = account_with(outcome).execute(THREE_JOBS, "quota-refused")

    assert result.status == "SUCCEEDED", result.cause
    refused = _job_rows(result)["qlora"]
    assert refused["status"] == "Failed"
    assert "QuotaExceeded" in refused["failure_reason"] or "service limit" in refused["failure_reason"]
    assert refused["billable_seconds"] == 0 and refused["cost_usd"] == 0
    assert _job_rows(result)["full"]["status"] == "Completed"


def test_invalid_input_fails_at_plan_naming_the_field_and_launches_nothing(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome())

    result = account.execute({"experiments": [{"model": "mistral-7b", "approach": "prefix-tuning"}]}, "invalid-input")

    assert result.status == "FAILED"
    assert result.error == "InvalidExecutionInput"
    assert result.failed_state == "Plan"
    assert "experiments[0].approach" in result.cause
    assert "lora" in result.cause and "qlora" in result.cause
    assert result.create_training_job_calls == []
    assert result.ledger_rows == []


def test_over_budget_fails_at_plan_with_the_breakdown_and_launches_nothing(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome())

    result = account.execute({"budget_usd": 5}, "over-budget")  # the 9-job study matrix

    assert result.status == "FAILED"
    assert result.error == "BudgetExceeded"
    assert result.failed_state == "Plan"
    assert "gpt-neox-20b" in result.cause
    assert result.create_training_job_calls == []
