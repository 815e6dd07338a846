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
        # The planner's choices (lambdas/estimate.cheapest_plan; test_lambda_memory checks them against it)
        ("llama2-7b", "qlora", "ml.g6.xlarge", 8),
        ("mistral-7b", "lora", "ml.g6.2xlarge", 8),
        ("mistral-7b", "full", "ml.g6e.xlarge", 8),
        ("gpt-neox-20b", "lora", "ml.g6e.2xlarge", 8),
        ("gpt-neox-20b", "qlora", "ml.g6.xlarge", 8),
    ],
)
def test_defaults_follow_the_study(model: str, approach: str, instance_type: str, batch_size: int) -> None:
    defaults = catalog.job_defaults(catalog.MODELS[model].params_billion, approach)
    assert (defaults.instance_type, defaults.batch_size) == (instance_type, batch_size)


def test_every_default_instance_is_in_the_catalog_and_has_a_gpu() -> None:
    for (size, approach), defaults in catalog.DEFAULTS.items():
        assert catalog.INSTANCES[defaults.instance_type].has_gpu, (size, approach)


def test_llama2_and_mistral_are_gated_and_neox_is_not() -> None:
    # Mistral-7B-v0.1 is gated on the Hub since 2024: Plan's missing-token refusal must guard its jobs too
    assert catalog.MODELS["llama2-7b"].gated and catalog.MODELS["mistral-7b"].gated
    assert not catalog.MODELS["gpt-neox-20b"].gated


def test_llama_and_mistral_models_are_gated_and_qwen3_and_neox_are_not() -> None:
    # Given the catalog's models: Meta's community licences and Mistral's contact form gate their Hub repos,
    # Qwen3 (Apache 2.0) and GPT-NeoX are open
    gated = {key for key, model in catalog.MODELS.items() if model.gated}
    # Then exactly those need the HF token
    assert gated == {"llama2-7b", "mistral-7b", "llama3.1-8b", "llama3.2-3b", "mistral-7b-v0.3"}


def test_an_explicit_head_dim_widens_q_and_o_and_the_kv_cache_but_not_the_mlp() -> None:
    # Given Qwen3-4B's shape: 32 heads of 128 (config.json's head_dim) on a 2560-wide hidden state
    shape = catalog.MODELS["qwen3-4b"].architecture
    # Then Q and the attention output are 4096 wide, K and V 8 x 128, not hidden / heads = 80 per head
    assert (shape.head_dim, shape.q_dim, shape.kv_dim) == (128, 4096, 1024)
    q_proj, k_proj, v_proj, o_proj, *mlp = shape.layer_linears()
    assert (q_proj, k_proj, v_proj, o_proj) == ((2560, 4096), (2560, 1024), (2560, 1024), (4096, 2560))
    assert mlp == [(2560, 9728), (2560, 9728), (9728, 2560)]
    # and without head_dim the width is hidden / heads, as for every older catalog model
    assert catalog.Architecture(4096, 32, 32, 8, 14336, 32_000).head_dim == 128
    # and the q/k norms add one head_dim-wide weight each per layer
    assert (
        shape.layer_parameters()
        - catalog.Architecture(
            2560, 36, 32, 8, 9728, 151_936, tied_embeddings=True, explicit_head_dim=128
        ).layer_parameters()
        == 2 * 128
    )


def test_v100_instances_are_refused_with_the_reason_and_never_offered() -> None:
    # Given the p3 family (V100, compute capability 7.0) and the cu130 training image, which has no kernels for it
    reason = catalog.unsupported_reason("ml.p3.2xlarge")
    # Then the rule names why, and no instance Plan, the planner or a remedy may choose is of that family
    assert reason is not None and "V100" in reason and "CUDA 13" in reason
    assert catalog.unsupported_reason("ml.p3dn.24xlarge") == reason
    assert "ml.p3.2xlarge" not in catalog.trainable_instances()
    assert all(catalog.unsupported_reason(name) is None for name in catalog.trainable_instances())
    for candidates in catalog.FALLBACK_INSTANCES.values():
        assert all(name in catalog.trainable_instances() for name in candidates)


