"""The approach table (lambdas/approaches.py) is the one home of what each approach is; the training code's mirror
(training_code/approaches.py, packaged alone for SageMaker) and the rules that must live on both sides of that
boundary (gradient checkpointing's `auto`, the automatic learning rate) are held equal here."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from lambdas import approaches, catalog, memory, plan
from training_code import approaches as training_approaches
from training_code import config as training_config
from training_code import modeling

# The fields the training code needs, by the same name on both sides.
MIRRORED_FIELDS = tuple(field.name for field in dataclasses.fields(training_approaches.Approach))


def test_every_field_of_the_training_tables_rows_exists_in_the_lambda_table() -> None:
    lambda_fields = {field.name for field in dataclasses.fields(approaches.Approach)}
    assert set(MIRRORED_FIELDS) <= lambda_fields


@pytest.mark.parametrize("name", sorted(set(approaches.APPROACHES) | set(training_approaches.APPROACHES)))
def test_the_training_codes_table_mirrors_the_lambda_table(name: str) -> None:
    # Given an approach either side knows
    assert name in approaches.APPROACHES and name in training_approaches.APPROACHES, name
    ours, theirs = approaches.APPROACHES[name], training_approaches.APPROACHES[name]
    # Then every field the training code reads says the same on both sides
    assert {f: getattr(ours, f) for f in MIRRORED_FIELDS} == {f: getattr(theirs, f) for f in MIRRORED_FIELDS}


def test_both_tables_list_the_approaches_in_the_same_order_with_the_same_thresholds() -> None:
    assert tuple(approaches.APPROACHES) == tuple(training_approaches.APPROACHES) == training_config.APPROACHES
    assert approaches.TINY_MODEL_PARAMETERS == training_approaches.TINY_MODEL_PARAMETERS
    assert approaches.LARGE_MODEL_PARAMETERS == training_approaches.LARGE_MODEL_PARAMETERS
    assert (approaches.ADAMW, approaches.PAGED_ADAMW_8BIT) == (
        training_approaches.ADAMW,
        training_approaches.PAGED_ADAMW_8BIT,
    )


def test_the_catalogs_approach_names_are_read_from_the_table() -> None:
    table = approaches.APPROACH_LIST
    assert tuple(a.name for a in table) == catalog.APPROACHES
    assert tuple(a.name for a in table if a.trains) == catalog.TRAINING_APPROACHES
    assert {a.name for a in table if a.gpu_only} == catalog.GPU_ONLY_APPROACHES
    assert {a.name: a.flops_per_parameter for a in table if a.trains} == catalog.TRAINING_FLOPS_PER_PARAMETER
    assert {approach for _, approach in catalog.STUDY_MATRIX} == {a.name for a in table if a.in_study}


def test_the_input_schema_offers_exactly_the_tables_approaches() -> None:
    schema = plan.load_schema()
    approach = schema["properties"]["experiments"]["items"]["properties"]["approach"]
    assert approach["enum"] == list(approaches.APPROACHES)


@pytest.mark.parametrize("approach", [a for a in approaches.APPROACH_LIST if a.trains], ids=lambda a: a.name)
def test_every_training_approach_names_a_utilization_of_the_time_model(approach: approaches.Approach) -> None:
    assert approach.utilization in catalog.TIME_MODEL


@pytest.mark.parametrize("approach", [a for a in approaches.APPROACH_LIST if a.oom_fallback], ids=lambda a: a.name)
def test_an_out_of_memory_fallback_is_a_training_approach_that_needs_less_memory(approach: approaches.Approach) -> None:
    fallback = approaches.get(approach.oom_fallback or "")
    assert fallback.trains and fallback.adapter == approach.adapter and fallback.quantized


def test_an_unknown_approach_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: full, lora"):
        approaches.get("prefix-tuning")


# ---------------------------------------------------------------------------------------------------------------------
# Rules that live on both sides of the Lambda/training boundary
# ---------------------------------------------------------------------------------------------------------------------
def _runtime(use_cuda: bool) -> modeling.Runtime:
    return modeling.Runtime(
        use_cuda=use_cuda, device="cuda" if use_cuda else "cpu", dtype=None, bf16=use_cuda, fp16=False,
        attn_implementation="sdpa",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("approach", "parameters", "on_gpu", "explicit"),
    list(
        itertools.product(
            catalog.TRAINING_APPROACHES,
            [250_000, 999_999_999, 1_000_000_000, 7_000_000_000],
            [True, False],
            training_config.GRADIENT_CHECKPOINTING,
        )
    ),
)
def test_the_planner_and_the_training_code_agree_on_gradient_checkpointing(
    approach: str, parameters: int, on_gpu: bool, explicit: str
) -> None:
    # Given one job setting, as the planner sees it and as the training code sees it
    config = training_config.TrainConfig("m", approach=approach, gradient_checkpointing=explicit)
    training = modeling.use_gradient_checkpointing(config, _runtime(on_gpu), parameters)
    # Then both decide the same
    planner = memory.gradient_checkpointing_rule(approach, parameters, on_gpu=on_gpu, explicit=explicit)
    assert planner == training


def test_the_planner_asks_the_same_rule_for_a_workload() -> None:
    # The planner's and the time model's question (uses_gradient_checkpointing) is the rule, at `auto`
    model = catalog.resolve_model("org/m", 7.0)
    workload = memory.Workload(model, "lora", 8, 256)
    gpu, cpu = memory.Placement(catalog.INSTANCES["ml.g5.xlarge"]), memory.Placement(catalog.INSTANCES["ml.m5.xlarge"])
    assert memory.uses_gradient_checkpointing(workload, gpu) and not memory.uses_gradient_checkpointing(workload, cpu)


# Model sizes across every size class and across the rule's own thresholds (100M and 13B parameters).
LEARNING_RATE_SIZES_BILLION = (0.00025, 0.0999, 0.1, 1.5, 2.0, 7.0, 8.5, 13.0, 13.1, 20.0, 30.0, 70.0)


@pytest.mark.parametrize("approach", catalog.TRAINING_APPROACHES)
@pytest.mark.parametrize("params_billion", LEARNING_RATE_SIZES_BILLION)
def test_the_default_learning_rate_is_what_the_training_codes_auto_resolves(
    params_billion: float, approach: str
) -> None:
    # Given a job that leaves learning_rate unset: Plan sends its size class's default
    sent = catalog.job_defaults(params_billion, approach).learning_rate
    # When the training code resolves `auto` for the same model instead
    auto = training_config.resolve_learning_rate(
        training_config.TrainConfig("m", approach=approach), round(params_billion * 1e9)
    )
    # Then they are the same rate (before: 2e-4 vs 5e-3 for tiny LoRA models, 1e-4 vs 2e-4 for 8.5-13B adapters)
    assert sent == auto


def test_a_baseline_has_no_default_learning_rate() -> None:
    assert catalog.job_defaults(7.0, catalog.BASELINE).learning_rate is None
