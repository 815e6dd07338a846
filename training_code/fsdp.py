"""FSDP as the DLC's transformers 5.3.0 and accelerate 1.15.0 build it: the one place its settings are decided.

transformers 5.3 turns `fsdp` + `fsdp_config` into accelerate's `FullyShardedDataParallelPlugin` arguments
(`TrainingArguments._process_fsdp_args`) and passes on only some keys; what it drops has to reach accelerate another
way, or it silently takes accelerate's default. Read in the installed sources (the versions the tests pin):

* `version` → `fsdp_version` (default 1). Stated explicitly: FSDP1 is what the memory planner's numbers describe
  (flat parameters, fp32 upcast of trainable ones), and 5.3's FSDP2 path defaults `reshard_after_forward` to false.
* `backward_prefetch` (default NO_PREFETCH: no overlap of the next layer's all-gather with this layer's backward)
  and `forward_prefetch` (default false) are passed on: both on, each costs one extra gathered layer.
* `limit_all_gathers` and `activation_checkpointing` are not plugin arguments: the Trainer copies them from
  `fsdp_config` onto the plugin after building its Accelerator (`create_accelerator_and_postprocess`). Both stated:
  limited all-gathers (fewer CUDA malloc retries), and FSDP's own recomputation per wrapped layer.
* `state_dict_type` is never passed on, so accelerate's FSDP1 default applies: FULL_STATE_DICT — every checkpoint
  gathers the whole model and optimizer on rank 0 (≈ 16 bytes/parameter written by one rank; on resume every rank
  loads the whole file). accelerate reads `FSDP_STATE_DICT_TYPE` from the environment when the plugin is built
  (inside the Trainer's constructor), so `apply_environment` sets SHARDED_STATE_DICT before that: each rank writes
  its shard of the flat parameters and of the optimizer state (`pytorch_model_fsdp_0/`, `optimizer_0/`).
* `cpu_ram_efficient_loading` cannot make loading rank-0-only with 5.3: `from_pretrained` reads the full
  checkpoint on every rank whatever FSDP says (`is_fsdp_enabled()` only decides how *missing* keys are filled, in
  `_move_missing_keys_from_meta_to_device`), and `ACCELERATE_USE_FSDP` is set only when the Trainer builds its
  Accelerator, after the model is loaded. So it is off here, and every rank holds a full host copy of the weights
  while loading: the planner must count one per rank. `sync_module_states` stays on: rank 0's weights (and the
  LoRA initialisation) are broadcast, so every rank provably starts from the same state.
"""

from __future__ import annotations

import os
from typing import Any

from training_code.config import FSDP_MODES, trainer_fsdp_option

FSDP_VERSION = 1
# Read by accelerate when the Trainer builds its FSDP plugin; transformers 5.3 cannot pass it (see above).
ENVIRONMENT = {"FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}


def trainer_arguments(strategy: str, layer_classes: list[str], activation_checkpointing: bool) -> dict[str, Any]:
    """The Trainer's `fsdp` and `fsdp_config` arguments for an FSDP strategy (fsdp / fsdp_offload).

    `activation_checkpointing` is FSDP's own (the Trainer's gradient checkpointing must then be off: both together
    recompute twice and add an all-gather). Everything transformers 5.3 would otherwise default is stated.
    """
    if strategy not in FSDP_MODES:
        raise ValueError(f"FSDP strategy {strategy!r} is not one of: {', '.join(FSDP_MODES)}")
    return {
        "fsdp": trainer_fsdp_option(strategy),
        "fsdp_config": {
            "version": FSDP_VERSION,
            "transformer_layer_cls_to_wrap": layer_classes,
            "activation_checkpointing": activation_checkpointing,
            "limit_all_gathers": True,
            "backward_prefetch": "BACKWARD_PRE",
            "forward_prefetch": True,
            "use_orig_params": True,  # lets LoRA mix frozen and trainable parameters in one flat parameter
            "sync_module_states": True,
            "cpu_ram_efficient_loading": False,  # a no-op for loading with 5.3 (module docstring)
        },
    }


def apply_environment(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """Set what accelerate reads from the environment when the Trainer builds its FSDP plugin (before that)."""
    environ.update(ENVIRONMENT)


def use_full_state_dict(plugin: Any) -> None:
    """Switch a trained FSDP model's plugin to FULL_STATE_DICT for the final save (gathered on rank 0, on the CPU).

    The configs of the sharded type are dropped first: accelerate keeps a state-dict config once set, and torch
    refuses a FULL_STATE_DICT type with a ShardedStateDictConfig.
    """
    plugin.state_dict_config = None
    plugin.optim_state_dict_config = None
    plugin.set_state_dict_type("FULL_STATE_DICT")