def test_hub_id_resolves_with_the_given_size_class() -> None:
    # Given a Hub id that is not a catalog key, with and without a size
    small = catalog.resolve_model("Qwen/Qwen2.5-1.5B")
    big = catalog.resolve_model("tiiuae/falcon-40b", params_billion=40)
    # Then it is its own model id, 7B by default, and the size picks the defaults bucket
    assert small.hf_id == "Qwen/Qwen2.5-1.5B" and small.params_billion == catalog.DEFAULT_PARAMS_BILLION
    assert catalog.size_class(big.params_billion) == "70b"


@pytest.mark.parametrize(
    ("params_billion", "size_class"),
    [(0.1, "2b"), (2, "2b"), (2.1, "7b"), (8.5, "7b"), (8.6, "20b"), (30, "20b"), (30.1, "70b"), (405, "70b")],
)
def test_size_classes_cover_every_size_up_to_their_bounds(params_billion: float, size_class: str) -> None:
    assert catalog.size_class(params_billion) == size_class


@pytest.mark.parametrize(
    ("model", "parameters", "lora_r16"),
    [
        # Published counts: the models' own parameter counts (GPT-NeoX-20B paper, Black et al. 2022: 20,554,567,680;
        # Llama-2-7B and Mistral-7B as transformers counts them) and PEFT's print_trainable_parameters for r=16 on
        # all linear layers ("trainable params: 39,976,960 || all params: 6,778,392,576" for Llama-2-7B;
        # 41,943,040 for Mistral-7B's grouped-query shape).
        ("llama2-7b", 6_738_415_616, 39_976_960),
        ("mistral-7b", 7_241_732_096, 41_943_040),
        ("gpt-neox-20b", 20_554_567_680, 69_206_016),
        # Today's models: the safetensors totals on their Hub pages, exact (no tolerance needed: every norm, the
        # tied embedding and Qwen3's q/k norms are counted; Llama-3.2's RoPE frequency buffer is not a parameter),
        # and PEFT's trainable counts for r=16 all-linear as printed by users (Qwen3-4B 33,030,144; Qwen3-8B
        # 43,646,976; Llama-3.1-8B 41,943,040; Llama-3.2-3B 24,313,856).
        ("llama3.1-8b", 8_030_261_248, 41_943_040),
        ("llama3.2-3b", 3_212_749_824, 24_313_856),
        ("mistral-7b-v0.3", 7_248_023_552, 41_943_040),
        ("qwen3-8b", 8_190_735_360, 43_646_976),
        ("qwen3-4b", 4_022_468_096, 33_030_144),
    ],
)
def test_catalog_shapes_give_the_published_parameter_counts(model: str, parameters: int, lora_r16: int) -> None:
    shape = catalog.MODELS[model].architecture
    assert catalog.MODELS[model].parameters == shape.parameters() == parameters
    assert shape.lora_parameters(16) == lora_r16


def test_a_hub_model_gets_a_guessed_shape_of_its_size() -> None:
    model = catalog.resolve_model("org/seventy", params_billion=70)
    shape = model.architecture
    assert model.parameters == 70_000_000_000
    assert shape.parameters() == pytest.approx(70e9, rel=0.1)  # Llama-shaped, same order of size
    assert shape.kv_heads == shape.heads  # no grouped-query saving assumed: the KV cache errs big
    tiny = catalog.resolve_model("demo/tiny", params_billion=0.00025)
    assert 0 < tiny.embedding_parameters <= tiny.parameters // 2


