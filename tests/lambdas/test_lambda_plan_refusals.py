"""Plan's refusals before anything is billed: jobs that cannot fit, runs the execution cannot finish, gated models
without a token."""

from __future__ import annotations

import pytest

from lambdas import catalog, memory, plan
from lambdas.errors import (
    ConfigurationError,
    ExecutionLimitExceeded,
    HfTokenMissing,
    InfeasibleJob,
    InvalidExecutionInput,
)
from tests.support.lambdas import SECRET_ARN, StubbedClients, run_plan, study_jobs

MISTRAL_QLORA = {"model": "mistral-7b", "approach": "qlora"}
LLAMA_QLORA = {"model": "llama2-7b", "approach": "qlora"}
NEOX_QLORA = {"model": "gpt-neox-20b", "approach": "qlora"}


def catalog_prices(stubbed: StubbedClients, lookups: int = 1) -> None:
    for _ in range(lookups):
        stubbed.pricing_stub.add_client_error("get_products", "ServiceUnavailableException", http_status_code=503)


# ---------------------------------------------------------------------------------------------------------------------
# The Hugging Face token of gated models
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("experiment", "hub_id"),
    [(LLAMA_QLORA, "meta-llama/Llama-2-7b-hf"), (MISTRAL_QLORA, "mistralai/Mistral-7B-v0.1")],
)
def test_gated_model_without_a_token_is_refused_before_anything_is_billed(
    experiment: dict[str, str], hub_id: str, moto_aws: None, stubbed: StubbedClients
) -> None:
    # Given a model gated on the Hub (Llama 2; Mistral-7B-v0.1 since 2024) and a token secret created without a value
    catalog_prices(stubbed)
    stubbed.token_secret(has_value=False)
    # When planned
    with pytest.raises(HfTokenMissing) as caught:
        run_plan({"experiments": [experiment]}, stubbed)
    # Then the refusal names the model, the secret and the command that fixes it; only DescribeSecret was called
    message = caught.value.message
    assert f"{hub_id} is gated" in message and SECRET_ARN in message
    assert f"aws secretsmanager put-secret-value --secret-id {SECRET_ARN} --secret-string" in message
    stubbed.secrets_stub.assert_no_pending_responses()


def test_gated_model_with_a_token_value_is_planned(moto_aws: None, stubbed: StubbedClients) -> None:
    catalog_prices(stubbed)
    stubbed.token_secret(has_value=True)
    stubbed.quota_values({})
    assert len(run_plan({"experiments": [LLAMA_QLORA]}, stubbed)["jobs"]) == 1


def test_open_models_never_look_at_the_token_secret(moto_aws: None, stubbed: StubbedClients) -> None:
    # Given only models that are not gated (the secrets Stubber fails the test on any call)
    catalog_prices(stubbed)
    stubbed.quota_values({})
    # When planned, Then the run is planned without describing the secret
    assert len(run_plan({"experiments": [NEOX_QLORA], "budget_usd": 500}, stubbed)["jobs"]) == 1


def test_a_deleted_token_secret_counts_as_no_token(moto_aws: None, stubbed: StubbedClients) -> None:
    catalog_prices(stubbed)
    stubbed.secrets_stub.add_client_error(
        "describe_secret", "ResourceNotFoundException", "Secrets Manager can't find the specified secret."
    )
    with pytest.raises(HfTokenMissing):
        run_plan({"experiments": [LLAMA_QLORA]}, stubbed)


def test_plan_without_permission_to_describe_the_secret_is_a_deployment_error(
    moto_aws: None, stubbed: StubbedClients
) -> None:
    # Given a Plan role that lacks secretsmanager:DescribeSecret (a missing grant must not pass silently)
    catalog_prices(stubbed)
    stubbed.secrets_stub.add_client_error("describe_secret", "AccessDeniedException", http_status_code=400)
    with pytest.raises(ConfigurationError, match="AccessDeniedException"):
        run_plan({"experiments": [LLAMA_QLORA]}, stubbed)


# ---------------------------------------------------------------------------------------------------------------------
# Execution limits
# ---------------------------------------------------------------------------------------------------------------------
def test_the_study_fits_the_deployed_execution_limits() -> None:
    # Given the study (8 jobs, spot: each job bounded by MaxWait = 2 x its runtime bound) at the deployed defaults
    jobs = study_jobs()
    # When checked against a 48 h execution, 3 jobs at once, a status poll every 5 minutes, Then it is accepted
    plan.check_execution_limits(jobs, max_concurrency=3, execution_timeout_seconds=48 * 3600, status_poll_seconds=300)


