"""Hyperparameters as SageMaker passes them, and bad ones failing clearly before any model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.training import REPO_ROOT, run_main
from training_code import config as config_module
from training_code import modeling
from training_code.config import (
    ConfigError,
    SageMakerEnv,
    TrainConfig,
    parse_hyperparameters,
    resolve_learning_rate,
)

# The hyperparameter names Launch sends (the wave-2 contract between Launch and train.py).
CONTRACT_HYPERPARAMETERS = (
    "model_id",
    "approach",
    "epochs",
    "per_device_batch_size",
    "learning_rate",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "max_seq_length",
    "eval_samples",
    "seed",
    "merge_adapter",
    "checkpoint_dir",
    "hf_token_secret_arn",
    "max_steps",
    "prompt_style",
    "decoding",
    "strategy",
    "save_interval_seconds",
    "warmup_ratio",
    "eval_batch_size",
)


def test_toolkit_style_values_are_decoded() -> None:
    config = parse_hyperparameters(
        [
            "--model_id", "meta-llama/Llama-2-7b-hf",
            "--approach", "QLoRA",
            "--epochs", "2",
            "--learning_rate", "0.0002",
            "--merge_adapter", "True",
            "--per_device_batch_size=4",
            "--max_steps", "1e2",
            "--hf_token_secret_arn", "None",
            "--strategy", "FSDP",
            "--sagemaker_program", "train.py",
            "--sagemaker_submit_directory", "s3://bucket/code.tar.gz",
        ]
    )  # fmt: skip

    assert config.approach == "qlora"
    assert config.epochs == 2.0
    assert config.learning_rate == pytest.approx(2e-4)
    assert config.merge_adapter is True
    assert config.per_device_batch_size == 4
    assert config.max_steps == 100
    assert config.hf_token_secret_arn is None
    assert config.strategy == "fsdp"


def test_every_hyperparameter_launch_sends_is_a_train_config_field() -> None:
    import dataclasses

    assert set(CONTRACT_HYPERPARAMETERS) <= {field.name for field in dataclasses.fields(TrainConfig)}


def test_defaults_are_compact_prompts_auto_length_constrained_decoding_and_time_based_saves() -> None:
    config = parse_hyperparameters(["--model_id", "m"])

    assert config.prompt_style == "compact"
    assert config.max_seq_length is None  # auto
    assert config.decoding == "constrained"
    assert config.save_interval_seconds == 1800
    assert config.warmup_ratio == 0.03
    assert config.eval_batch_size == 8
    assert config.strategy == "single"


@pytest.mark.parametrize(("text", "expected"), [("auto", None), ("AUTO", None), ("512", 512), ("1e3", 1000)])
def test_max_seq_length_is_auto_or_a_number(text: str, expected: int | None) -> None:
    assert parse_hyperparameters(["--model_id", "m", "--max_seq_length", text]).max_seq_length == expected


@pytest.mark.parametrize(
    ("capability", "flash_installed", "expected"),
    [
        ((8, 0), True, "flash_attention_2"),  # A100
        ((8, 6), True, "flash_attention_2"),  # A10G
        ((9, 0), True, "flash_attention_2"),  # H100
        ((7, 5), True, "sdpa"),  # T4: flash_attn installed but its kernels need sm80+
        ((8, 0), False, "sdpa"),
        (None, True, "sdpa"),  # CPU
    ],
)
def test_flash_attention_only_where_the_gpu_supports_it(
    capability: tuple[int, int] | None, flash_installed: bool, expected: str
) -> None:
    assert modeling.choose_attention(capability, flash_installed) == expected


def test_trainer_arguments_warm_up_the_learning_rate_and_leave_saving_to_the_checkpoint_callback(
    tmp_path: Path,
) -> None:
    from training_code.train import build_sft_config

    config = TrainConfig("m", checkpoint_dir=str(tmp_path), warmup_ratio=0.05)
    env = SageMakerEnv.from_environ({})
    args = build_sft_config(config, env, modeling.detect_runtime(0), 2e-4, False, "length_grouped", [])

    assert args.warmup_steps == 0.05  # below 1: a share of the total steps
    assert args.get_warmup_steps(1000) == 50
    assert args.save_strategy == "no"


@pytest.mark.parametrize("text", ["true", "1", "True", "yes"])
def test_booleans_arrive_in_any_toolkit_spelling(text: str) -> None:
    assert parse_hyperparameters(["--model_id", "m", "--merge_adapter", text]).merge_adapter is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model_id", "m", "--lerning_rate", "1e-4"], "unknown hyperparameter(s): lerning_rate"),
        (["--model_id", "m", "--epochs", "two"], "hyperparameter epochs='two' is not a number"),
        (["--model_id", "m", "--merge_adapter", "maybe"], "merge_adapter='maybe' is not a boolean"),
        (["--model_id", "m", "--lora_r", "8.5"], "lora_r='8.5' is not an integer"),
        (["--approach", "lora"], "model_id is required"),
        (["--model_id"], "model_id has no value"),
    ],
)
def test_malformed_hyperparameters_are_rejected_by_name(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_hyperparameters(argv)


def test_learning_rate_auto_rule_follows_approach_and_model_size() -> None:
    def rate(approach: str, parameters: int, learning_rate: float | None = None) -> float:
        return resolve_learning_rate(TrainConfig("m", approach=approach, learning_rate=learning_rate), parameters)

    assert rate("full", 7_000_000_000) == 2e-5
    assert rate("lora", 7_000_000_000) == 2e-4
    assert rate("qlora", 13_000_000_000) == 2e-4
    assert rate("lora", 20_000_000_000) == 1e-4
    assert rate("full", 250_000) == 3e-3  # tiny test/demo models
    assert rate("lora", 7_000_000_000, learning_rate=1e-5) == 1e-5  # an explicit rate wins


@pytest.fixture
def refuse_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load a tokenizer or model fails the test: validation must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded before the configuration was validated")

    for name in ("load_tokenizer", "load_model", "inspect_model"):
        monkeypatch.setattr(modeling, name, forbidden)


@pytest.mark.usefixtures("refuse_model_loading")
@pytest.mark.parametrize(
    ("hyperparameters", "expected"),
    [
        ({"approach": "prefix"}, "hyperparameter approach='prefix' is not one of: full, lora, qlora"),
        ({"approach": "qlora", "strategy": "fsdp"}, "strategy=fsdp is not supported with approach=qlora"),
        ({"approach": "qlora", "lora_modules_to_save": "lm_head"}, "lora_modules_to_save is not supported"),
        ({"approach": "baseline", "prompt_style": "compact"}, "prompt_style='compact' is not supported"),
        ({"approach": "baseline", "eval_samples": "0"}, "eval_samples=0 leaves approach=baseline nothing to do"),
        ({"approach": "baseline", "strategy": "fsdp"}, "strategy=fsdp is not supported with approach=baseline"),
        ({"lora_dropout": "1.5"}, "lora_dropout=1.5 must be in [0, 1)"),
        ({"max_steps": "0"}, "max_steps=0 must be -1 (epochs decide) or >= 1"),
        ({"decoding": "beam"}, "decoding='beam' is not one of: free, constrained"),
        ({"strategy": "fsdp"}, "strategy=fsdp needs CUDA GPUs"),
        ({"prompt_style": "verbose"}, "prompt_style='verbose' is not one of: compact, listed"),
        ({"max_seq_length": "8"}, "max_seq_length=8 must be >= 16, or auto"),
        ({"save_interval_seconds": "30"}, "save_interval_seconds=30 must be >= 60"),
        ({"save_total_limit": "1"}, "save_total_limit=1 must be >= 2"),
        ({"warmup_ratio": "0.5"}, "warmup_ratio=0.5 must be in [0, 0.5)"),
        ({"eval_batch_size": "0"}, "eval_batch_size=0 must be >= 1"),
    ],
)
def test_bad_hyperparameters_fail_with_a_clear_reason_before_any_model_loads(
    hyperparameters: dict[str, str], expected: str, tiny_models: dict[str, Path], make_job
) -> None:
    job = make_job()

    result = run_main(job, job.argv(tiny_models["llama"], **hyperparameters))

    assert result.exit_code == 1
    failure = (job.output_dir / "failure").read_text()
    assert failure.startswith("ConfigError: ")
    assert expected in failure
    assert not job.model_dir.exists()


@pytest.mark.usefixtures("refuse_model_loading")
def test_qlora_where_bitsandbytes_cannot_quantize_fails_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], make_job
) -> None:
    monkeypatch.setattr(config_module, "qlora_support_problem", lambda: "bitsandbytes is not installed")
    job = make_job()

    result = run_main(job, job.argv(tiny_models["llama"], approach="qlora"))

    assert result.exit_code == 1
    assert (job.output_dir / "failure").read_text() == (
        "ConfigError: hyperparameter approach=qlora is not supported on this machine: bitsandbytes is not installed"
    )


@pytest.mark.usefixtures("refuse_model_loading")
@pytest.mark.parametrize("channel", ["train", "test"])
def test_a_missing_channel_fails_before_any_model_loads(channel: str, tiny_models: dict[str, Path], make_job) -> None:
    job = make_job()
    for path in (job.root / "input" / channel).iterdir():
        path.unlink()

    result = run_main(job, job.argv(tiny_models["llama"]))

    assert result.exit_code == 1
    assert f"input channel '{channel}' has no *.jsonl files" in (job.output_dir / "failure").read_text()


def test_an_unset_channel_variable_is_named(tmp_path: Path) -> None:
    env = SageMakerEnv.from_environ({"SM_OUTPUT_DIR": str(tmp_path)})

    with pytest.raises(ConfigError, match="input channel 'train' is missing: SM_CHANNEL_TRAIN is not set"):
        config_module.validate(TrainConfig("m"), env)


def test_sagemaker_defaults_apply_without_environment() -> None:
    env = SageMakerEnv.from_environ({})

    assert env.model_dir == Path("/opt/ml/model")
    assert env.output_dir == Path("/opt/ml/output")
    assert env.output_data_dir == Path("/opt/ml/output/data")
    assert (env.rank, env.world_size, env.is_main) == (0, 1, True)


def test_a_failure_reason_is_cut_to_sagemakers_limit(make_job, tiny_models: dict[str, Path]) -> None:
    job = make_job()

    result = run_main(job, job.argv(tiny_models["llama"], approach="x" * 3000))

    assert result.exit_code == 1
    assert len((job.output_dir / "failure").read_text()) == 1024


def test_every_hyperparameter_is_documented() -> None:
    import dataclasses
    import re

    documented = set(re.findall(r"^\| `(\w+)` \|", (REPO_ROOT / "docs" / "training.md").read_text(), re.MULTILINE))

    assert {field.name for field in dataclasses.fields(TrainConfig)} <= documented


@pytest.mark.parametrize(
    ("package_source", "expected"),
    [
        ("raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')", "sdpa"),
        ("raise OSError('libcudart.so.12: cannot open shared object file')", "sdpa"),
        ("", "flash_attention_2"),
    ],
    ids=["built-for-another-torch", "missing-cuda-library", "imports"],
)
def test_flash_attention_is_chosen_only_when_the_package_imports(
    package_source: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an Ampere GPU and a flash_attn package that the import system finds, which may fail to load
    import importlib
    import sys

    import torch

    (tmp_path / "flash_attn").mkdir()
    (tmp_path / "flash_attn" / "__init__.py").write_text(package_source + "\n")
    # sys.path by hand: pytest's syspath_prepend calls pkg_resources, which another test's imports may have left as a
    # bare namespace package in this process
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "flash_attn", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (8, 6))

    # When the runtime is detected
    runtime = modeling.detect_runtime(0)

    # Then FlashAttention 2 only if the package actually imported
    assert runtime.attn_implementation == expected
