"""Launch: the CreateTrainingJob request (validated by botocore's Stubber against the real model) and its errors."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from botocore.stub import Stubber

from lambdas import aws, catalog, training_job
from lambdas.errors import InvalidHyperparameter, JobNameConflict, LaunchRejected, ResourceLimitReached, Throttled
from lambdas.handlers import launch as launch_handler
from lambdas.job_spec import JobSpec
from tests.support.lambdas import (
    ARN,
    CODE_URI,
    DATA_KEY_ARN,
    IMAGE_URI,
    REGION,
    ROLE_ARN,
    SECRET_ARN,
    describe_response,
    one_job,
    study_jobs,
)


def request_for(job: JobSpec, code_uri: str = CODE_URI) -> dict[str, Any]:
    return training_job.create_training_job_request(
        job,
        role_arn=ROLE_ARN,
        image_uri=IMAGE_URI,
        code_s3_uri=code_uri,
        hf_token_secret_arn=SECRET_ARN,
        data_key_arn=DATA_KEY_ARN,
        region=REGION,
        project="finetune",
    )


def decoded(request: dict[str, Any]) -> dict[str, Any]:
    return {key: json.loads(value) for key, value in request["HyperParameters"].items()}


def test_full_request_is_valid_for_the_sagemaker_api() -> None:
    # Given a planned job and a SageMaker client whose Stubber validates requests against the service model
    job = one_job(model="llama2-7b", approach="full")
    request = request_for(job)
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": ARN.format(job["job_name"])}, request)
        # When launched
        result = training_job.launch(sagemaker, request)
        stub.assert_no_pending_responses()
    # Then SageMaker accepted exactly this request
    assert result == {
        "job_name": job["job_name"],
        "training_job_arn": ARN.format(job["job_name"]),
        "already_launched": False,
    }


def test_request_uses_managed_spot_checkpoints_and_the_contract_locations() -> None:
    job = one_job()
    request = request_for(job)
    assert request["EnableManagedSpotTraining"] is True
    stopping = request["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"] == job["max_runtime_seconds"]
    assert request["CheckpointConfig"] == {"S3Uri": job["checkpoint_s3_uri"], "LocalPath": "/opt/ml/checkpoints"}
    assert request["OutputDataConfig"] == {
        "S3OutputPath": job["output_s3_uri"],
        "KmsKeyId": DATA_KEY_ARN,
        "CompressionType": "NONE",
    }
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]}
    assert channels["train"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": job["train_s3_uri"],
        "S3DataDistributionType": "FullyReplicated",
    }
    assert channels["test"]["S3Uri"] == job["test_s3_uri"]
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE_URI
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == catalog.metric_definitions()
    assert request["RoleArn"] == ROLE_ARN
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {
        "project": "finetune",
        "run_id": "run-1",
        "model": "mistral-7b",
        "approach": "lora",
        # Plan's price travels with the job, so Cleanup prices a job the workflow never recorded as Plan did.
        "hourly_price_usd": f"{job['hourly_price_usd']:g}",
        "price_source": job["price_source"],
        # Attempts of one job share its base name (lambdas/remedies.py); Plan's spec is attempt 1.
        "attempt": "1",
        "base_job_name": job["job_name"],
    }


def test_the_model_is_uploaded_uncompressed_in_a_request_sagemaker_accepts() -> None:
    # Given a full fine-tune (a 13-29 GB model folder) and a Stubber that validates against the service model
    job = one_job(model="llama2-7b", approach="full")
    request = request_for(job)
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": ARN.format(job["job_name"])}, request)
        # When launched
        training_job.launch(sagemaker, request)
        stub.assert_no_pending_responses()
    # Then SageMaker uploads /opt/ml/model as it is, instead of spending billed minutes gzipping it
    assert request["OutputDataConfig"]["CompressionType"] == "NONE"


def test_the_hugging_face_cache_is_on_the_instances_nvme_not_the_root_volume() -> None:
    # Given a planned job, When its request is built, Then the container's HF_HOME is under /tmp (the instance store
    # on g5/p4d), not the default /root/.cache on the container's root volume
    request = request_for(one_job(model="llama2-7b", approach="full"))
    assert request["Environment"]["HF_HOME"].startswith("/tmp/")


def test_on_demand_request_has_no_max_wait() -> None:
    [job] = study_jobs({"experiments": [{"model": "mistral-7b", "approach": "lora"}], "spot": False})
    request = request_for(job)
    assert request["EnableManagedSpotTraining"] is False and "MaxWaitTimeInSeconds" not in request["StoppingCondition"]


def test_hyperparameters_are_json_encoded_like_the_sdk() -> None:
    job = one_job(learning_rate=1e-4, merge_adapter=True)
    raw = request_for(job)["HyperParameters"]
    assert raw["sagemaker_program"] == '"train.py"'
    assert raw["sagemaker_submit_directory"] == json.dumps(CODE_URI)
    assert raw["approach"] == '"lora"' and raw["merge_adapter"] == "true" and raw["learning_rate"] == "0.0001"
    values = decoded(request_for(job))
    assert values["model_id"] == "mistralai/Mistral-7B-v0.1"
    assert values["per_device_batch_size"] == job["batch_size"] and values["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert values["max_steps"] == -1 and values["eval_samples"] == 500 and values["sagemaker_region"] == REGION
    assert {"epochs", "lora_r", "lora_alpha", "lora_dropout", "seed"} <= set(values)


def test_defaults_reach_training_as_the_contract_names_them() -> None:
    # Given a job with every default
    values = decoded(request_for(one_job()))
    # Then training gets auto length, compact prompts, constrained decoding, warmup, the fixed evaluation batch and
    # the planner's checkpoint interval (catalog.HYPERPARAMETERS)
    assert values["max_seq_length"] == "auto" and values["prompt_style"] == "compact"
    assert values["decoding"] == "constrained" and values["warmup_ratio"] == 0.03
    assert values["eval_batch_size"] == 8 and values["save_interval_seconds"] >= 60
    # And the planner's strategy, one token (the fsdp hyperparameter is gone)
    assert values["strategy"] == "single" and "fsdp" not in values


def test_hyperparameters_carry_the_token_secret_arn_never_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a token value that exists in the environment (it must never be read, let alone sent)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETVALUE")
    request = request_for(one_job(model="llama2-7b", approach="qlora"))
    # Then only the ARN travels
    assert json.loads(request["HyperParameters"]["hf_token_secret_arn"]) == SECRET_ARN
    assert "hf_SECRETVALUE" not in json.dumps(request)
    assert not any("token" in k and k != "hf_token_secret_arn" for k in request["HyperParameters"])


def test_auto_learning_rate_is_omitted() -> None:
    assert "learning_rate" not in request_for(one_job(learning_rate=None))["HyperParameters"]


def test_torchrun_launches_exactly_the_per_gpu_strategies_over_more_than_one_gpu() -> None:
    # Given jobs whose strategy runs a process per GPU (fsdp on 8 GPUs, ddp over 2 instances) and one-process ones
    fsdp = one_job(approach="full", instance_type="ml.g5.48xlarge")
    ddp = one_job(instance_type="ml.g5.2xlarge", instance_count=2)
    split = one_job(model="gpt-neox-20b", approach="lora", instance_type="ml.g5.12xlarge")
    assert (fsdp["strategy"], ddp["strategy"], split["strategy"]) == ("fsdp", "ddp", "split")
    multi, multi_node = decoded(request_for(fsdp)), decoded(request_for(ddp))
    # Then torchrun starts for the first two only; split, lean and single run one process
    assert multi["sagemaker_torch_distributed_enabled"] is True and multi["sagemaker_instance_type"] == "ml.g5.48xlarge"
    assert multi_node["sagemaker_torch_distributed_enabled"] is True and multi["strategy"] == "fsdp"
    for job in (split, one_job(approach="full"), one_job()):
        assert "sagemaker_torch_distributed_enabled" not in decoded(request_for(job)), job["strategy"]


def test_every_study_hyperparameter_is_one_shell_safe_token() -> None:
    # Given the study's jobs as Plan builds them (FSDP jobs included)
    for job in study_jobs():
        # When Launch builds their hyperparameters
        values = decoded(request_for(job))
        # Then each value reaches the command line as one token, even through an old toolkit's shell
        for key, value in values.items():
            assert training_job.SAFE_HYPERPARAMETER_VALUE.fullmatch(str(value)), (job["job_name"], key, value)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"model_id": "org/model name"}, "model_id"),
        ({"strategy": "fsdp auto_wrap"}, "strategy"),
        ({"decoding": "constrained;reboot"}, "decoding"),
    ],
)
def test_a_hyperparameter_with_whitespace_or_shell_characters_is_refused(change: dict[str, Any], key: str) -> None:
    # Given a job whose value would split or expand in a shell
    job = cast(JobSpec, {**one_job(), **change})
    # When its request is built, Then it is refused before SageMaker sees it, naming the key
    with pytest.raises(InvalidHyperparameter, match=rf"hyperparameter {key}="):
        request_for(job)


def test_a_code_location_with_shell_characters_is_refused() -> None:
    with pytest.raises(InvalidHyperparameter, match="sagemaker_submit_directory"):
        request_for(one_job(), code_uri="s3://bucket/$(whoami)/sourcedir.tar.gz")


def test_retried_launch_of_an_existing_job_reports_it_as_already_launched() -> None:
    # Given a job a previous attempt already created from the same request
    job = one_job()
    request = request_for(job)
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("create_training_job", "ResourceInUse", "Training job names must be unique")
        stub.add_response(
            "describe_training_job",
            describe_response(job["job_name"], HyperParameters=request["HyperParameters"]),
            {"TrainingJobName": job["job_name"]},
        )
        # When launched again
        result = training_job.launch(sagemaker, request)
    # Then it is the same job, not an error
    assert result == {
        "job_name": job["job_name"],
        "training_job_arn": ARN.format(job["job_name"]),
        "already_launched": True,
    }


def test_an_existing_job_from_another_spec_is_a_name_conflict_not_adopted() -> None:
    # Given a job of this name created from other code (e.g. the execution name reused after a redeploy)
    job = one_job()
    request = request_for(job)
    theirs = {**request["HyperParameters"], "sagemaker_submit_directory": json.dumps("s3://other/code.tar.gz")}
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("create_training_job", "ResourceInUse", "Training job names must be unique")
        stub.add_response(
            "describe_training_job",
            describe_response(job["job_name"], HyperParameters=theirs),
            {"TrainingJobName": job["job_name"]},
        )
        # When launched
        with pytest.raises(JobNameConflict) as caught:
            training_job.launch(sagemaker, request)
    # Then it is refused, naming what differs, and nobody records someone else's job as ours
    assert "sagemaker_submit_directory" in caught.value.message and job["job_name"] in caught.value.message


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        (
            "ResourceLimitExceeded",
            ResourceLimitReached,
            "The account-level service limit 'ml.g5.2xlarge for spot training job usage' is 0 Instances",
        ),
        ("ThrottlingException", Throttled, "Rate exceeded"),
        ("ValidationException", LaunchRejected, "Could not access model data"),
    ],
)
def test_create_errors_become_typed_errors_carrying_the_aws_message(code: str, error: type, text: str) -> None:
    job = one_job()
    request = request_for(job)
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("create_training_job", code, text, expected_params=request)
        with pytest.raises(error) as caught:
            training_job.launch(sagemaker, request)
    assert text in caught.value.message and job["job_name"] in caught.value.message


def test_launch_handler_creates_the_job(moto_aws: None, lambda_context: Any) -> None:
    job = one_job()
    result = launch_handler.handler(job, lambda_context)
    assert result["job_name"] == job["job_name"] and result["already_launched"] is False
    described = aws.client("sagemaker").describe_training_job(TrainingJobName=job["job_name"])
    assert described["EnableManagedSpotTraining"] is True
