"""The catalog: study matrix, defaults per size class and approach, models by key or Hub id, metric regexes."""

from __future__ import annotations

import re

import pytest

from lambdas import catalog


def test_study_matrix_is_every_model_and_approach_except_neox_full() -> None:
    # Given the study's three models and three approaches
    # When the default matrix is expanded
    matrix = catalog.STUDY_MATRIX
    # Then every combination is there once, except GPT-NeoX-20B full (skipped for cost)
    assert ("gpt-neox-20b", "full") not in matrix
    assert len(matrix) == len(set(matrix)) == 3 * 3 - 1
    assert {m for m, _ in matrix} == {"llama2-7b", "mistral-7b", "gpt-neox-20b"}


@pytest.mark.parametrize(
    ("model", "approach", "instance_type", "batch_size"),
    [
        ("llama2-7b", "qlora", "ml.g5.xlarge", 8),
        ("mistral-7b", "lora", "ml.g5.2xlarge", 8),
        ("mistral-7b", "full", "ml.g5.12xlarge", 2),
        ("gpt-neox-20b", "lora", "ml.p4d.24xlarge", 1),
        ("gpt-neox-20b", "qlora", "ml.g5.12xlarge", 2),
    ],
)
def test_defaults_follow_the_study(model: str, approach: str, instance_type: str, batch_size: int) -> None:
    defaults = catalog.job_defaults(catalog.MODELS[model].params_billion, approach)
    assert (defaults.instance_type, defaults.batch_size) == (instance_type, batch_size)


def test_every_default_instance_is_in_the_catalog_and_has_a_gpu() -> None:
    for (size, approach), defaults in catalog.DEFAULTS.items():
        assert catalog.INSTANCES[defaults.instance_type].has_gpu, (size, approach)


def test_llama2_is_gated_and_the_others_are_not() -> None:
    assert catalog.MODELS["llama2-7b"].gated
    assert not catalog.MODELS["mistral-7b"].gated and not catalog.MODELS["gpt-neox-20b"].gated


def test_hub_id_resolves_with_the_given_size_class() -> None:
    # Given a Hub id that is not a catalog key, with and without a size
    small = catalog.resolve_model("Qwen/Qwen2.5-1.5B")
    big = catalog.resolve_model("tiiuae/falcon-40b", params_billion=40)
    # Then it is its own model id, 7B by default, and the size picks the defaults bucket
    assert small.hf_id == "Qwen/Qwen2.5-1.5B" and small.params_billion == catalog.DEFAULT_PARAMS_BILLION
    assert catalog.size_class(big.params_billion) == "20b"


def test_unknown_model_that_is_not_a_hub_id_is_refused() -> None:
    with pytest.raises(KeyError):
        catalog.resolve_model("llama-7b")


def test_quota_names_follow_service_quotas_wording() -> None:
    assert catalog.training_quota_name("ml.g5.xlarge", spot=True) == "ml.g5.xlarge for spot training job usage"
    assert catalog.training_quota_name("ml.g5.xlarge", spot=False) == "ml.g5.xlarge for training job usage"


def test_required_instance_types_are_priced() -> None:
    required = [f"ml.g5.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "24xlarge", "48xlarge")]
    required += ["ml.g6.xlarge", "ml.p3.2xlarge", "ml.p4d.24xlarge", "ml.p5.48xlarge", "ml.m5.xlarge"]
    for name in required:
        assert catalog.INSTANCES[name].hourly_price_usd > 0
    assert not catalog.INSTANCES["ml.m5.xlarge"].has_gpu


def test_metric_lines_parse_back_with_the_last_value_winning() -> None:
    # Given a training log with a metric printed twice and a lookalike metric name
    log = "train_loss=2.5;\neval_train_loss=9.0;\ntrain_loss=1.25;\neval_intent_accuracy=0.9312;\n"
    # When parsed with the catalog's definitions
    parsed = catalog.parse_metric_lines(log)
    # Then the final values are found, and SageMaker gets one regex per metric
    assert parsed["train_loss"] == 1.25 and parsed["eval_intent_accuracy"] == 0.9312
    definitions = catalog.metric_definitions()
    assert {d["Name"] for d in definitions} == {m.name for m in catalog.METRICS}
    accuracy = next(d for d in definitions if d["Name"] == "eval_intent_accuracy")
    assert re.search(accuracy["Regex"], log).group(1) == "0.9312"
