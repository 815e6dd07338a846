"""FSDP as the DLC's transformers 5.3.0 and accelerate 1.15.0 build it, for the study's jobs where Plan shards them.

Each job's hyperparameters come from Plan through the toolkit's argv; `build_sft_config` turns them into trl's
SFTConfig (transformers 5.3's `TrainingArguments._process_fsdp_args` computes the plugin arguments), and accelerate's
`FullyShardedDataParallelPlugin` is built from them as the Trainer builds it, with the environment train.py sets.
No GPU is needed: only the plugin's device lookup for `sync_module_states` is answered for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.lambdas import study_jobs
from tests.training.test_study_jobs import toolkit_argv
from training_code import fsdp, modeling, train
from training_code.config import SageMakerEnv, parse_hyperparameters

# The study's own plans shard nothing today (lean, single); on the instances its seed ran (7B full on 8 A10Gs, 20B LoRA
# on 8 A100s), Plan's planner chooses FSDP: those are the jobs whose plugin matters.
SHARDED_PLACEMENTS = [
    {"model": "llama2-7b", "approach": "full", "instance_type": "ml.g5.48xlarge"},
    {"model": "mistral-7b", "approach": "full", "instance_type": "ml.g5.48xlarge"},
    {"model": "gpt-neox-20b", "approach": "lora", "instance_type": "ml.p4d.24xlarge"},
]
FSDP_JOBS = [
    job for job in study_jobs({"experiments": SHARDED_PLACEMENTS}) if job["strategy"] in ("fsdp", "fsdp_offload")
]
# The decoder-layer class each study model's config instantiates (the FSDP unit), by its Hub model type.
MODEL_TYPES = {"llama2-7b": "llama", "mistral-7b": "mistral", "gpt-neox-20b": "gpt_neox"}
GPU_RUNTIME = modeling.Runtime(
    use_cuda=True, device="cuda:0", dtype=None, bf16=True, fp16=False, attn_implementation="flash_attention_2"
)
CPU_RUNTIME = modeling.Runtime(
    use_cuda=False, device="cpu", dtype=None, bf16=False, fp16=False, attn_implementation="sdpa"
)


def _meta_model_dir(tmp_path: Path, model_key: str) -> Path:
    """A folder with the default config of the model's architecture (7B Llama/Mistral, 20B GPT-NeoX shapes)."""
    from transformers import AutoConfig

    folder = tmp_path / model_key
    AutoConfig.for_model(MODEL_TYPES[model_key]).save_pretrained(folder)
    return folder


