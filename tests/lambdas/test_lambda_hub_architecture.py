"""A Hub model's shape from its config.json (catalog.Architecture.from_hf_config), dense and mixture-of-experts.

The fixtures under hf_configs/ are shaped like the real files (keys as the Hub serves them; values from the sources
named below). Published counts: Qwen3-30B-A3B "30.5B in total, 3.3B activated" (its model card, as quoted on
apxml.com/models/qwen3-30b-a3b); Mixtral-8x7B "46.7B total, 12.9B per token" (Azure/azureml-assets
mistralai-Mixtral-8x7B-Instruct-v01/description.md); Gemma 3 text 1B 999,885,952 and 4B 3,880,099,328
(keras-team/keras-hub gemma3_presets.py; Keras counts the 4B with a 262,144-token vocabulary, the Hub's text_config
default is 262,208: 163,840 more); Qwen1.5-MoE-A2.7B "14.3B total, 2.7B activated" (its model card); Phi-3-mini
3.8B (3,821,079,552 in its model card's parameter table); Llama-3.1-70B 70.6B.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas import catalog, memory
from lambdas.catalog import Architecture, ModelConfigError

CONFIGS = Path(__file__).parent / "hf_configs"


def config(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("fixture", "key"),
    [
        ("Qwen3-8B", "qwen3-8b"),
        ("Qwen3-4B", "qwen3-4b"),
        ("Llama-3.1-8B", "llama3.1-8b"),
        ("Llama-3.2-3B", "llama3.2-3b"),
        ("Mistral-7B-v0.1", "mistral-7b"),
        ("gpt-neox-20b", "gpt-neox-20b"),
    ],
)
def test_config_of_a_catalog_model_gives_the_catalogs_architecture(fixture: str, key: str) -> None:
    # Given the config.json of a model the catalog already knows
    # When it is read
    architecture = Architecture.from_hf_config(config(fixture))
    # Then it is the catalog's own shape (whose counts match the published ones exactly)
    assert architecture == catalog.MODELS[key].architecture


@pytest.mark.parametrize(
    ("fixture", "total", "active"),
    [
        ("gemma-3-1b-pt", 999_885_952, 999_885_952),
        ("gemma-3-4b-it", 3_880_099_328 + 163_840, 3_880_099_328 + 163_840),
        ("Phi-3-mini-4k-instruct", 3_821_079_552, 3_821_079_552),
        ("Llama-3.1-70B", 70.6e9, 70.6e9),
        ("Mixtral-8x7B-v0.1", 46.7e9, 12.9e9),
        ("Qwen3-30B-A3B", 30.5e9, 3.3e9),
        ("Qwen1.5-MoE-A2.7B", 14.3e9, 2.7e9),
    ],
)
def test_config_gives_the_published_total_and_active_parameter_counts(
    fixture: str, total: float, active: float
) -> None:
    # Given a config.json of a model outside the catalog (dense, multimodal-wrapped or mixture-of-experts)
    # When it is read
    architecture = Architecture.from_hf_config(config(fixture))
    # Then every expert counts towards the total (memory) and only the routed ones towards the active (compute),
    # within the rounding of the published figures (active counts are quoted to two digits, and conventions differ
    # on whether the embedding lookup counts: Qwen3-30B-A3B's is 3.35B here)
    assert architecture.parameters() == pytest.approx(total, rel=0.005)
    assert architecture.active_parameters() == pytest.approx(active, rel=0.02)


def test_gemma3_multimodal_config_sizes_its_language_model_from_text_config_and_class_defaults() -> None:
    # Given gemma-3-4b-it's config.json, whose text_config omits heads, head_dim and vocabulary (class defaults)
    architecture = Architecture.from_hf_config(config("gemma-3-4b-it"))
    # Then the defaults apply, as transformers applies them: 8 heads of 256, 4 KV heads, 262k tied vocabulary
    assert (architecture.heads, architecture.kv_heads, architecture.head_dim) == (8, 4, 256)
    assert (architecture.vocab_size, architecture.tied_embeddings) == (262_208, True)
    assert architecture.norms_per_layer == 4 and architecture.qk_norm


def test_moe_lora_targets_attention_not_the_experts() -> None:
    # Given Mixtral (transformers 5 keeps routed experts as 3-D parameters, not linear layers)
    architecture = Architecture.from_hf_config(config("Mixtral-8x7B-v0.1"))
    # Then all-linear LoRA adapts the four attention projections only, and the MLP width a token sees is two experts'
    assert len(architecture.layer_linears()) == 4
    assert architecture.active_intermediate_size == 2 * 14336


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"model_type": "deepseek_v3"}, "model_type"),
        ({"model_type": None}, "model_type"),
        ({"hidden_size": None}, "hidden_size"),
        ({"num_hidden_layers": "32"}, "num_hidden_layers"),
        ({"mlp_only_layers": [0, 1]}, "mlp_only_layers"),
        ({"num_experts_per_tok": 200}, "experts_per_token"),
    ],
)
def test_unsizable_config_is_refused_naming_the_key(changes: dict[str, Any], key: str) -> None:
    # Given a config.json the planner cannot count (unknown family, a missing or malformed size, mixed layers)
    doc = {**config("Qwen3-30B-A3B"), **changes}
    doc = {k: v for k, v in doc.items() if v is not None or k == "model_type"}
    # When it is read, Then the error names the key
    with pytest.raises(ModelConfigError) as raised:
        Architecture.from_hf_config(doc)
    assert raised.value.key == key
    assert key in str(raised.value)


def test_family_defaults_are_transformers_config_class_defaults() -> None:
    # Given the defaults the reader applies to keys a config.json omits
    transformers = pytest.importorskip("transformers")
    # Then each is what transformers' own config class would fill in (None: derived from heads / hidden size)
    for model_type, family in catalog._HF_FAMILIES.items():
        reference = transformers.AutoConfig.for_model(model_type)
        for key, expected in family.defaults.items():
            actual = getattr(reference, key, None)
            if expected is None:
                derived = {"num_key_value_heads": reference.num_attention_heads}.get(key)
                derived = derived or reference.hidden_size // reference.num_attention_heads
                assert actual in (None, derived), (model_type, key, actual)
            else:
                assert actual == expected, (model_type, key, actual)


def test_architecture_round_trips_through_its_dict() -> None:
    # Given an MoE architecture
    architecture = Architecture.from_hf_config(config("Qwen3-30B-A3B"))
    # When it travels as plain JSON (the execution input, the job spec) and is rebuilt
    rebuilt = catalog.resolve_model("Qwen/Qwen3-30B-A3B", None, json.loads(json.dumps(architecture.to_dict())))
    # Then nothing is lost
    assert rebuilt.architecture == architecture
    assert rebuilt.parameters == architecture.parameters()
    assert rebuilt.active_parameters == architecture.active_parameters()


def test_hub_id_without_architecture_is_guessed_from_params_billion_and_says_so() -> None:
    model = catalog.resolve_model("org/some-model", 13)
    assert model.sized_from is catalog.SizedFrom.PARAMS_BILLION
    assert model.parameters == 13_000_000_000
    assert model.active_parameters == model.parameters


def test_a_4bit_moe_model_keeps_its_routed_experts_in_16_bit() -> None:
    # Given Qwen3-30B-A3B sized from its config.json, and a dense model of the same size
    moe = catalog.resolve_model("Qwen/Qwen3-30B-A3B", architecture=Architecture.from_hf_config(config("Qwen3-30B-A3B")))
    dense = catalog.resolve_model("org/dense-30b", params_billion=moe.parameters / 1e9)

    # When QLoRA's weights are counted (bitsandbytes quantizes nn.Linear only; transformers 5.3 keeps routed
    # experts as 3-D parameters)
    def weights_gib(model: catalog.Model) -> float:
        workload = memory.Workload(model=model, approach="qlora", batch_size=1, seq_length=256)
        placement = memory.Placement(catalog.INSTANCES["ml.g6e.xlarge"])
        return memory.estimate(workload, placement, memory.Strategy.SINGLE).device.weights / 2**30

    # Then the experts (28.9B of its 30.5B) are 16-bit: ~54 GiB, where an all-4-bit count said ~16
    assert moe.architecture.routed_expert_parameters() > 0.9 * moe.parameters
    assert weights_gib(moe) > 50
    assert weights_gib(dense) < 20
