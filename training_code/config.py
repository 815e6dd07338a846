"""Hyperparameters and SageMaker environment, parsed and validated before anything heavy is loaded.

SageMaker's training toolkit passes each hyperparameter as `--name value` after JSON-decoding it, so a boolean can
arrive as `True`, `true` or `1` and a number as `0.0002` or `2e-4`. Unknown names starting with `sagemaker_` belong
to the toolkit and are ignored; any other unknown name is an error (a typo must not silently train with defaults).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from training_code import approaches

# What each approach is: training_code/approaches.py (the mirror of lambdas/approaches.py).
APPROACHES = tuple(approaches.APPROACHES)
# baseline: evaluate the base model zero-shot, no training. It must list the labels in its prompt: a model that was
# never trained cannot know a label set the compact prompt leaves out.
BASELINE = "baseline"
BASELINE_PROMPT_STYLE = "listed"
GRADIENT_CHECKPOINTING = ("auto", "true", "false")
BATCHING = ("auto", "padding_free", "length_grouped")
DECODING = ("free", "constrained")
PROMPT_STYLES = ("compact", "listed")
# How the training state is spread over the GPUs (the Plan-sourced `strategy` hyperparameter; docs/training.md):
#   single        one process on one GPU (or on the CPU)
#   ddp           one process per GPU under torchrun, each a full replica
#   fsdp          FSDP full shard under torchrun
#   fsdp_offload  FSDP full shard with params, grads and optimizer state offloaded to the CPU, under torchrun
#   split         ONE process, the model spread over the node's GPUs by a device map (naive model parallelism)
#   lean          one GPU, full fine-tuning: bf16 weights, 8-bit optimizer states, the optimizer step fused into
#                 backward, Kahan-compensated bf16 updates (training_code/lean.py)
STRATEGIES = ("single", "ddp", "fsdp", "fsdp_offload", "split", "lean")
# classification: {"text", "label"} rows (data.py); sft: instruction/chat rows (sft.py).
CLASSIFICATION, SFT = "classification", "sft"
TASKS = (CLASSIFICATION, SFT)
# eval_samples=all: every test row. Kept as the largest int, so every "how many" rule (skip at 0, take all when
# asking for more than there are) already means "all" without a special case.
ALL_SAMPLES = "all"
ALL_SAMPLES_COUNT = sys.maxsize
# The Trainer's space-separated FSDP option strings. The hyperparameter is one token because no value sent through
# the toolkit may contain a space (toolkits before the exec-based launcher joined the command line through a shell,
# aws/sagemaker-training-toolkit#128).
FSDP_MODES = {
    "fsdp": "full_shard auto_wrap",
    "fsdp_offload": "full_shard auto_wrap offload",  # params, grads and optimizer state on the CPU
}
# What each approach can train with (its row's `strategies`): QLoRA's 4-bit weights cannot be FLAT-sharded by FSDP,
# and lean is a full fine-tuning optimizer. The baseline trains nothing: one process (or rank 0) generates.
STRATEGIES_BY_APPROACH = {approach.name: approach.strategies for approach in approaches.APPROACH_LIST}
# Shorter intervals would spend more time writing and uploading checkpoints than they could save (contract minimum).
MIN_SAVE_INTERVAL_SECONDS = 60
# Each numeric hyperparameter's accepted range, in JSON Schema's keywords (minimum, maximum, exclusiveMinimum,
# exclusiveMaximum). Lambdas' hyperparameter table (lambdas/catalog.py `HYPERPARAMETERS[].bounds`) is the home of the
# ranges Plan accepts; this package cannot import it, so a contract test (tests/lambdas/test_lambda_hyperparameters.py)
# holds every range Plan accepts inside these. They may be wider (eval_samples=0 skips evaluation in a direct run).
RANGES: dict[str, dict[str, float]] = {
    "epochs": {"exclusiveMinimum": 0},  # checked only when max_steps is -1 (epochs decide)
    "per_device_batch_size": {"minimum": 1},
    "gradient_accumulation_steps": {"minimum": 1},
    "learning_rate": {"exclusiveMinimum": 0, "exclusiveMaximum": 1},  # None (auto) is not checked
    "lora_r": {"minimum": 1},
    "lora_alpha": {"minimum": 1},
    "lora_dropout": {"minimum": 0, "exclusiveMaximum": 1},
    "max_seq_length": {"minimum": 16},  # None (auto) is not checked
    "max_steps": {"minimum": -1},  # and not 0: -1 (epochs decide) or at least one step
    "eval_samples": {"minimum": 0},  # 0 skips evaluation
    "eval_batch_size": {"minimum": 1},
    "logging_steps": {"minimum": 1},
    "warmup_ratio": {"minimum": 0, "exclusiveMaximum": 0.5},
    "save_interval_seconds": {"minimum": MIN_SAVE_INTERVAL_SECONDS},
    "save_total_limit": {"minimum": 2},
}
# Why a range is what it is, appended to the refusal where the bare range would puzzle the reader.
_RANGE_REASONS = {
    "learning_rate": ", or auto",
    "max_seq_length": ", or auto",
    "eval_samples": " (0 skips evaluation)",
    "save_interval_seconds": ": a checkpoint must finish uploading before the next one replaces it",
    "save_total_limit": (
        ": the newest checkpoint may still be uploading to S3 when the instance is reclaimed, so the one before it "
        "must survive"
    ),
}
# Values that mean "not set" for optional string hyperparameters (the toolkit JSON-decodes null to None → "None").
_UNSET = {"", "none", "null", "auto"}
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
# Toolkit-owned hyperparameters (sagemaker_program, sagemaker_submit_directory, ...).
_TOOLKIT_PREFIX = "sagemaker_"


class ConfigError(ValueError):
    """A hyperparameter, environment variable or input channel is invalid; raised before any model is loaded."""


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter `train.py` accepts (`--name value`), with its default and why."""

    model_id: str
    """Hub id (e.g. meta-llama/Llama-2-7b-hf) or local directory of a causal LM."""
    approach: str = "lora"
    """full | lora | qlora | baseline (the base model evaluated zero-shot: no training, no checkpoints, no weights
    saved; prompt_style listed, and the training settings are ignored)."""
    epochs: float = 1.0
    per_device_batch_size: int = 8
    """8 is the Banking77 study's batch size."""
    learning_rate: float | None = None
    """None (or `auto`): full 2e-5; LoRA/QLoRA 2e-4 up to 13B parameters, 1e-4 above (see `resolve_learning_rate`)."""
    lora_r: int = 16
    lora_alpha: int = 32
    """alpha = 2r is the common LoRA/QLoRA recipe: the adapter's update scale stays constant when r changes."""
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    """Comma-separated module names, or all-linear (works for Llama, Mistral and GPT-NeoX alike)."""
    lora_modules_to_save: str = ""
    """Comma-separated modules trained in full next to the adapter, e.g. lm_head for randomly initialised models."""
    max_seq_length: int | None = None
    """None (`auto`): the longest training or evaluation sequence of this job, rounded up to a multiple of 16; an
    explicit value that does not fit every sequence is an error naming the value needed (nothing is ever cut)."""
    prompt_style: str = "compact"
    """compact: the prompt does not list the labels, the model learns them (Banking77 with Mistral-7B's tokenizer:
    31 tokens per example instead of 613); listed: every prompt lists the labels (zero-shot baselines)."""
    eval_samples: int = 500
    """The study's evaluation size (±2.2 points 95% CI at 93% accuracy); 0 skips evaluation; `all` (parsed to
    ALL_SAMPLES_COUNT) evaluates the whole test split."""
    task: str = CLASSIFICATION
    """classification ({"text", "label"} rows, intent accuracy) or sft (instruction/chat rows: `messages` or
    `prompt`/`completion`; exact match, ROUGE and BERTScore of the answer; see sft.py)."""
    seed: int = 42
    merge_adapter: bool = False
    checkpoint_dir: str = "/opt/ml/checkpoints"
    hf_token_secret_arn: str | None = None
    max_steps: int = -1
    """-1: epochs decide."""
    save_interval_seconds: int = 1800
    """Seconds of training between checkpoints (none is forced at the end: the final model is saved). A time, not a
    step count, because what a spot interruption loses is time; Launch sends the memory planner's value, sized so
    that saving takes < ~10% of the wall time. 30 minutes when nobody says otherwise."""
    save_total_limit: int = 2
    """At least two: the newest checkpoint may still be uploading to S3 when the instance is reclaimed."""
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: str = "auto"
    """auto: on for QLoRA and for models of 1B+ parameters on a GPU, off otherwise."""
    batching: str = "auto"
    """padding_free | length_grouped | auto (padding-free with FlashAttention, length-grouped batches otherwise)."""
    logging_steps: int = 10
    warmup_ratio: float = 0.03
    """Share of the optimizer steps with a linear learning-rate warmup: 3% is the common LoRA/QLoRA recipe's value,
    and keeps the first large updates of a fresh adapter (or of Adam's unwarmed moments) from overshooting."""
    eval_batch_size: int = 8
    """Prompts generated together at evaluation, on one GPU, for every approach: inference seconds compare like
    for like across approaches and instance types."""
    bertscore_model: str = "roberta-large"
    """bert-score's default English encoder; a local path works offline; `none` skips BERTScore (logged)."""
    decoding: str = "constrained"
    """constrained: greedy generation restricted to the label set, so every answer parses (needed with compact
    prompts, where the labels are not in the prompt to copy from); free: plain greedy generation."""
    strategy: str = "single"
    """single | ddp | fsdp | fsdp_offload | split | lean (see STRATEGIES); Plan sends the memory planner's choice.
    ddp, fsdp and fsdp_offload run under torchrun; split and lean run one process."""

    @property
    def kind(self) -> approaches.Approach:
        """The approach's row (training_code/approaches.py): adapter or not, 4-bit or not, optimizer, strategies."""
        return approaches.get(self.approach)

    @property
    def is_baseline(self) -> bool:
        """Whether the job only evaluates the base model (zero-shot), training nothing."""
        return self.approach == BASELINE

    @property
    def uses_fsdp(self) -> bool:
        """Whether the Trainer shards the model with FSDP."""
        return self.strategy in FSDP_MODES

    @property
    def is_peft(self) -> bool:
        """Whether the approach trains a LoRA adapter (LoRA or QLoRA) rather than all weights."""
        return self.kind.adapter

    @property
    def is_sft(self) -> bool:
        """Whether the job trains on instruction/chat rows (task sft) rather than classification rows."""
        return self.task == SFT

    @property
    def target_modules(self) -> str | list[str]:
        """LoRA target modules in the form PEFT expects."""
        names = _split_names(self.lora_target_modules)
        return "all-linear" if names == ["all-linear"] else names

    @property
    def modules_to_save(self) -> list[str] | None:
        """Modules trained in full next to the adapter, or None."""
        return _split_names(self.lora_modules_to_save) or None


