"""One rank of a sharded tiny job on CPU (gloo), started by torchrun from tests/training/test_fsdp_cpu.py.

Why not train.py: accelerate 1.15 turns FSDP on only for GPU-type worlds (`AcceleratorState` sets
DistributedType.FSDP for MULTI_GPU/NPU/XPU/..., never MULTI_CPU), so a CPU Trainer with FSDP arguments silently
trains DDP. torch 2.13 itself runs FSDP1 on CPU with gloo. So this worker does what the Trainer does under FSDP with
our settings: the plugin transformers 5.3 builds from `training_code.fsdp.trainer_arguments` (with the environment
`apply_environment` sets), FSDP1 wrapping from that plugin, and accelerate's `save_fsdp_model` /
`save_fsdp_optimizer` / `load_fsdp_*` (what `Trainer._save_checkpoint` and its resume call).

argv: model_dir checkpoint_dir result.json. It trains one step, saves a sharded checkpoint, trains a second step,
then builds a fresh model and optimizer, resumes from the checkpoint and trains the second step again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    """Run the job on this rank; rank 0 writes the losses, parameter count and checkpoint files to result.json."""
    import torch
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import load_fsdp_model, load_fsdp_optimizer, save_fsdp_model, save_fsdp_optimizer
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from transformers import AutoModelForCausalLM, TrainingArguments

    from training_code import fsdp

    model_dir, checkpoint_dir, result_path = (Path(argument) for argument in sys.argv[1:4])
    state = PartialState(backend="gloo")  # accelerate's logging in the save functions needs its state
    fsdp.apply_environment()
    settings = fsdp.trainer_arguments("fsdp", ["LlamaDecoderLayer"], activation_checkpointing=False)
    # sync_module_states makes accelerate look for a GPU to broadcast from; every rank loads the same weights here.
    settings["fsdp_config"]["sync_module_states"] = False
    arguments = TrainingArguments(output_dir=str(checkpoint_dir), use_cpu=True, report_to="none", **settings)
    plugin = FullyShardedDataParallelPlugin(**arguments.fsdp_plugin_args)

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        parameters = sum(parameter.numel() for parameter in model.parameters())  # before sharding divides them
        plugin.set_auto_wrap_policy(model)
        wrapped = FSDP(
            model,
            sharding_strategy=plugin.sharding_strategy,
            auto_wrap_policy=plugin.auto_wrap_policy,
            backward_prefetch=plugin.backward_prefetch,
            forward_prefetch=plugin.forward_prefetch,
            limit_all_gathers=plugin.limit_all_gathers,
            use_orig_params=plugin.use_orig_params,
            device_id=torch.device("cpu"),
        )
        return wrapped, torch.optim.AdamW(wrapped.parameters(), lr=1e-3), parameters

    batch = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(state.process_index))

    def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    model, optimizer, parameters = build()
    losses = [train_step(model, optimizer)]
    save_fsdp_model(plugin, state, model, checkpoint_dir)
    save_fsdp_optimizer(plugin, state, optimizer, model, checkpoint_dir)
    dist.barrier()
    losses.append(train_step(model, optimizer))

    resumed, resumed_optimizer, _ = build()
    load_fsdp_model(plugin, state, resumed, checkpoint_dir)
    load_fsdp_optimizer(plugin, state, resumed_optimizer, resumed, checkpoint_dir)
    losses.append(train_step(resumed, resumed_optimizer))

    if state.is_main_process:
        files = {
            path.relative_to(checkpoint_dir).as_posix(): path.stat().st_size
            for path in sorted(checkpoint_dir.rglob("*"))
            if path.is_file()
        }
        result = {
            "world_size": state.num_processes,
            "state_dict_type": str(plugin.state_dict_type),
            "parameters": parameters,
            "losses": losses,
            "files": files,
        }
        result_path.write_text(json.dumps(result, indent=2))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
