"""Plan: study expansion, job specs, dataset check, prices, budget and quotas (moto S3, stubbed Pricing/Quotas)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas import catalog, naming, plan, training_job
from lambdas.errors import BudgetExceeded, DatasetNotFound, InvalidExecutionInput, QuotaExceeded
from lambdas.handlers import plan as plan_handler
from lambdas.job_spec import JobSpec
from tests.support.lambdas import (
    BUCKET,
    REGION,
    StubbedClients,
    price_list_item,
    quota,
    run_plan,
    study_jobs,
)

JOB_SPEC_FIELDS = set(JobSpec.__required_keys__)  # Plan's specs: the attempt fields (lambdas/remedies.py) come later
SMALL_RUN = {"experiments": [{"model": "mistral-7b", "approach": "qlora"}, {"model": "llama2-7b", "approach": "lora"}]}


def test_study_matrix_expands_to_fully_resolved_job_specs() -> None:
    # Given no experiments
    jobs = study_jobs()
    # Then the study's combinations come out, each a complete JobSpec with a distinct valid name
    assert len(jobs) == len(catalog.STUDY_MATRIX) == 8
    assert not any(j["model_key"] == "gpt-neox-20b" and j["approach"] == "full" for j in jobs)
    assert all(set(job) == JOB_SPEC_FIELDS for job in jobs)
    assert len({j["job_name"] for j in jobs}) == 8
    assert all(naming.JOB_NAME_PATTERN.match(j["job_name"]) for j in jobs)
    qlora_7b = next(j for j in jobs if j["model_key"] == "llama2-7b" and j["approach"] == "qlora")
    assert (qlora_7b["instance_type"], qlora_7b["batch_size"], qlora_7b["learning_rate"]) == ("ml.g6.xlarge", 8, 2e-4)
    assert qlora_7b["model_id"] == "meta-llama/Llama-2-7b-hf" and qlora_7b["spot"] is True
    assert qlora_7b["train_s3_uri"] == f"s3://{BUCKET}/datasets/banking77/train/"
    assert qlora_7b["checkpoint_s3_uri"] == f"s3://{BUCKET}/checkpoints/run-1/{qlora_7b['job_name']}/"
    assert qlora_7b["output_s3_uri"] == f"s3://{BUCKET}/models/llama2-7b-qlora/"
    assert qlora_7b["max_wait_seconds"] >= qlora_7b["max_runtime_seconds"] == 2 * 3600


def test_same_input_plans_the_same_job_names() -> None:
    assert [j["job_name"] for j in study_jobs()] == [j["job_name"] for j in study_jobs()]


def test_explicit_settings_override_the_catalog() -> None:
    [job] = study_jobs(
        {
            "experiments": [
                {
                    "model": "mistral-7b",
                    "approach": "lora",
                    "instance_type": "ml.g6.2xlarge",
                    "epochs": 2,
                    "batch_size": 4,
                    "learning_rate": 1e-4,
                    "lora_r": 8,
                    "max_steps": 10,
                }
            ],
            "spot": False,
            "max_runtime_hours": 1.5,
            "eval_samples": 100,
            "dataset": {
                "train_s3_uri": f"s3://{BUCKET}/datasets/x/train/",
                "test_s3_uri": f"s3://{BUCKET}/datasets/x/test/",
            },
        }
    )
    assert (job["instance_type"], job["epochs"], job["batch_size"]) == ("ml.g6.2xlarge", 2, 4)
    assert job["learning_rate"] == 1e-4
    assert (job["lora_r"], job["max_steps"], job["eval_samples"]) == (8, 10, 100)
    assert job["spot"] is False and job["max_wait_seconds"] is None and job["max_runtime_seconds"] == 5400
    assert job["train_s3_uri"] == f"s3://{BUCKET}/datasets/x/train/"


def test_deployment_runtime_setting_caps_catalog_defaults() -> None:
    _, [experiment] = plan.validate_execution_input(
        {"experiments": [{"model": "gpt-neox-20b", "approach": "qlora"}]}, default_max_runtime_hours=2
    )
    assert experiment["max_runtime_seconds"] == 2 * 3600


def test_plan_prices_from_the_pricing_api_and_returns_the_run(moto_aws: None, stubbed: StubbedClients) -> None:
    # Given a dataset in the bucket, Price List prices and ample quotas
    stubbed.prices({"ml.g6.xlarge": "1.5000000000", "ml.g6.2xlarge": "1.6000000000"})
    stubbed.quota_values(
        {
            catalog.training_quota_name("ml.g6.xlarge", spot=True): 4,
            catalog.training_quota_name("ml.g6.2xlarge", spot=True): 4,
        }
    )
    stubbed.token_secret(has_value=True)
    # When the run is planned
    result = run_plan(SMALL_RUN, stubbed)
    # Then every job carries the API price and its estimate, the total and the default budget
    assert result["run_id"] == "study-1" and result["budget_usd"] == 50.0
    qlora, lora = result["jobs"]
    assert (qlora["hourly_price_usd"], qlora["price_source"]) == (1.5, "pricing-api")
    assert qlora["estimated_max_cost_usd"] == 3.0  # 2 h x 1 x $1.50
    assert lora["estimated_max_cost_usd"] == 3.2
    assert result["total_estimated_max_cost_usd"] == 6.2
    # and the expected cost beside it: the sum of the jobs' expected (spot) costs, well under the maximum
    assert result["total_estimated_cost_usd"] == round(qlora["estimated_cost_usd"] + lora["estimated_cost_usd"], 4)
    assert 0 < result["total_estimated_cost_usd"] < result["total_estimated_max_cost_usd"]
    stubbed.pricing_stub.assert_no_pending_responses()


def test_price_list_request_asks_for_the_training_usage_type(moto_aws: None, stubbed: StubbedClients) -> None:
    stubbed.token_secret(has_value=True)  # Mistral-7B-v0.1 is gated
    stubbed.pricing_stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [price_list_item("ml.g6.xlarge", "1.006")]},
        expected_params={
            "ServiceCode": "AmazonSageMaker",
            "Filters": [
                {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
                {"Type": "TERM_MATCH", "Field": "usagetype", "Value": "USE1-Train:ml.g6.xlarge"},
            ],
            "FormatVersion": "aws_v1",
        },
    )
    stubbed.quota_values({})
    result = run_plan({"experiments": [{"model": "mistral-7b", "approach": "qlora"}]}, stubbed)
    assert result["jobs"][0]["hourly_price_usd"] == 1.006


def test_pricing_api_failure_falls_back_to_the_catalog_price(moto_aws: None, stubbed: StubbedClients) -> None:
    stubbed.token_secret(has_value=True)  # Mistral-7B-v0.1 is gated
    stubbed.pricing_stub.add_client_error("get_products", "AccessDeniedException", http_status_code=403)
    stubbed.quota_values({})
    result = run_plan({"experiments": [{"model": "mistral-7b", "approach": "qlora"}]}, stubbed)
    job = result["jobs"][0]
    assert (job["hourly_price_usd"], job["price_source"]) == (1.006, "catalog")


def test_over_budget_run_is_refused_with_a_per_job_breakdown(moto_aws: None, stubbed: StubbedClients) -> None:
    # Given the full study and a $10 budget (its maximum, at the runtime bounds, is higher)
    for _ in range(4):  # one lookup per distinct instance type
        stubbed.pricing_stub.add_client_error("get_products", "ServiceUnavailableException", http_status_code=503)
    # When it is planned
    with pytest.raises(BudgetExceeded) as caught:
        run_plan({"budget_usd": 10}, stubbed)
    # Then nothing is launched and the message itemises every job's estimate
    message = caught.value.message
    assert "exceeds the budget $10.00" in message
    assert message.count("\n- ") == 8
    assert "2 h x 1 x ml.g6e.2xlarge at $2.803/h (catalog) = $5.61" in message


def test_explicit_budget_allows_the_study(moto_aws: None, stubbed: StubbedClients) -> None:
    for _ in range(4):  # one lookup per distinct instance type
        stubbed.pricing_stub.add_client_error("get_products", "ServiceUnavailableException", http_status_code=503)
    stubbed.token_secret(has_value=True)
    stubbed.quota_values({})
    result = run_plan({"budget_usd": 250}, stubbed)
    assert len(result["jobs"]) == 8 and result["total_estimated_max_cost_usd"] <= 250


def test_missing_dataset_is_refused_with_a_hint(moto_aws: None, stubbed: StubbedClients) -> None:
    with pytest.raises(DatasetNotFound) as caught:
        run_plan({"dataset": {"name": "nothing-here"}}, stubbed)
    assert f"s3://{BUCKET}/datasets/nothing-here/train/" in caught.value.message
    assert "Upload JSON Lines" in caught.value.message


@pytest.mark.parametrize(
    "location",
    [
        {"train_s3_uri": "s3://other-bucket/datasets/x/train/", "test_s3_uri": f"s3://{BUCKET}/datasets/x/test/"},
        {"train_s3_uri": f"s3://{BUCKET}/datasets/x/train/", "test_s3_uri": f"s3://{BUCKET}/reports/x/test/"},
    ],
)
def test_dataset_outside_the_datasets_prefix_is_refused_naming_the_field(
    location: dict[str, str], moto_aws: None, stubbed: StubbedClients
) -> None:
    # Given a channel outside s3://<data bucket>/datasets/, which the SageMaker role cannot read
    outside = next(field for field, uri in location.items() if not uri.startswith(f"s3://{BUCKET}/datasets/"))
    # When planned
    with pytest.raises(InvalidExecutionInput) as caught:
        run_plan({"experiments": [{"model": "mistral-7b", "approach": "qlora"}], "dataset": location}, stubbed)
    # Then nothing is launched and the refusal names the field and the readable prefix
    assert f"dataset.{outside}: must be under s3://{BUCKET}/datasets/" in caught.value.message
    assert len(caught.value.problems) == 1


def test_quota_below_concurrent_need_is_refused(moto_aws: None, stubbed: StubbedClients) -> None:
    # Given two jobs on ml.g6.xlarge and a spot quota of one instance
    stubbed.prices({"ml.g6.xlarge": "1.006"})
    stubbed.quota_values({"ml.g6.xlarge for spot training job usage": 1.0})
    stubbed.token_secret(has_value=True)  # llama2-7b is gated
    two = {"experiments": [{"model": "mistral-7b", "approach": "qlora"}, {"model": "llama2-7b", "approach": "qlora"}]}
    # When planned
    with pytest.raises(QuotaExceeded) as caught:
        run_plan(two, stubbed)
    # Then the refusal names the type, the quota, its value and the need, and the deployment's concurrency knob
    assert "ml.g6.xlarge: quota 'ml.g6.xlarge for spot training job usage' is 1 instances but this run needs 2" in (
        caught.value.message
    )
    assert (
        "lower max_concurrency" in caught.value.message and "cdk.json finetune.max_concurrency" in caught.value.message
    )


def test_concurrency_limit_lowers_the_quota_need(moto_aws: None, stubbed: StubbedClients) -> None:
    stubbed.prices({"ml.g6.xlarge": "1.006"})
    stubbed.quota_values({"ml.g6.xlarge for spot training job usage": 1.0})
    stubbed.token_secret(has_value=True)  # llama2-7b is gated
    two = {"experiments": [{"model": "mistral-7b", "approach": "qlora"}, {"model": "llama2-7b", "approach": "qlora"}]}
    assert len(run_plan(two, stubbed, max_concurrency=1)["jobs"]) == 2


def test_on_demand_runs_check_the_on_demand_quota(moto_aws: None, stubbed: StubbedClients) -> None:
    stubbed.token_secret(has_value=True)  # Mistral-7B-v0.1 is gated
    stubbed.prices({"ml.g6.xlarge": "1.006"})
    stubbed.quota_values({"ml.g6.xlarge for spot training job usage": 5, "ml.g6.xlarge for training job usage": 0})
    with pytest.raises(QuotaExceeded, match=r"'ml\.g6\.xlarge for training job usage' is 0"):
        run_plan({"experiments": [{"model": "mistral-7b", "approach": "qlora"}], "spot": False}, stubbed)


def test_quota_api_error_is_tolerated(moto_aws: None, stubbed: StubbedClients) -> None:
    stubbed.token_secret(has_value=True)  # Mistral-7B-v0.1 is gated
    # Given Service Quotas refusing access
    stubbed.prices({"ml.g6.xlarge": "1.006"})
    stubbed.quotas_stub.add_client_error("list_service_quotas", "AccessDeniedException", http_status_code=403)
    # When planned, the run goes on (CreateTrainingJob still enforces quotas)
    result = run_plan({"experiments": [{"model": "mistral-7b", "approach": "qlora"}]}, stubbed)
    assert len(result["jobs"]) == 1


def test_quotas_are_read_across_pages(moto_aws: None, stubbed: StubbedClients) -> None:
    stubbed.token_secret(has_value=True)  # Mistral-7B-v0.1 is gated
    stubbed.prices({"ml.g6.xlarge": "1.006"})
    first_page = {"Quotas": [quota("ml.m5.xlarge for training job usage", 9)], "NextToken": "page-2"}
    stubbed.quotas_stub.add_response("list_service_quotas", first_page)
    stubbed.quotas_stub.add_response(
        "list_service_quotas", {"Quotas": [quota("ml.g6.xlarge for spot training job usage", 0)]}
    )
    with pytest.raises(QuotaExceeded):
        run_plan({"experiments": [{"model": "mistral-7b", "approach": "qlora"}]}, stubbed)


def test_plan_handler_returns_the_plan(moto_aws: None, stubbed: StubbedClients, lambda_context: Any) -> None:
    stubbed.token_secret(has_value=True)  # Mistral-7B-v0.1 is gated
    stubbed.prices({"ml.g6.xlarge": "1.006"})
    stubbed.quota_values({"ml.g6.xlarge for spot training job usage": 2})
    event = {"input": {"experiments": [{"model": "mistral-7b", "approach": "qlora"}]}, "execution_name": "exec_1"}
    result = plan_handler.handler(event, lambda_context)
    assert result["run_id"].startswith("exec-1-") and result["jobs"][0]["job_name"].startswith("ft-exec-1-")
    json.dumps(result)  # Step Functions needs plain JSON


def test_the_planner_runs_every_study_job_in_one_process_on_one_gpu() -> None:
    # Given the study matrix planned offline
    jobs = {(j["model_key"], j["approach"]): j for j in study_jobs()}
    # Then 7B full runs `lean` on one 48 GB L40S, 20B LoRA on one L40S, every (Q)LoRA job on one GPU: no collectives
    assert jobs[("mistral-7b", "full")]["strategy"] == jobs[("llama2-7b", "full")]["strategy"] == "lean"
    assert jobs[("mistral-7b", "full")]["instance_type"] == "ml.g6e.xlarge"
    assert all(job["strategy"] in ("single", "lean") and job["gpus_per_instance"] == 1 for job in jobs.values())
    assert all(job["batch_size"] == 8 for job in jobs.values())  # the study's global batch of 8


def test_a_sharded_job_tells_the_training_code_its_strategy_under_torchrun() -> None:
    # Given 7B full on the 8 A10Gs the input names
    [spec] = study_jobs(
        {"experiments": [{"model": "mistral-7b", "approach": "full", "instance_type": "ml.g5.48xlarge"}]}
    )
    # When Launch builds its hyperparameters
    params = training_job.hyperparameters(spec, hf_token_secret_arn="arn:s", code_s3_uri="s3://b/k.gz", region=REGION)
    # Then the training code shards with FSDP at batch 1 per GPU (the global batch of 8) and torchrun starts it
    assert json.loads(params["strategy"]) == "fsdp" and json.loads(params["per_device_batch_size"]) == 1
    assert json.loads(params["sagemaker_torch_distributed_enabled"]) is True


def test_explicit_smaller_instance_for_7b_full_is_sharded_with_cpu_offload() -> None:
    # Given 7B full on 4x A10G (~27 GB of state per GPU: does not fit) with 192 GiB of host RAM
    [job] = study_jobs({"experiments": [{"model": "llama2-7b", "approach": "full", "instance_type": "ml.g5.12xlarge"}]})
    # Then the planner keeps the state in host memory
    assert job["strategy"] == "fsdp_offload"