def test_a_run_that_could_outlast_the_execution_timeout_is_refused_with_the_fixes() -> None:
    # Given 50 experiments of 24 h each (spot: up to 48 h with waiting) and 3 at a time: ~17 waves
    experiments = [{**MISTRAL_QLORA, "max_steps": step} for step in range(1, 51)]
    jobs = study_jobs({"experiments": experiments, "max_runtime_hours": 24})
    # When checked against a 48 h execution
    with pytest.raises(ExecutionLimitExceeded) as caught:
        plan.check_execution_limits(
            jobs, max_concurrency=3, execution_timeout_seconds=48 * 3600, status_poll_seconds=300
        )
    # Then the refusal gives the numbers and every way out
    message = caught.value.message
    assert "50 jobs in ~17 waves of at most 3 (max_concurrency)" in message and "execution timeout of 48 h" in message
    for fix in ("fewer experiments", "raise max_concurrency", "lower max_runtime_hours", "poll less often"):
        assert fix in message


def test_polling_that_would_overflow_the_event_history_is_refused() -> None:
    # Given the study polled every 30 s: each job polls up to its bound / 30 s times, ~9 history events per poll
    jobs = study_jobs()
    # When checked (with all the time in the world)
    with pytest.raises(ExecutionLimitExceeded) as caught:
        plan.check_execution_limits(
            jobs, max_concurrency=8, execution_timeout_seconds=365 * 86400, status_poll_seconds=30
        )
    # Then the event count and Step Functions' limit are named
    assert "history events, beyond Step Functions' limit of 25,000 per execution" in caught.value.message
    assert "timeout" not in caught.value.message


def test_execution_limits_are_checked_when_planning(moto_aws: None, stubbed: StubbedClients) -> None:
    # Given a deployment whose execution times out after 2 h and a job that may take up to 2 x 2 h (spot)
    catalog_prices(stubbed)
    with pytest.raises(ExecutionLimitExceeded):
        run_plan({"experiments": [MISTRAL_QLORA]}, stubbed, execution_timeout_seconds=2 * 3600)


# ---------------------------------------------------------------------------------------------------------------------
# Memory fit
# ---------------------------------------------------------------------------------------------------------------------
def test_a_job_that_cannot_fit_its_instance_is_refused_with_the_numbers_and_an_alternative() -> None:
    # Given 7B full fine-tuning on one A10G with 32 GiB of host RAM
    with pytest.raises(InfeasibleJob) as caught:
        plan.validate_execution_input(
            {
                "experiments": [
                    MISTRAL_QLORA,
                    {"model": "llama2-7b", "approach": "full", "instance_type": "ml.g5.2xlarge"},
                ]
            }
        )
    # Then the refusal names the experiment, every strategy's numbers and a feasible alternative
    message = caught.value.message
    assert message.startswith("experiments[1]: llama2-7b full")
    assert "- single (bf16, adamw) on 1 x ml.g5.2xlarge (1 A10G): " in message and "per GPU of 22.5" in message
    assert "- lean (bf16, adamw) on" in message
    assert "Cheapest feasible alternative: instance_type ml.g6e.xlarge" in message
    assert "experiments[0]" not in message


# ---------------------------------------------------------------------------------------------------------------------
# Instances the training image cannot run
# ---------------------------------------------------------------------------------------------------------------------
def test_an_instance_family_the_image_cannot_run_is_refused_naming_why() -> None:
    # Given a job on a V100 instance (ml.p3: compute capability 7.0; the cu130 image has no kernels for it)
    experiment = {"model": "mistral-7b", "approach": "lora", "instance_type": "ml.p3.2xlarge"}
    # When validated, Then it is refused before anything is billed, with the reason
    with pytest.raises(InvalidExecutionInput) as caught:
        plan.validate_execution_input({"experiments": [experiment]})
    assert "experiments[0].instance_type: ml.p3.2xlarge cannot run the training image: V100" in caught.value.message


def test_the_planner_never_suggests_an_instance_the_image_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a small job that a V100 could hold, and every other GPU family ruled out as well
    workload = memory.Workload(catalog.resolve_model("Qwen/Qwen2.5-0.5B", params_billion=0.5), "lora", 1, 256)
    others = {name.rsplit(".", 1)[0] for name in catalog.INSTANCES if not name.startswith("ml.p3.")}
    monkeypatch.setattr(catalog, "UNSUPPORTED_FAMILIES", {**catalog.UNSUPPORTED_FAMILIES, **dict.fromkeys(others, "x")})
    # When the planner looks for the cheapest placement that fits, Then it finds none (never the p3)
    assert memory.cheapest_alternative(workload) is None


def test_7b_full_on_one_a10g_is_refused_instead_of_sharding_over_one_gpu() -> None:
    # Issue 17: single-GPU full_shard_offload (7B full on ml.g5.8xlarge) was accepted and failed at run time.
    # Given 7B full on one A10G with 128 GiB of host RAM
    with pytest.raises(InfeasibleJob) as caught:
        plan.validate_execution_input(
            {"experiments": [{"model": "llama2-7b", "approach": "full", "instance_type": "ml.g5.8xlarge"}]}
        )
    # Then it is refused: no FSDP over one GPU in total; single and lean do not fit its 22.5 GiB
    message = caught.value.message
    assert "fsdp" not in message.split("Cheapest feasible alternative")[0]
    assert "- single (bf16, adamw)" in message and "- lean (bf16, adamw)" in message
