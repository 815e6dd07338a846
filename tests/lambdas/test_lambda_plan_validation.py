"""Execution-input validation: schema first, then the catalog; every refusal names the field and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas import catalog, plan
from lambdas.errors import InvalidExecutionInput
from tests.support.lambdas import study_jobs


def refusal(execution_input: Any) -> str:
    with pytest.raises(InvalidExecutionInput) as caught:
        plan.validate_execution_input(execution_input)
    return caught.value.message


def test_empty_input_is_the_study_matrix_with_defaults() -> None:
    doc, experiments = plan.validate_execution_input({})
    assert len(experiments) == 8
    assert doc["spot"] is True and doc["eval_samples"] == 500


@pytest.mark.parametrize(
    ("execution_input", "field", "hint"),
    [
        ({"colour": "blue"}, "colour", "allowed fields: baselines, budget_usd, dataset, eval_samples"),
        (
            {"experiments": [{"model": "mistral-7b", "approach": "lora", "rank": 8}]},
            "experiments[0].rank",
            "allowed fields:",
        ),
        (
            {"experiments": [{"model": "mistral-7b", "approach": "prefix-tuning"}]},
            "experiments[0].approach",
            "must be one of: full, lora, qlora",
        ),
        (
            {"experiments": [{"model": "mistral-7b", "approach": "lora", "epochs": 0}]},
            "experiments[0].epochs",
            "bigger than 0",
        ),
        (
            {"experiments": [{"model": "mistral-7b", "approach": "lora", "epochs": -1}]},
            "experiments[0].epochs",
            "bigger than 0",
        ),
        ({"experiments": [{"model": "mistral-7b"}]}, "experiments[0].approach", "required"),
        ({"dataset": {"name": "banking77", "train_s3_uri": "s3://b/x/"}}, "dataset", 'Either {"name": ...}'),
        ({"dataset": {"train_s3_uri": "s3://bucket/train/"}}, "dataset", "test_s3_uri"),
        ({"spot": "yes"}, "spot", "must be boolean"),
        (
            {"experiments": [{"model": "mistral-7b", "approach": "lora", "instance_type": "g5.xlarge"}]},
            "experiments[0].instance_type",
            "ml.g5.2xlarge",
        ),
    ],
)
def test_schema_violations_name_the_field_and_what_is_allowed(execution_input: Any, field: str, hint: str) -> None:
    # Given an input that breaks the v1 schema
    # When it is validated
    message = refusal(execution_input)
    # Then the message names the JSON path and says what would be accepted
    assert f"{field}:" in message
    assert hint in message


def test_unknown_model_lists_catalog_keys_and_hub_ids() -> None:
    message = refusal({"experiments": [{"model": "llama-7b", "approach": "lora"}]})
    assert "experiments[0].model: unknown model 'llama-7b'" in message
    assert "llama2-7b, mistral-7b, gpt-neox-20b" in message and "org/name" in message


def test_unknown_instance_type_lists_the_catalog() -> None:
    message = refusal({"experiments": [{"model": "mistral-7b", "approach": "lora", "instance_type": "ml.x9.huge"}]})
    assert "experiments[0].instance_type: unknown instance type 'ml.x9.huge'" in message
    assert "ml.g5.xlarge" in message


@pytest.mark.parametrize("approach", ["full", "lora", "qlora"])
def test_a_cpu_instance_is_refused_because_the_training_image_has_no_cpu_build(approach: str) -> None:
    # Issue 19: the "cheap plumbing check" ran the GPU-only DLC on ml.m5.xlarge
    message = refusal({"experiments": [{"model": "mistral-7b", "approach": approach, "instance_type": "ml.m5.xlarge"}]})
    assert "experiments[0].instance_type: ml.m5.xlarge cannot run the training image: a CPU instance" in message


def test_every_semantic_problem_is_reported_at_once() -> None:
    message = refusal(
        {
            "experiments": [
                {"model": "nope", "approach": "lora"},
                {"model": "mistral-7b", "approach": "lora", "instance_type": "ml.zz.big"},
            ]
        }
    )
    assert "experiments[0].model" in message and "experiments[1].instance_type" in message


def test_params_billion_is_only_for_hub_ids() -> None:
    message = refusal({"experiments": [{"model": "mistral-7b", "approach": "lora", "params_billion": 20}]})
    assert "experiments[0].params_billion" in message


def test_duplicate_experiments_are_refused() -> None:
    doc, experiments = plan.validate_execution_input(
        {"experiments": [{"model": "mistral-7b", "approach": "lora"}, {"model": "mistral-7b", "approach": "lora"}]}
    )
    with pytest.raises(InvalidExecutionInput) as caught:
        plan.build_jobs(doc, experiments, run_id="r", bucket="b", job_name_prefix="ft", price_of=plan.catalog_price)
    assert "experiments[1]: duplicates experiments[0]" in caught.value.message


def test_a_hub_model_with_a_size_is_planned_for_that_size() -> None:
    # Given a Hub id of 20.6B (its guessed Llama shape has a 128k vocabulary: bigger than GPT-NeoX's own)
    _, [experiment] = plan.validate_execution_input(
        {"experiments": [{"model": "EleutherAI/gpt-neox-20b", "approach": "lora", "params_billion": 20.6}]}
    )
    # Then the planner finds its cheapest plan on the plannable families: DDP over 4 L40S at batch 2 (global 8)
    assert experiment["instance_type"] == "ml.g6e.12xlarge" and experiment["model_id"] == "EleutherAI/gpt-neox-20b"
    assert (experiment["strategy"], experiment["batch_size"]) == ("ddp", 2)


def test_null_learning_rate_means_auto() -> None:
    _, [experiment] = plan.validate_execution_input(
        {"experiments": [{"model": "mistral-7b", "approach": "lora", "learning_rate": None}]}
    )
    assert experiment["learning_rate"] is None


def test_a_learning_rate_of_one_is_refused_naming_the_field_and_the_allowed_range() -> None:
    # Given a learning rate of 1, which the training code refuses (0 < lr < 1) after the job has paid for startup
    execution_input = {"experiments": [{"model": "mistral-7b", "approach": "lora", "learning_rate": 1}]}
    # When Plan validates it
    message = refusal(execution_input)
    # Then it is refused before any launch, naming the field and the range the training code accepts
    assert "experiments[0].learning_rate:" in message
    assert "smaller than 1" in message and "(0, 1)" in message


def test_validation_does_not_modify_the_callers_input() -> None:
    execution_input: dict[str, Any] = {"experiments": [{"model": "mistral-7b", "approach": "lora"}]}
    plan.validate_execution_input(execution_input)
    assert execution_input == {"experiments": [{"model": "mistral-7b", "approach": "lora"}]}


@pytest.mark.parametrize(
    ("example", "jobs"),
    [("single-lora.json", 1), ("study-matrix.json", 8), ("smoke.json", 1), ("demo.json", 4), ("study-2026.json", 16)],
)
def test_shipped_examples_are_valid_and_within_their_own_budget(example: str, jobs: int) -> None:
    execution_input = json.loads((Path(__file__).parents[2] / "examples" / example).read_text())
    planned = study_jobs(execution_input)
    assert len(planned) == jobs
    assert plan.enforce_budget(planned, execution_input["budget_usd"]) <= execution_input["budget_usd"]


def test_the_2026_study_plans_todays_models_like_the_seed_study() -> None:
    # Given examples/study-2026.json: the seed study's approaches on today's models, baselines on
    execution_input = json.loads((Path(__file__).parents[2] / "examples" / "study-2026.json").read_text())
    # When Plan validates it (every job must fit its planned instance, or validation raises InfeasibleJob)
    planned = study_jobs(execution_input)
    # Then every model gets full, LoRA, QLoRA and one baseline, each from the catalog (no guessed shape)
    models = {"llama3.1-8b", "qwen3-8b", "mistral-7b-v0.3", "qwen3-4b"}
    assert sorted((job["model_key"], job["approach"]) for job in planned) == sorted(
        (model, approach) for model in models for approach in ("full", "lora", "qlora", "baseline")
    )
    assert all(job["model_id"] == catalog.MODELS[job["model_key"]].hf_id for job in planned)
    # and the run stays within its own budget
    assert plan.enforce_budget(planned, execution_input["budget_usd"]) <= execution_input["budget_usd"]


def test_an_unknown_approach_is_refused_naming_every_approach_including_baseline() -> None:
    message = refusal({"experiments": [{"model": "mistral-7b", "approach": "zero-shot"}]})
    assert "experiments[0].approach: must be one of: full, lora, qlora, dora, baseline" in message


def test_baselines_add_one_zero_shot_job_per_model_of_the_study() -> None:
    # Given the study matrix with baselines
    _, experiments = plan.validate_execution_input({"baselines": True})
    # Then each of its three models gets one baseline, on the cheapest instance its bf16 weights fit
    baselines = {exp["model_key"]: exp for exp in experiments if exp["approach"] == "baseline"}
    assert len(experiments) == 8 + 3
    assert {key: exp["instance_type"] for key, exp in baselines.items()} == {
        "llama2-7b": "ml.g6.xlarge",
        "mistral-7b": "ml.g6.xlarge",
        "gpt-neox-20b": "ml.g6.12xlarge",
    }
    assert all(exp["prompt_style"] == "listed" and exp["instance_count"] == 1 for exp in baselines.values())
    assert all(exp["strategy"] == "single" for exp in baselines.values())
    # and a runtime bound of at least an hour and twice its high estimate (the 20B one loads ~41 GB: 2 h)
    bounds = {key: exp["max_runtime_seconds"] for key, exp in baselines.items()}
    assert bounds == {"llama2-7b": 3600, "mistral-7b": 3600, "gpt-neox-20b": 7200}


def test_baselines_are_off_by_default_and_never_doubled() -> None:
    _, experiments = plan.validate_execution_input({})
    assert all(exp["approach"] != "baseline" for exp in experiments)
    # Given explicit experiments that already hold a baseline for one of their two models
    _, experiments = plan.validate_execution_input(
        {
            "baselines": True,
            "experiments": [
                {"model": "mistral-7b", "approach": "lora"},
                {"model": "mistral-7b", "approach": "baseline"},
                {"model": "org/small", "params_billion": 1.5, "approach": "qlora"},
            ],
        }
    )
    # Then only the other model gets one, sized like its experiment
    added = experiments[3:]
    assert [(exp["model_key"], exp["approach"]) for exp in added] == [("org/small", "baseline")]
    assert len(experiments) == 4 and added[0]["instance_type"] == "ml.g6.xlarge"


def test_a_baselines_training_settings_are_ignored_and_its_job_spec_keeps_the_defaults() -> None:
    (job,) = study_jobs(
        {
            "experiments": [
                {"model": "mistral-7b", "approach": "baseline", "epochs": 5, "lora_r": 64, "prompt_style": "compact"}
            ]
        }
    )
    assert (job["epochs"], job["lora_r"], job["max_steps"]) == (1, 16, -1)
    # listed is forced: a model that was never trained cannot know the labels a compact prompt leaves out
    assert job["prompt_style"] == "listed" and job["learning_rate"] is None


def test_a_baseline_runs_on_one_instance() -> None:
    message = refusal({"experiments": [{"model": "gpt-neox-20b", "approach": "baseline", "instance_count": 2}]})
    assert "experiments[0].instance_count: a baseline runs one process on one instance" in message
