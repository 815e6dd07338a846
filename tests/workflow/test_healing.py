"""Self-healing jobs through the synthesized state machine: a failed attempt is classified, remedied within the
policy and the budget, and launched again under its attempt name; every attempt is a ledger row and the report
totals them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from finetune.local.backends import ScriptedOutcome
from tests.support.workflow import GOOD_METRICS

# mistral-7b LoRA on ml.g5.2xlarge (named: the planner would choose ml.g6.2xlarge, the first of the fallback list),
# per-device batch 8, 2 h runtime bound.
LORA_JOB = {
    "experiments": [{"model": "mistral-7b", "approach": "lora", "instance_type": "ml.g5.2xlarge"}],
    "budget_usd": 100,
    "max_runtime_hours": 2,
}
QUOTA_ZERO = (
    "The account-level service limit 'ml.g5.2xlarge for spot training job usage' is 0 Instances, with current "
    "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to request an "
    "increase for this quota."
)
CUDA_OOM = (
    'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "torch.OutOfMemoryError: CUDA out of memory. '
    'Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 22.06 GiB of which 812.00 MiB is free."'
)
USER_CODE = (
    'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "Traceback (most recent call last):\n'
    '  File "/opt/ml/code/train.py", line 12, in <module>\nModuleNotFoundError: No module named \'trl2\'"'
)


class Recording:
    """An outcome function that remembers every CreateTrainingJob request it was asked about, in order."""

    def __init__(self, outcome_for) -> None:
        self.outcome_for = outcome_for
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: dict[str, Any]) -> ScriptedOutcome:
        self.requests.append(request)
        return self.outcome_for(request)


def hyperparameter(request: dict[str, Any], name: str) -> str:
    return request["HyperParameters"].get(name, "").strip('"')


def job_rows(result) -> list[dict[str, Any]]:
    return sorted(
        (row for row in result.ledger_rows if row["sk"].startswith("JOB#")), key=lambda row: row.get("attempt", 1)
    )


def report_of(result) -> dict[str, Any]:
    return json.loads(result.reports[f"reports/{result.run_id}/report.json"])


def test_quota_exhausted_on_the_first_type_succeeds_on_the_fallback_type(account_with) -> None:
    def outcome(request):
        if request["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge":
            return ScriptedOutcome(launch_error="ResourceLimitExceeded", failure_reason=QUOTA_ZERO)
        return ScriptedOutcome(metrics=GOOD_METRICS, training_seconds=900, billable_seconds=300)

    recording = Recording(outcome)
    result = account_with(recording).execute(LORA_JOB, "heal-quota")

    assert result.status == "SUCCEEDED", result.cause
    first, second = job_rows(result)
    assert (first["attempt"], first["status"], first["failure_class"]) == (1, "Failed", "quota_exhausted")
    assert "ml.g5.2xlarge for spot training job usage" in first["failure_evidence"]
    assert first["remedy"]["action"] == "retry"
    assert "Service Quotas" in first["remedy"]["hint"]
    assert first["cost_usd"] == 0  # never created, never billed
    # The next type of the catalog's fallback list for 7B LoRA, same checkpoints (progress is kept).
    assert second["instance_type"] == "ml.g6.2xlarge"
    assert (second["attempt"], second["status"]) == (2, "Completed")
    assert second["base_job_name"] == first["job_name"]
    assert second["job_name"] == f"{first['job_name']}-a2" or second["job_name"].endswith("-a2")
    requests = recording.requests
    assert [r["ResourceConfig"]["InstanceType"] for r in requests] == ["ml.g5.2xlarge", "ml.g6.2xlarge"]
    assert requests[0]["CheckpointConfig"] == requests[1]["CheckpointConfig"]


def test_out_of_memory_halves_the_batch_and_keeps_the_effective_batch(account_with) -> None:
    def outcome(request):
        if hyperparameter(request, "per_device_batch_size") == "8":
            return ScriptedOutcome(
                status="Failed", secondary_status="Failed", training_seconds=240, billable_seconds=240,
                failure_reason=CUDA_OOM,
            )  # fmt: skip
        return ScriptedOutcome(metrics=GOOD_METRICS, training_seconds=900, billable_seconds=900)

    recording = Recording(outcome)
    result = account_with(recording).execute(LORA_JOB, "heal-oom")

    assert result.status == "SUCCEEDED", result.cause
    first, second = recording.requests
    assert hyperparameter(first, "per_device_batch_size") == "8"
    assert hyperparameter(first, "gradient_accumulation_steps") == "1"
    assert hyperparameter(second, "per_device_batch_size") == "4"
    assert hyperparameter(second, "gradient_accumulation_steps") == "2"  # 4 x 2 = the same effective batch of 8
    # A smaller batch cannot resume the first attempt's checkpoints (training_code/checkpoints.py refuses them).
    assert second["CheckpointConfig"]["S3Uri"].startswith(first["CheckpointConfig"]["S3Uri"])
    assert second["CheckpointConfig"]["S3Uri"] != first["CheckpointConfig"]["S3Uri"]
    rows = job_rows(result)
    assert [(r["attempt"], r["status"], r["failure_class"]) for r in rows] == [
        (1, "Failed", "out_of_memory"),
        (2, "Completed", None),
    ]
    assert "CUDA out of memory" in rows[0]["failure_evidence"]
    assert rows[0]["cost_usd"] > 0


def test_spot_job_past_its_max_wait_succeeds_on_demand(account_with) -> None:
    def outcome(request):
        if request["EnableManagedSpotTraining"]:
            return ScriptedOutcome(
                status="Stopped", secondary_status="MaxWaitTimeExceeded", training_seconds=400, billable_seconds=100
            )
        return ScriptedOutcome(metrics=GOOD_METRICS)

    recording = Recording(outcome)
    result = account_with(recording).execute(LORA_JOB, "heal-spot")

    assert result.status == "SUCCEEDED", result.cause
    first, second = recording.requests
    assert first["EnableManagedSpotTraining"] is True
    assert second["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in second["StoppingCondition"]
    assert second["CheckpointConfig"] == first["CheckpointConfig"]  # resumes where the spot attempt stopped
    rows = job_rows(result)
    assert rows[0]["failure_class"] == "spot_wait_exceeded"
    assert rows[1]["spot"] is False and rows[1]["status"] == "Completed"


def test_user_code_error_is_not_retried_and_says_why(account_with) -> None:
    def outcome(_request):
        return ScriptedOutcome(status="Failed", secondary_status="Failed", failure_reason=USER_CODE)

    result = account_with(outcome).execute(LORA_JOB, "heal-user-code")

    assert result.status == "SUCCEEDED", result.cause
    assert len(result.create_training_job_calls) == 1
    [row] = job_rows(result)
    assert row["failure_class"] == "user_code_error"
    assert row["remedy"]["action"] == "stop"
    assert "retrying cannot help" in row["remedy"]["cause"]
    assert "ModuleNotFoundError" in row["remedy"]["cause"]


def test_a_budget_that_cannot_afford_the_remedy_stops_with_a_clear_cause(account_with) -> None:
    # 2 h x $1.515/h (the catalog price of ml.g5.2xlarge) = $3.03 planned; $0.02 of the budget is left for remedies,
    # and the OOM attempt already cost $0.25: the next attempt's $3.03 maximum does not fit.
    def outcome(_request):
        return ScriptedOutcome(
            status="Failed", secondary_status="Failed", training_seconds=600, billable_seconds=600,
            failure_reason=CUDA_OOM,
        )  # fmt: skip

    result = account_with(outcome).execute({**LORA_JOB, "budget_usd": 3.05}, "heal-budget")

    assert result.status == "SUCCEEDED", result.cause
    assert len(result.create_training_job_calls) == 1
    [row] = job_rows(result)
    assert row["failure_class"] == "out_of_memory"
    assert row["remedy"]["action"] == "stop"
    cause = row["remedy"]["cause"]
    assert "share of budget_usd" in cause and "$3.03" in cause and "Raise budget_usd" in cause


def test_every_attempt_is_a_ledger_row_and_the_report_totals_them(account_with) -> None:
    # Quota on the first type, then OOM on the fallback, then success: three attempts of one job.
    def outcome(request):
        if request["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge":
            return ScriptedOutcome(launch_error="ResourceLimitExceeded", failure_reason=QUOTA_ZERO)
        if hyperparameter(request, "per_device_batch_size") == "8":
            return ScriptedOutcome(
                status="Failed", secondary_status="Failed", training_seconds=300, billable_seconds=300,
                failure_reason=CUDA_OOM,
            )  # fmt: skip
        return ScriptedOutcome(metrics=GOOD_METRICS, training_seconds=600, billable_seconds=600)

    result = account_with(outcome).execute(LORA_JOB, "heal-ledger")

    assert result.status == "SUCCEEDED", result.cause
    rows = job_rows(result)
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    assert len({r["job_name"] for r in rows}) == 3 and len({r["base_job_name"] for r in rows}) == 1
    assert [r["failure_class"] for r in rows] == ["quota_exhausted", "out_of_memory", None]
    document = report_of(result)
    # The ranking shows the job once (its last attempt), its cost per point over what all attempts cost
    [ranked] = document["jobs"]
    assert (ranked["attempts"], ranked["status"]) == (3, "Completed")
    assert ranked["attempts_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-4)
    assert (document["totals"]["jobs"], document["totals"]["attempts"]) == (1, 3)
    assert document["totals"]["cost_usd"] == pytest.approx(ranked["attempts_cost_usd"], abs=1e-4)
    [job] = document["attempts"]
    assert job["final_status"] == "Completed"
    assert [a["attempt"] for a in job["attempts"]] == [1, 2, 3]
    assert job["total_cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-4)
    assert job["total_cost_usd"] > 0
    markdown = result.reports[f"reports/{result.run_id}/report.md"].decode()
    assert "## Attempts" in markdown and "**3 attempts**" in markdown


def test_the_demo_field_inject_failure_reaches_the_local_backend_and_is_recovered(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    experiment = {**LORA_JOB["experiments"][0], "inject_failure": "oom"}

    result = account.execute({**LORA_JOB, "experiments": [experiment]}, "heal-injected")

    assert result.status == "SUCCEEDED", result.cause
    rows = job_rows(result)
    assert [(r["failure_class"], r["status"]) for r in rows] == [("out_of_memory", "Failed"), (None, "Completed")]