@dataclass(frozen=True)
class SageMakerEnv:
    """The SageMaker training environment (`SM_*` variables, with the container's defaults)."""

    train_dir: Path | None
    test_dir: Path | None
    model_dir: Path
    output_data_dir: Path
    output_dir: Path
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launched_by_torchrun: bool = False
    """Whether a launcher (torchrun) started this process: it sets LOCAL_RANK, which a plain `python` does not."""

    @classmethod
    def from_environ(cls, environ: typing.Mapping[str, str] | None = None) -> SageMakerEnv:
        """Read the `SM_*` and torchrun (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`) variables."""
        env = os.environ if environ is None else environ
        output_dir = Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output"))
        return cls(
            train_dir=Path(env["SM_CHANNEL_TRAIN"]) if env.get("SM_CHANNEL_TRAIN") else None,
            test_dir=Path(env["SM_CHANNEL_TEST"]) if env.get("SM_CHANNEL_TEST") else None,
            model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", str(output_dir / "data"))),
            output_dir=output_dir,
            rank=int(env.get("RANK", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            launched_by_torchrun="LOCAL_RANK" in env,
        )

    @property
    def is_main(self) -> bool:
        """Rank 0 prints metrics and writes artifacts; the other ranks only train and evaluate their shard."""
        return self.rank == 0


def _split_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _to_bool(name: str, raw: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigError(f"hyperparameter {name}={raw!r} is not a boolean (use true or false)")


def _to_int(name: str, raw: str, text: str) -> int:
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is None or not number.is_integer():
        raise ConfigError(f"hyperparameter {name}={raw!r} is not an integer")
    return int(number)


def _to_float(name: str, raw: str, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"hyperparameter {name}={raw!r} is not a number") from None
    # nan passes every range check below (each comparison with it is false) and inf trains forever.
    if not math.isfinite(number):
        raise ConfigError(f"hyperparameter {name}={raw!r} is not a finite number")
    return number


_CONVERTERS: dict[typing.Any, typing.Callable[[str, str, str], typing.Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
}


def _coerce(name: str, raw: str, annotation: typing.Any) -> typing.Any:
    """Convert the text of `--name raw` to the field's type, with an error that names the hyperparameter."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
    text = raw.strip()
    if optional and text.lower() in _UNSET:
        return None
    convert = _CONVERTERS.get(annotation)
    return convert(name, raw, text) if convert else text


def _argv_pairs(argv: list[str]) -> typing.Iterator[tuple[str, str]]:
    """(name, raw value) for each `--name value` / `--name=value` in order, dashes in names read as underscores."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}: hyperparameters are passed as --name value")
        name, sep, raw = token[2:].partition("=")
        if not sep:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"hyperparameter {name} has no value")
            raw = argv[i + 1]
            i += 1
        i += 1
        yield name.replace("-", "_"), raw


def parse_hyperparameters(argv: list[str]) -> TrainConfig:
    """Parse `--name value` / `--name=value` pairs into a `TrainConfig` (types only; see `validate`)."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, typing.Any] = {}
    unknown: list[str] = []
    for name, raw in _argv_pairs(argv):
        if name.startswith(_TOOLKIT_PREFIX):
            continue
        if name not in fields:
            unknown.append(name)
            continue
        if name == "eval_samples" and raw.strip().lower() == ALL_SAMPLES:
            values[name] = ALL_SAMPLES_COUNT
            continue
        values[name] = _coerce(name, raw, hints[name])
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s): {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(fields))}"
        )
    if not values.get("model_id"):
        raise ConfigError("hyperparameter model_id is required (a Hub id or a local model directory)")
    for name in ("approach", "strategy", "gradient_checkpointing", "batching", "decoding", "prompt_style", "task"):
        if name in values:
            values[name] = values[name].lower()
    if values.get("approach") == BASELINE:
        values.setdefault("prompt_style", BASELINE_PROMPT_STYLE)  # `validate` refuses an explicit compact one
    return TrainConfig(**values)


def trainer_fsdp_option(strategy: str) -> str:
    """The Trainer's FSDP option string for a strategy (empty for every strategy but fsdp and fsdp_offload)."""
    return FSDP_MODES.get(strategy, "")


def qlora_support_problem() -> str | None:
    """Why QLoRA cannot run on this machine, or None when bitsandbytes can quantize here."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    import torch

    if torch.cuda.is_available():
        return None
    from importlib.metadata import version

    from packaging.version import Version

    # bitsandbytes gained CPU 4-bit kernels (NF4 + double quantization) in its multi-backend releases.
    if Version(version("bitsandbytes")) < Version("0.48.0"):
        return f"bitsandbytes {version('bitsandbytes')} has no CPU 4-bit support (needs >= 0.48 or a CUDA GPU)"
    return None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"hyperparameter {name}={value!r} is not one of: {', '.join(allowed)}")


def _jsonl_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.jsonl") if p.is_file())


def in_range(value: float, keywords: dict[str, float]) -> bool:
    """Whether `value` lies in the range that JSON Schema `keywords` describe (NaN never does)."""
    checks = {
        "minimum": lambda bound: value >= bound,
        "maximum": lambda bound: value <= bound,
        "exclusiveMinimum": lambda bound: value > bound,
        "exclusiveMaximum": lambda bound: value < bound,
    }
    return all(checks[keyword](bound) for keyword, bound in keywords.items())


def describe_range(keywords: dict[str, float]) -> str:
    """The range as a reader writes it: `in (0, 1)`, `in [0, 0.5)`, `>= 16`, `> 0`."""
    low = ("[", keywords["minimum"]) if "minimum" in keywords else ("(", keywords.get("exclusiveMinimum"))
    high = ("]", keywords["maximum"]) if "maximum" in keywords else (")", keywords.get("exclusiveMaximum"))
    if low[1] is not None and high[1] is not None:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low[1] is not None:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"


def _validate_ranges(config: TrainConfig) -> None:
    """Every numeric hyperparameter within `RANGES` (auto values and epochs that max_steps overrides are not)."""
    if config.max_steps == 0 or config.max_steps < -1:
        raise ConfigError(f"hyperparameter max_steps={config.max_steps} must be -1 (epochs decide) or >= 1")
    for name, keywords in RANGES.items():
        value = getattr(config, name)
        if value is None or (name == "epochs" and config.max_steps != -1):
            continue
        if not in_range(value, keywords):
            when = " when max_steps is -1" if name == "epochs" else ""
            raise ConfigError(
                f"hyperparameter {name}={value} must be {describe_range(keywords)}{when}{_RANGE_REASONS.get(name, '')}"
            )


def validate_values(config: TrainConfig) -> None:
    """The checks that depend on the hyperparameters alone (not on this machine, its launcher or its input
    channels): choices, ranges and combinations. Raise `ConfigError` naming the hyperparameter at fault."""
    _choice("approach", config.approach, APPROACHES)
    _choice("gradient_checkpointing", config.gradient_checkpointing, GRADIENT_CHECKPOINTING)
    _choice("batching", config.batching, BATCHING)
    _choice("decoding", config.decoding, DECODING)
    _choice("prompt_style", config.prompt_style, PROMPT_STYLES)
    _choice("task", config.task, TASKS)
    _choice("strategy", config.strategy, STRATEGIES)
    _validate_ranges(config)
    if approaches.get(config.approach).quantized and config.modules_to_save:
        # TRL casts every trainable parameter of a quantized model to bf16, which breaks a fully trained head.
        raise ConfigError(f"hyperparameter lora_modules_to_save is not supported with approach={config.approach}")
    if config.is_baseline:
        _validate_baseline(config)
    allowed = STRATEGIES_BY_APPROACH[config.approach]
    if config.strategy not in allowed:
        raise ConfigError(
            f"hyperparameter strategy={config.strategy} is not supported with approach={config.approach}; "
            f"use one of: {', '.join(allowed)}"
        )


def validate(config: TrainConfig, env: SageMakerEnv) -> None:
    """Check values, combinations, this machine and the input channels; raise `ConfigError` naming the
    hyperparameter at fault."""
    validate_values(config)
    if approaches.get(config.approach).quantized and (problem := qlora_support_problem()):
        raise ConfigError(f"hyperparameter approach={config.approach} is not supported on this machine: {problem}")
    _validate_strategy(config, env)
    _validate_channel("SM_CHANNEL_TRAIN", "train", env.train_dir)
    if config.eval_samples > 0:
        _validate_channel("SM_CHANNEL_TEST", "test", env.test_dir)
    model_path = Path(config.model_id)
    if config.model_id.startswith(("/", "./", "../", "~")) and not model_path.expanduser().is_dir():
        raise ConfigError(f"hyperparameter model_id={config.model_id!r} looks like a local path but is not a directory")


def _validate_baseline(config: TrainConfig) -> None:
    """What a zero-shot baseline cannot honour; its training settings (epochs, LoRA, ...) are merely unused."""
    if config.prompt_style != BASELINE_PROMPT_STYLE:
        raise ConfigError(
            f"hyperparameter prompt_style={config.prompt_style!r} is not supported with approach=baseline: a model "
            f"that was never trained cannot know labels the prompt leaves out; use {BASELINE_PROMPT_STYLE}"
        )
    if config.eval_samples < 1:
        raise ConfigError("hyperparameter eval_samples=0 leaves approach=baseline nothing to do: it only evaluates")


def _validate_strategy(config: TrainConfig, env: SageMakerEnv) -> None:
    """What each strategy needs of this process: its launcher (torchrun or one process), CUDA for FSDP (the
    approach it can train is `validate_values`')."""
    if config.strategy in ("split", "lean") and env.world_size > 1:
        raise ConfigError(
            f"hyperparameter strategy={config.strategy} runs ONE process, but {env.world_size} were launched: "
            "turn torchrun off (Launch does for this strategy)"
        )
    if config.strategy == "lean" and config.gradient_accumulation_steps > 1:
        # The optimizer step runs inside backward, once per micro-batch: accumulating would need the full
        # gradient buffer lean exists to avoid.
        raise ConfigError(
            f"hyperparameter gradient_accumulation_steps={config.gradient_accumulation_steps} is not supported with "
            "strategy=lean: its optimizer step is fused into each backward pass; raise per_device_batch_size instead"
        )
    if config.uses_fsdp:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"hyperparameter strategy={config.strategy} needs CUDA GPUs; use single on CPU")
        if not env.launched_by_torchrun:
            # The Trainer refuses FSDP outside a distributed launch ("Using fsdp only works in distributed training").
            raise ConfigError(
                f"hyperparameter strategy={config.strategy} needs torchrun (sagemaker_torch_distributed_enabled); "
                "this process was started without it"
            )


def effective_strategy(config: TrainConfig, env: SageMakerEnv) -> str:
    """The strategy this process trains with: ddp with one process is `single` (one replica has no one to
    synchronise with; the Trainer would build the same thing); every other strategy as given."""
    if config.strategy == "ddp" and env.world_size == 1:
        return "single"
    return config.strategy


def _validate_channel(variable: str, channel: str, directory: Path | None) -> None:
    if directory is None:
        raise ConfigError(f"input channel {channel!r} is missing: {variable} is not set")
    if not directory.is_dir():
        raise ConfigError(f"input channel {channel!r} is missing: {variable}={directory} is not a directory")
    if not _jsonl_files(directory):
        raise ConfigError(f"input channel {channel!r} has no *.jsonl files in {directory}")


# Below this size a model is a test/demo model (finetune.local.tiny_model), not an LLM.
TINY_MODEL_PARAMETERS = approaches.TINY_MODEL_PARAMETERS


def resolve_learning_rate(config: TrainConfig, num_parameters: int) -> float:
    """The learning rate to use: the explicit one, or the approach's automatic rate for this model size
    (training_code/approaches.py says which and why; lambdas' job defaults name the same rate).

    full: 2e-5 (the usual rate for full fine-tuning of 7B-class models; higher rates destabilise them).
    LoRA/QLoRA: 2e-4 up to 13B parameters (the QLoRA paper's rate for <=13B), 1e-4 above (its rate for 33B+).
    Models under 100M parameters (the offline demo's and tests' tiny models): full 3e-3, LoRA/QLoRA 5e-3, the
    rates at which they learn the bundled intents in a few hundred steps (measured; small models take larger rates).
    """
    if config.learning_rate is not None:
        return config.learning_rate
    rate = approaches.get(config.approach).default_learning_rate(num_parameters)
    if rate is None:
        raise ConfigError(f"approach={config.approach} trains nothing: it has no learning rate")
    return rate


def as_dict(config: TrainConfig) -> dict[str, typing.Any]:
    """The hyperparameters as a JSON-serialisable dict (written next to the model and into checkpoints)."""
    return dataclasses.asdict(config)


__all__ = [
    "APPROACHES",
    "BASELINE",
    "FSDP_MODES",
    "RANGES",
    "STRATEGIES",
    "ConfigError",
    "SageMakerEnv",
    "TrainConfig",
    "as_dict",
    "describe_range",
    "effective_strategy",
    "in_range",
    "parse_hyperparameters",
    "qlora_support_problem",
    "resolve_learning_rate",
    "trainer_fsdp_option",
    "validate",
    "validate_values",
]