def _plugin(
    monkeypatch: pytest.MonkeyPatch, plugin_arguments: dict[str, Any], fsdp_config: dict[str, Any] | None = None
):  # -> FullyShardedDataParallelPlugin
    """The plugin as transformers 5.3's Trainer builds it, here on a CPU: `FullyShardedDataParallelPlugin(
    **args.fsdp_plugin_args)`, then (trainer.py, `create_accelerator_and_postprocess`) `limit_all_gathers` and
    `activation_checkpointing` copied from `fsdp_config` onto it."""
    import accelerate.utils.dataclasses as accelerate_dataclasses
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin

    monkeypatch.setattr(accelerate_dataclasses, "is_cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    plugin = FullyShardedDataParallelPlugin(**plugin_arguments)
    for name in ("limit_all_gathers", "activation_checkpointing"):
        setattr(plugin, name, (fsdp_config or {}).get(name, getattr(plugin, name)))
    return plugin


def test_plan_shards_the_two_7b_full_jobs_and_the_20b_lora_job_on_the_seeds_instances() -> None:
    assert sorted((job["model_key"], job["approach"], job["strategy"]) for job in FSDP_JOBS) == [
        ("gpt-neox-20b", "lora", "fsdp"),
        ("llama2-7b", "full", "fsdp"),
        ("mistral-7b", "full", "fsdp"),
    ]


@pytest.mark.parametrize("job", FSDP_JOBS, ids=lambda job: f"{job['model_key']}-{job['approach']}")
def test_each_sharded_study_job_gets_the_fsdp_plugin_the_training_code_states(
    job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch.distributed.fsdp import BackwardPrefetch, ShardingStrategy, StateDictType

    # Given the job's hyperparameters as train.py receives them
    model_dir = _meta_model_dir(tmp_path, job["model_key"])
    argv = toolkit_argv(job, model_dir, tmp_path / "checkpoints", "none")
    argv[argv.index("--strategy") + 1] = job["strategy"]  # toolkit_argv turns FSDP off for the CPU runs of the study
    config = parse_hyperparameters(argv)
    info = modeling.inspect_model(str(model_dir), token=None)
    settings = train.resolve_training(config, GPU_RUNTIME, info.num_parameters)
    # One process here: the plugin arguments do not depend on the world size (a CPU world of 8 would start gloo).
    env = SageMakerEnv(None, None, tmp_path / "model", tmp_path / "data", tmp_path)

    # When train.py builds its trainer arguments (with the environment it sets first) and the Trainer its plugin
    monkeypatch.delenv("FSDP_STATE_DICT_TYPE", raising=False)
    fsdp.apply_environment(monkeypatch_environ := {})
    for name, value in monkeypatch_environ.items():
        monkeypatch.setenv(name, value)
    args = train.build_sft_config(
        config,
        env,
        CPU_RUNTIME,  # SFTConfig refuses bf16 without a GPU here; the plugin arguments do not depend on it
        settings["learning_rate"],
        settings["gradient_checkpointing"],
        settings["batching"],
        info.layer_classes,
    )
    plugin = _plugin(monkeypatch, args.fsdp_plugin_args, args.fsdp_config)

    # Then the plugin is FSDP1, sharded checkpoints, both prefetches, limited all-gathers, no offload
    print(f"{job['model_key']}-{job['approach']}: plugin arguments {json.dumps(args.fsdp_plugin_args, sort_keys=True)}")
    assert plugin.fsdp_version == 1
    assert plugin.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert plugin.backward_prefetch == BackwardPrefetch.BACKWARD_PRE
    assert plugin.forward_prefetch is True
    assert plugin.limit_all_gathers is True
    assert plugin.use_orig_params is True and plugin.sync_module_states is True
    assert plugin.cpu_ram_efficient_loading is False  # 5.3's from_pretrained loads on every rank regardless
    assert plugin.cpu_offload.offload_params is False
    assert plugin.transformer_cls_names_to_wrap == info.layer_classes
    assert plugin.activation_checkpointing is settings["gradient_checkpointing"] is True  # 7B+ on GPUs
    assert args.gradient_checkpointing is False  # FSDP's own recomputation replaces the Trainer's


def test_offload_mode_offloads_parameters_and_keeps_every_other_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the two FSDP modes' trainer arguments
    sharded = fsdp.trainer_arguments("fsdp", ["LlamaDecoderLayer"], True)
    offloaded = fsdp.trainer_arguments("fsdp_offload", ["LlamaDecoderLayer"], True)

    # Then they differ only in the offload option
    assert offloaded["fsdp_config"] == sharded["fsdp_config"]
    assert offloaded["fsdp"].split() == [*sharded["fsdp"].split(), "offload"]
    with pytest.raises(ValueError, match="not one of"):
        fsdp.trainer_arguments("hybrid", ["LlamaDecoderLayer"], True)


def test_the_final_save_switches_a_sharded_plugin_to_a_full_state_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType

    # Given a plugin set up for sharded checkpoints (its sharded state-dict configs are set)
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    plugin = _plugin(monkeypatch, {"fsdp_version": 1, "sync_module_states": False})

    # When the final save switches it
    fsdp.use_full_state_dict(plugin)

    # Then the configs match the type (torch refuses FULL_STATE_DICT with a ShardedStateDictConfig)
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert isinstance(plugin.state_dict_config, FullStateDictConfig) and plugin.state_dict_config.rank0_only