def test_instances_know_their_host_memory_and_usable_gpu_memory() -> None:
    expected_host = {"xlarge": 16, "2xlarge": 32, "4xlarge": 64, "8xlarge": 128, "12xlarge": 192, "16xlarge": 256}
    expected_host |= {"24xlarge": 384, "48xlarge": 768}
    for family in ("g5", "g6"):
        for size, gib in expected_host.items():
            name = f"ml.{family}.{size}"
            if name in catalog.INSTANCES:
                assert catalog.INSTANCES[name].host_memory_gib == gib, name
    others = {"ml.p3.2xlarge": 61, "ml.p4d.24xlarge": 1152, "ml.p5.48xlarge": 2048, "ml.m5.xlarge": 16}
    for name, gib in others.items():
        assert catalog.INSTANCES[name].host_memory_gib == gib
    # A10G: "24 GB" on the box, 23,028 MiB reported by the driver (ECC and driver reservations)
    a10g = catalog.INSTANCES["ml.g5.xlarge"].gpu
    assert a10g is not None and a10g.nominal_gb == 24 and round(a10g.usable_gib, 1) == 22.5
    for instance in catalog.INSTANCES.values():
        assert (instance.gpu is None) == (instance.gpus == 0)
        # HBM ECC costs no capacity (A100: 40,960 MiB of "40GB"), GDDR ECC and the driver do (A10G, L4, V100)
        assert instance.gpu is None or instance.gpu.usable_gib <= instance.gpu.nominal_gb


def test_unknown_model_that_is_not_a_hub_id_is_refused() -> None:
    with pytest.raises(KeyError):
        catalog.resolve_model("llama-7b")


def test_quota_names_follow_service_quotas_wording() -> None:
    assert catalog.training_quota_name("ml.g5.xlarge", spot=True) == "ml.g5.xlarge for spot training job usage"
    assert catalog.training_quota_name("ml.g5.xlarge", spot=False) == "ml.g5.xlarge for training job usage"


@pytest.mark.parametrize("spot", [True, False])
def test_every_training_quota_name_parses_back_to_its_instance_type_and_pricing_mode(spot: bool) -> None:
    # Given every instance type the catalog can train on, in either pricing mode
    for instance_type in catalog.INSTANCES:
        # When its quota name is built and read back
        name = catalog.training_quota_name(instance_type, spot)

        # Then the parse gives the same instance type and pricing mode
        assert catalog.parse_training_quota_name(name) == (instance_type, spot), name


@pytest.mark.parametrize(
    "name",
    [
        "Longest run time for a training job in seconds",
        "ml.g5.xlarge for endpoint usage",
        "ml.g5.xlarge for spot training job usage (extra)",
    ],
)
def test_a_quota_that_is_not_a_training_instance_quota_does_not_parse(name: str) -> None:
    assert catalog.parse_training_quota_name(name) is None


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


def test_the_study_matrix_trains_and_baselines_are_an_approach_of_their_own() -> None:
    assert (*catalog.TRAINING_APPROACHES, "baseline") == catalog.APPROACHES
    assert all(approach != catalog.BASELINE for _, approach in catalog.STUDY_MATRIX)


@pytest.mark.parametrize(
    ("model", "instance_type"),
    [("llama2-7b", "ml.g6.xlarge"), ("mistral-7b", "ml.g6.xlarge"), ("gpt-neox-20b", "ml.g6.12xlarge")],
)
def test_baseline_defaults_are_short_single_instance_inference_jobs(model: str, instance_type: str) -> None:
    defaults = catalog.job_defaults(catalog.MODELS[model].params_billion, catalog.BASELINE)
    assert (defaults.instance_type, defaults.instance_count, defaults.max_runtime_hours) == (instance_type, 1, 1)
    assert defaults.learning_rate is None  # nothing trains


def test_only_training_settings_are_dropped_for_a_baseline() -> None:
    assert not catalog.applies("lora_r", "baseline") and catalog.applies("lora_r", "lora")
    assert all(catalog.applies(name, "baseline") for name in ("eval_samples", "prompt_style", "decoding", "seed"))
