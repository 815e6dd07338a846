"""The approaches as data: one row per way a job can use a model (train all weights, train an adapter, evaluate it
zero-shot), read by Plan, the memory planner, the time model, Remedy, the catalog and the input schema.

A new approach is a new row here (and its mirror in `training_code/approaches.py`, which the SageMaker job is
packaged with and cannot import this package: tests/lambdas/test_lambda_approaches.py keeps the two equal), not a
string compared in eight files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

# Trainer `optim` names (what training_code passes to TrainingArguments): torch AdamW, and bitsandbytes' paged 8-bit
# AdamW (the QLoRA recipe: 8-bit moments, paged to host memory on spikes). lambdas/memory.Optimizer counts their state.
ADAMW = "adamw_torch"
PAGED_ADAMW_8BIT = "paged_adamw_8bit"

# The automatic learning-rate rule's model-size thresholds (training_code/config.resolve_learning_rate applies the
# same rule at run time, from its own mirror of these numbers: the contract test compares both).
TINY_MODEL_PARAMETERS = 100_000_000  # below: the offline demo's and tests' tiny models, not LLMs
LARGE_MODEL_PARAMETERS = 13_000_000_000  # above: the QLoRA paper's 33B+ rate


@dataclass(frozen=True)
class Approach:
    """What one approach is, as every module that must know it reads it."""

    name: str
    description: str  # a short phrase for help texts and the schema's description
    trains: bool  # False: the zero-shot baseline (no weights, gradients, optimizer, checkpoints)
    adapter: bool  # trains a LoRA adapter on a frozen base (the artifact is the adapter; merge_adapter applies)
    quantized: bool  # the frozen base is 4-bit NF4 (bitsandbytes); GPU kernels are what make it worth running
    dora: bool  # the adapter is DoRA (PEFT `use_dora=True`): a magnitude vector per adapted output feature
    gpu_only: bool  # Plan refuses CPU instances for it
    flops_per_parameter: int  # training FLOPs per parameter per token, without recomputation (0: no training)
    utilization: str  # the catalog.TIME_MODEL constant of its training step's model FLOPs utilization
    optimizer: str  # the Trainer `optim` the training code uses (ADAMW or PAGED_ADAMW_8BIT)
    always_checkpoints: bool  # gradient checkpointing `auto` is on whatever the model size and device
    strategies: tuple[str, ...]  # the training code's strategies for it (catalog.STRATEGIES names)
    in_study: bool  # part of the Banking77 study matrix (catalog.STUDY_MATRIX)
    oom_fallback: str | None = None  # what Remedy turns it into after an out-of-memory failure (policy permitting)
    # The automatic learning rate (the input's `learning_rate: null`, and Plan's default): the usual rate, the rate
    # above LARGE_MODEL_PARAMETERS and the rate of tiny (< TINY_MODEL_PARAMETERS) models. None: no training.
    learning_rate: float | None = None
    learning_rate_large: float | None = None
    learning_rate_tiny: float | None = None

    def default_learning_rate(self, parameters: int) -> float | None:
        """The automatic learning rate for a model of `parameters` parameters (None when nothing trains)."""
        if parameters < TINY_MODEL_PARAMETERS:
            return self.learning_rate_tiny
        if parameters > LARGE_MODEL_PARAMETERS:
            return self.learning_rate_large
        return self.learning_rate


_ALL_STRATEGIES = ("single", "ddp", "fsdp", "fsdp_offload", "split", "lean")
_ONE_PROCESS_OR_REPLICAS = ("single", "ddp", "split")


# Learning rates: 2e-4 is the QLoRA paper's rate for adapters up to 13B, 1e-4 its rate above; 2e-5 for full
# fine-tuning at every size (Llama 2's SFT rate for 7B-70B; 10x below LoRA's); the tiny models' rates are the ones at
# which they learn the bundled intents in a few hundred steps (measured for the offline demo).
class _Rates(TypedDict):
    """An approach's learning rates by model size (typed, so `**rates` type-checks against Approach's fields)."""

    learning_rate: float
    learning_rate_large: float
    learning_rate_tiny: float


_ADAPTER_RATES = _Rates(learning_rate=2e-4, learning_rate_large=1e-4, learning_rate_tiny=5e-3)

APPROACH_LIST: tuple[Approach, ...] = (
    Approach(
        "full",
        "full fine-tuning",
        trains=True,
        adapter=False,
        quantized=False,
        dora=False,
        gpu_only=False,
        # forward 2N + backward 4N (activation and weight gradients)
        flops_per_parameter=6,
        utilization="utilization_full",
        optimizer=ADAMW,
        always_checkpoints=False,
        strategies=_ALL_STRATEGIES,
        in_study=True,
        learning_rate=2e-5,
        learning_rate_large=2e-5,
        learning_rate_tiny=3e-3,
    ),
    Approach(
        "lora",
        "LoRA adapters",
        trains=True,
        adapter=True,
        quantized=False,
        dora=False,
        gpu_only=False,
        # frozen base weights need no weight gradients: backward is the activation gradients only, ~2N
        flops_per_parameter=4,
        utilization="utilization_lora",
        optimizer=ADAMW,
        always_checkpoints=False,
        strategies=("single", "ddp", "fsdp", "fsdp_offload", "split"),
        in_study=True,
        oom_fallback="qlora",  # the same adapter on a 4-bit base: a quarter of the weights' memory
        **_ADAPTER_RATES,
    ),
    Approach(
        "qlora",
        "QLoRA (LoRA on a 4-bit quantised model; GPU only)",
        trains=True,
        adapter=True,
        quantized=True,
        dora=False,
        gpu_only=True,  # bitsandbytes' 4-bit kernels are what make QLoRA worth running
        flops_per_parameter=4,
        utilization="utilization_qlora",
        optimizer=PAGED_ADAMW_8BIT,
        always_checkpoints=True,  # the QLoRA recipe: memory is what it exists to save
        strategies=_ONE_PROCESS_OR_REPLICAS,  # 4-bit weights cannot be FLAT-sharded by FSDP
        in_study=True,
        **_ADAPTER_RATES,
    ),
    Approach(
        "dora",
        "DoRA (weight-decomposed LoRA: a learned magnitude per output feature; slower than LoRA)",
        trains=True,
        adapter=True,
        quantized=False,
        dora=True,
        gpu_only=False,  # bf16/fp32 weights: runs wherever LoRA runs
        # LoRA's per-token FLOPs; DoRA's per-step work (rebuilding each adapted weight to take its norm) is counted
        # separately by lambdas/estimate.py from lambdas/memory.dora_step_work.
        flops_per_parameter=4,
        utilization="utilization_lora",
        optimizer=ADAMW,
        always_checkpoints=False,
        # No FSDP here: PEFT made DoRA run under FSDP (huggingface/peft#1806, in 0.12+, so in the DLC's 0.18.1), but
        # the planner's FSDP model does not count DoRA's gathered per-layer rebuild and no CUDA test runs it; one
        # process, replicas or a device map only until both exist.
        strategies=_ONE_PROCESS_OR_REPLICAS,
        in_study=False,
        **_ADAPTER_RATES,
    ),
    Approach(
        "baseline",
        "the base model evaluated zero-shot on the same samples without training (listed prompt, constrained "
        "decoding; the training settings do not apply and are ignored)",
        trains=False,
        adapter=False,
        quantized=False,
        dora=False,
        gpu_only=False,
        flops_per_parameter=0,
        utilization="",
        optimizer=ADAMW,  # never built: nothing trains
        always_checkpoints=False,
        strategies=_ONE_PROCESS_OR_REPLICAS,  # one process (or rank 0) generates
        in_study=False,
    ),
)
APPROACHES: dict[str, Approach] = {approach.name: approach for approach in APPROACH_LIST}


def get(name: str) -> Approach:
    """The row of an approach; `KeyError` naming the known ones for anything else (the schema refuses those first)."""
    try:
        return APPROACHES[name]
    except KeyError:
        raise KeyError(f"unknown approach {name!r}; known: {', '.join(APPROACHES)}") from None
