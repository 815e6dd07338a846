"""The Banking77 study's 8 default jobs, exactly as Plan builds them and Launch sends them, train to metrics.

Each job's hyperparameters come from Plan's job spec through Launch's request builder and reach `train.py` as the
SageMaker training toolkit passes them (its own `to_cmd_args`). Only what cannot exist offline, or on a CPU, is
replaced, each for a stated reason (`OFFLINE_OVERRIDES`, `CPU_OVERRIDES`); everything else — prompt style, automatic
sequence length, batch size, learning rate, LoRA shape, warmup, evaluation batch, decoding, checkpoint interval — is
what a real job gets. The model is a tiny Llama with Mistral-7B-v0.1's real tokenizer, so sequence lengths are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sagemaker_training import mapping, params

from lambdas import training_job
from lambdas.job_spec import JobSpec
from tests.support.lambdas import CODE_URI, REGION, SECRET_ARN, study_jobs
from tests.support.training import run_main

STUDY_JOBS = study_jobs()

# Offline there is no Hub and no Secrets Manager: the model is a local folder (with the real Mistral tokenizer), no
# token is read, the BERTScore encoder is the local MiniLM, and the run is a few steps on a few evaluation samples.
OFFLINE_OVERRIDES = {"max_steps": 3, "eval_samples": 6}
# FSDP needs CUDA GPUs and torchrun (train.py refuses it on CPU): a job Plan shards trains as one process here.
# The sharded path is the planner's business (tests/lambdas/test_lambda_memory.py) and the GPU bench's. split, lean
# and ddp (one process = single) run on the CPU through their own code paths.
CPU_OVERRIDES = {"strategy": "single"}
FSDP_STRATEGIES = ("fsdp", "fsdp_offload")


def toolkit_argv(job: JobSpec, model: Path, checkpoint_dir: Path, bertscore_model: str) -> list[str]:
    """The argv `train.py` receives for `job`: Launch's hyperparameters, JSON-decoded and turned into arguments by
    the toolkit, with the offline and CPU replacements above."""
    raw = training_job.hyperparameters(job, hf_token_secret_arn=SECRET_ARN, code_s3_uri=CODE_URI, region=REGION)
    values: dict[str, Any] = {key: json.loads(value) for key, value in raw.items()}
    values = {key: value for key, value in values.items() if not key.startswith(params.SAGEMAKER_PREFIX)}
    values.pop("hf_token_secret_arn")  # a local model folder needs no token
    values.update(
        model_id=str(model), checkpoint_dir=str(checkpoint_dir), bertscore_model=bertscore_model, **OFFLINE_OVERRIDES
    )
    if values.get("strategy") in FSDP_STRATEGIES:
        values.update(CPU_OVERRIDES)
    return [str(argument) for argument in mapping.to_cmd_args(values)]


def test_the_study_is_the_eight_jobs_of_the_published_comparison() -> None:
    assert sorted((job["model_key"], job["approach"]) for job in STUDY_JOBS) == sorted(
        (model, approach)
        for model in ("llama2-7b", "mistral-7b", "gpt-neox-20b")
        for approach in ("full", "lora", "qlora")
        if (model, approach) != ("gpt-neox-20b", "full")
    )


@pytest.mark.parametrize("job", STUDY_JOBS, ids=lambda job: f"{job['model_key']}-{job['approach']}")
def test_a_study_job_as_plan_builds_it_trains_and_evaluates_on_the_real_tokenizer(
    job: JobSpec, mistral_tiny_model: Path, bertscore_model: str, make_job
) -> None:
    # Given the job's folders and its hyperparameters as the toolkit hands them over
    folders = make_job(job["job_name"])
    argv = toolkit_argv(job, mistral_tiny_model, folders.checkpoint_dir, bertscore_model)

    # When train.py runs it
    result = run_main(folders, argv)

    # Then it trains and evaluates to every metric of the study
    assert result.exit_code == 0, folders.failure() if (folders.output_dir / "failure").exists() else result.stdout
    metrics = folders.metrics()
    for name in ("train_loss", "eval_intent_accuracy", "eval_rougeL", "eval_bertscore_f1", "eval_inference_seconds"):
        assert name in metrics, name
    assert metrics["eval_parse_rate"] == 1.0  # constrained decoding over the label set
    # with compact prompts sized from the data: tens of tokens, not the 512 Plan used to send
    resolved = folders.training_config()["resolved"]
    assert job["max_seq_length"] == "auto" and resolved["max_seq_length"] <= 64
    assert folders.training_config()["hyperparameters"]["prompt_style"] == job["prompt_style"] == "compact"


# The study's zero-shot baselines (`"baselines": true`), one per model, as Plan builds them.
BASELINE_JOBS = [job for job in study_jobs({"baselines": True}) if job["approach"] == "baseline"]


@pytest.mark.parametrize("job", BASELINE_JOBS, ids=lambda job: job["model_key"])
def test_a_study_baseline_as_plan_builds_it_evaluates_with_listed_prompts_and_trains_nothing(
    job: JobSpec, mistral_tiny_model: Path, bertscore_model: str, make_job
) -> None:
    folders = make_job(job["job_name"])
    argv = toolkit_argv(job, mistral_tiny_model, folders.checkpoint_dir, bertscore_model)

    result = run_main(folders, argv)

    assert result.exit_code == 0, folders.failure() if (folders.output_dir / "failure").exists() else result.stdout
    metrics = folders.metrics()
    for name in ("eval_intent_accuracy", "eval_rougeL", "eval_bertscore_f1", "eval_inference_seconds"):
        assert name in metrics, name
    assert metrics["eval_parse_rate"] == 1.0 and "train_loss" not in metrics
    # The real tokenizer's listed prompts: the 6 labels of banking77-mini in every prompt
    assert folders.training_config()["hyperparameters"]["prompt_style"] == job["prompt_style"] == "listed"
    assert not (folders.model_dir / "model.safetensors").exists()
