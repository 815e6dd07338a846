"""Hyperparameters as SageMaker passes them, and bad ones failing clearly before any model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import REPO_ROOT, run_main
from training_code import config as config_module
from training_code import modeling
from training_code.config import ConfigError, SageMakerEnv, TrainConfig, parse_hyperparameters, resolve_learning_rate


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
            "--fsdp", "true",
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
    assert config.fsdp == "full_shard auto_wrap"


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
        ({"approach": "qlora", "fsdp": "true"}, "fsdp is not supported with approach=qlora"),
        ({"approach": "qlora", "lora_modules_to_save": "lm_head"}, "lora_modules_to_save is not supported"),
        ({"lora_dropout": "1.5"}, "lora_dropout=1.5 must be in [0, 1)"),
        ({"max_steps": "0"}, "max_steps=0 must be -1 (epochs decide) or >= 1"),
        ({"decoding": "beam"}, "decoding='beam' is not one of: free, constrained"),
        ({"fsdp": "full_shard auto_wrap"}, "fsdp='full_shard auto_wrap' needs CUDA GPUs"),
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
