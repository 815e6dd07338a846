"""The approaches as the training code needs them: one row each, read by config.py, modeling.py and train.py.

This package is shipped to SageMaker alone and cannot import `lambdas/`, whose `lambdas/approaches.py` is the home of
every approach (and of what only Plan, the planner and the time model need). This table mirrors the fields the
training code uses; tests/lambdas/test_lambda_approaches.py fails when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

# Trainer `optim` names: torch AdamW, and bitsandbytes' paged 8-bit AdamW (the QLoRA recipe: 8-bit moments, paged to
# host memory on spikes).
ADAMW = "adamw_torch"
PAGED_ADAMW_8BIT = "paged_adamw_8bit"

# The automatic learning-rate rule's model-size thresholds (see `Approach.default_learning_rate`).
TINY_MODEL_PARAMETERS = 100_000_000  # below: the offline demo's and tests' tiny models, not LLMs
LARGE_MODEL_PARAMETERS = 13_000_000_000  # above: the QLoRA paper's 33B+ rate


@dataclass(frozen=True)
class Approach:
    """What the training code must know of one approach."""

    name: str
    trains: bool  # False: the zero-shot baseline (evaluation only)
    adapter: bool  # trains a LoRA adapter (PEFT) on a frozen base rather than all weights
    quantized: bool  # loads the base in 4-bit NF4 (bitsandbytes)
    dora: bool  # the adapter is DoRA (PEFT `use_dora=True`)
    optimizer: str  # the Trainer `optim`
    always_checkpoints: bool  # gradient_checkpointing `auto` is on whatever the model size and device
    strategies: tuple[str, ...]  # the strategies it can train with (config.STRATEGIES names)
    learning_rate: float | None = None  # `auto`: the usual rate
    learning_rate_large: float | None = None  # above LARGE_MODEL_PARAMETERS
    learning_rate_tiny: float | None = None  # below TINY_MODEL_PARAMETERS

    def default_learning_rate(self, parameters: int) -> float | None:
        """The `learning_rate: auto` rate for a model of `parameters` parameters (None when nothing trains)."""
        if parameters < TINY_MODEL_PARAMETERS:
            return self.learning_rate_tiny
        if parameters > LARGE_MODEL_PARAMETERS:
            return self.learning_rate_large
        return self.learning_rate


_ONE_PROCESS_OR_REPLICAS = ("single", "ddp", "split")
# full 2e-5 (the usual rate for full fine-tuning of 7B-class models; higher rates destabilise them); adapters 2e-4 up
# to 13B (the QLoRA paper's rate for <=13B), 1e-4 above (its rate for 33B+); models under 100M parameters (the offline
# demo's and tests' tiny models): full 3e-3, adapters 5e-3, the rates at which they learn the bundled intents in a
# few hundred steps (measured; small models take larger rates).
_ADAPTER_RATES = {"learning_rate": 2e-4, "learning_rate_large": 1e-4, "learning_rate_tiny": 5e-3}

APPROACH_LIST: tuple[Approach, ...] = (
    Approach(
        "full",
        trains=True,
        adapter=False,
        quantized=False,
        dora=False,
        optimizer=ADAMW,
        always_checkpoints=False,
        strategies=("single", "ddp", "fsdp", "fsdp_offload", "split", "lean"),
        learning_rate=2e-5,
        learning_rate_large=2e-5,
        learning_rate_tiny=3e-3,
    ),
    Approach(
        "lora",
        trains=True,
        adapter=True,
        quantized=False,
        dora=False,
        optimizer=ADAMW,
        always_checkpoints=False,
        strategies=("single", "ddp", "fsdp", "fsdp_offload", "split"),
        **_ADAPTER_RATES,
    ),
    Approach(
        "qlora",
        trains=True,
        adapter=True,
        quantized=True,
        dora=False,
        optimizer=PAGED_ADAMW_8BIT,
        always_checkpoints=True,
        strategies=_ONE_PROCESS_OR_REPLICAS,  # 4-bit weights cannot be FLAT-sharded by FSDP
        **_ADAPTER_RATES,
    ),
    Approach(
        "dora",
        trains=True,
        adapter=True,
        quantized=False,
        dora=True,
        optimizer=ADAMW,
        always_checkpoints=False,
        strategies=_ONE_PROCESS_OR_REPLICAS,  # not run under FSDP here (lambdas/approaches.py says why)
        **_ADAPTER_RATES,
    ),
    Approach(
        "baseline",
        trains=False,
        adapter=False,
        quantized=False,
        dora=False,
        optimizer=ADAMW,  # never built
        always_checkpoints=False,
        strategies=_ONE_PROCESS_OR_REPLICAS,  # one process (or rank 0) generates
    ),
)
APPROACHES: dict[str, Approach] = {approach.name: approach for approach in APPROACH_LIST}


def get(name: str) -> Approach:
    """The row of an approach (config.validate_values refuses unknown names before anything asks)."""
    return APPROACHES[name]
