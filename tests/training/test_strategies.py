"""The `strategy` hyperparameter: what each strategy accepts, split's device map, and split/lean runs on the CPU."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.support.training import Job, run_main
from training_code import modeling
from training_code.config import (
    STRATEGIES,
    ConfigError,
    SageMakerEnv,
    effective_strategy,
    parse_hyperparameters,
    trainer_fsdp_option,
    validate,
)

GIB = 2**30


@pytest.mark.parametrize(
    ("strategy", "trainer_option"),
    [
        ("fsdp", "full_shard auto_wrap"),
        ("fsdp_offload", "full_shard auto_wrap offload"),
        ("single", ""),
        ("ddp", ""),
        ("split", ""),
        ("lean", ""),
    ],
)
def test_each_strategy_maps_to_the_trainers_fsdp_option(strategy: str, trainer_option: str) -> None:
    config = parse_hyperparameters(["--model_id", "m", "--strategy", strategy.upper()])

    assert config.strategy == strategy
    assert trainer_fsdp_option(config.strategy) == trainer_option
    assert config.uses_fsdp is bool(trainer_option)


def test_the_fsdp_token_strategy_replaced_is_refused_as_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        parse_hyperparameters(["--model_id", "m", "--fsdp", "full_shard"])


def _env(job: Job, *, world_size: int = 1, torchrun: bool = False) -> SageMakerEnv:
    environ = dict(job.environ)
    if torchrun:
        environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE=str(world_size))
    return SageMakerEnv.from_environ(environ)


@pytest.mark.parametrize(
    ("hyperparameters", "world_size", "expected"),
    [
        ({"strategy": "pipeline"}, 1, "strategy='pipeline' is not one of: " + ", ".join(STRATEGIES)),
        ({"approach": "lora", "strategy": "lean"}, 1, "strategy=lean is not supported with approach=lora"),
        ({"approach": "qlora", "strategy": "fsdp"}, 2, "strategy=fsdp is not supported with approach=qlora"),
        ({"approach": "qlora", "strategy": "fsdp_offload"}, 2, "not supported with approach=qlora"),
        ({"approach": "baseline", "strategy": "lean"}, 1, "strategy=lean is not supported with approach=baseline"),
        ({"approach": "full", "strategy": "lean"}, 2, "strategy=lean runs ONE process, but 2 were launched"),
        ({"approach": "lora", "strategy": "split"}, 4, "strategy=split runs ONE process, but 4 were launched"),
        (
            {"approach": "full", "strategy": "lean", "gradient_accumulation_steps": 4},
            1,
            "gradient_accumulation_steps=4 is not supported with strategy=lean",
        ),
    ],
)
def test_a_strategy_the_job_cannot_run_is_refused_with_the_reason(
    hyperparameters: dict[str, object], world_size: int, expected: str, make_job
) -> None:
    # Given a job folder and a process launched `world_size` times
    job = make_job()
    argv = [item for name, value in hyperparameters.items() for item in (f"--{name}", str(value))]
    config = parse_hyperparameters(["--model_id", "m", *argv])

    # When the configuration is validated, Then it names the hyperparameter and why
    with pytest.raises(ConfigError, match="hyperparameter") as error:
        validate(config, _env(job, world_size=world_size, torchrun=world_size > 1))
    assert expected in str(error.value)


def test_fsdp_started_without_torchrun_is_refused_even_with_gpus(monkeypatch: pytest.MonkeyPatch, make_job) -> None:
    # Given a GPU machine (pretended) and a plain `python train.py` (no LOCAL_RANK)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = parse_hyperparameters(["--model_id", "m", "--strategy", "fsdp"])

    # Then FSDP is refused before the Trainer would ("Using fsdp only works in distributed training")
    with pytest.raises(ConfigError, match="strategy=fsdp needs torchrun"):
        validate(config, _env(make_job()))


@pytest.mark.parametrize(
    ("strategy", "approach"), [("single", "qlora"), ("ddp", "qlora"), ("split", "qlora"), ("lean", "full")]
)
def test_the_strategies_the_plans_need_are_accepted(strategy: str, approach: str, make_job) -> None:
    config = parse_hyperparameters(["--model_id", "m", "--approach", approach, "--strategy", strategy])

    validate(config, _env(make_job()))  # no error


@pytest.mark.parametrize(("world_size", "expected"), [(1, "single"), (4, "ddp")])
def test_ddp_with_one_process_trains_as_single(world_size: int, expected: str, make_job) -> None:
    config = parse_hyperparameters(["--model_id", "m", "--strategy", "ddp"])

    assert effective_strategy(config, _env(make_job(), world_size=world_size, torchrun=True)) == expected


def _meta_llama(layers: int) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
    )
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def test_split_balances_the_decoder_layers_over_the_gpus_and_places_every_module() -> None:
    # Given a 16-layer model on the meta device and four GPUs (fake: sizes only) with room for all of it
    model = _meta_llama(layers=16)
    max_memory = modeling.split_max_memory([24 * GIB] * 4)

    # When split's device map is built
    device_map = modeling.balanced_device_map(model, max_memory, torch.bfloat16)

    # Then every layer is on a GPU, none is split, and each GPU holds a quarter of them (±1)
    layers = {name: device for name, device in device_map.items() if name.startswith("model.layers.")}
    assert sorted(int(name.split(".")[2]) for name in layers) == list(range(16))
    per_gpu = Counter(layers.values())
    assert set(per_gpu) == {0, 1, 2, 3}
    assert max(per_gpu.values()) - min(per_gpu.values()) <= 1
    assert not {"cpu", "disk"} & set(device_map.values())
    # and every parameter of the model is covered by one entry of the map
    for name, _ in model.named_parameters():
        assert any(name == prefix or name.startswith(prefix + ".") for prefix in device_map), name


def test_split_leaves_the_training_headroom_free_on_every_gpu() -> None:
    assert modeling.split_max_memory([24 * GIB, 10 * GIB, 2 * GIB]) == {0: 20 * GIB, 1: 6 * GIB, 2: 0}


def _run(job: Job, model: Path, bertscore_model: str, **hyperparameters: object):
    argv = job.argv(model, max_steps=3, eval_samples=4, bertscore_model=bertscore_model, **hyperparameters)
    return run_main(job, argv)


def test_split_trains_and_evaluates_on_the_cpu_through_the_device_map_path(
    tiny_models: dict[str, Path], bertscore_model: str, make_job, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a LoRA job with strategy=split on a machine without GPUs (the CPU is the one device of the map)
    job = make_job()
    maps: list[dict] = []
    build = modeling.split_device_map
    monkeypatch.setattr(
        modeling, "split_device_map", lambda *args: maps.append(build(*args)) or maps[-1]
    )  # records what the real function returns

    # When it runs
    result = _run(job, tiny_models["llama"], bertscore_model, approach="lora", strategy="split")

    # Then the model was placed by split's device map (everything on the CPU here) and trained and evaluated
    assert result.exit_code == 0, job.failure()
    assert len(maps) == 1 and set(maps[0].values()) == {"cpu"}
    assert {"train_loss", "eval_intent_accuracy"} <= set(job.metrics())


def test_lean_trains_through_the_trainer_and_resumes_its_8bit_state_from_a_checkpoint(
    tiny_models: dict[str, Path], bertscore_model: str, make_job
) -> None:
    # Given a lean full fine-tuning job whose clock makes every step due for a checkpoint
    job = make_job()
    ticks = iter(range(0, 10**6, 100))
    argv = job.argv(
        tiny_models["llama"],
        approach="full",
        strategy="lean",
        max_steps=4,
        eval_samples=0,
        save_interval_seconds=60,
    )
    first = run_main(job, argv, clock=lambda: next(ticks))
    assert first.exit_code == 0, job.failure()
    checkpoint = job.checkpoint_dir / "checkpoint-3"
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"]
    assert any(entry["exp_avg"].dtype == torch.uint8 for entry in state.values())  # 8-bit moments were saved
    saved_weights = json.loads((job.model_dir / "config.json").read_text())
    assert saved_weights.get("dtype", saved_weights.get("torch_dtype")) == "bfloat16"

    # When the last checkpoint is lost and the job restarts (as after a spot interruption)
    import shutil

    shutil.rmtree(job.checkpoint_dir / "checkpoint-4")
    shutil.rmtree(job.model_dir)
    second = run_main(job, argv, clock=lambda: next(ticks))

    # Then it resumes from step 3 with lean's optimizer state and finishes the last step
    assert second.exit_code == 0, job.failure()
    assert (job.checkpoint_dir / "checkpoint-4").is_dir()
    assert job.training_config()["global_step"] == 4
