"""Fine-tune a causal LM for intent classification: full fine-tuning, LoRA or QLoRA, spot-safe, then evaluate.

Run by SageMaker's Hugging Face PyTorch DLC (`python train.py --name value ...`, or `torchrun --nproc_per_node N
train.py ...` when distributed training is enabled), or locally on CPU with the same environment variables:

    SM_CHANNEL_TRAIN=data/train SM_CHANNEL_TEST=data/test SM_MODEL_DIR=out/model SM_OUTPUT_DATA_DIR=out/data \
    SM_OUTPUT_DIR=out python training_code/train.py --model_id ./tiny-llama --approach lora --max_steps 30 \
        --checkpoint_dir out/checkpoints --bertscore_model <local encoder dir>

approach=baseline evaluates the base model zero-shot instead (`evaluate_baseline`): no trainer, no checkpoints.

Read top to bottom, `run` is the whole job as named stages: read the config → read the channels → tokenizer and
prompts → resolve the settings (printed as `resolved_*` metric lines) → evaluation setup with the BERTScore encoder
(all before any model is loaded) → build the trainer (resume point, model, callbacks) → train or resume (saving on a
time interval) → save → evaluate on rank 0 → report → merge and time the merged model.
Exit status: 0 done, 1 failed (reason in $SM_OUTPUT_DIR/failure), 143 stopped by SIGTERM after a checkpoint.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (the DLC runs `train.py` from the unpacked code folder): register this folder as the package
    # `training_code` so modules import each other the same way as in the repository, and take the folder off
    # sys.path so none of its module names can shadow an installed package.
    _HERE = Path(__file__).resolve().parent
    if "training_code" not in sys.modules:
        _package = types.ModuleType("training_code")
        _package.__path__ = [str(_HERE)]
        sys.modules["training_code"] = _package
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

# Imported after the bootstrap above, which makes `training_code` importable when run as a script.
import gc
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training_code import checkpoints, data, evaluation, fsdp, lean, modeling, phases, sft, telemetry
from training_code.config import (
    ConfigError,
    SageMakerEnv,
    TrainConfig,
    as_dict,
    effective_strategy,
    parse_hyperparameters,
    resolve_learning_rate,
    validate,
)
from training_code.hf_token import TokenError, read_hf_token

LOG = logging.getLogger("train")

EXIT_OK, EXIT_FAILED, EXIT_STOPPED = 0, 1, 143  # 143 = 128 + SIGTERM, as a shell reports a terminated process
FAILURE_REASON_LIMIT = 1024  # SageMaker's FailureReason length
# Next to the model: the label set and prompt format a server needs to prompt the model and parse its answers.
LABELS_FILE = "labels.json"


def setup_logging(env: SageMakerEnv) -> None:
    """Human-readable logs on stderr (stdout carries the metric lines); only rank 0 logs below WARNING."""
    logging.basicConfig(
        level=logging.INFO if env.is_main else logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s rank{env.rank} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # Tokenizers' thread pool and forked processes (DataLoader, torchrun) warn about deadlocks; we don't need it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def write_failure(env: SageMakerEnv, message: str) -> None:
    """$SM_OUTPUT_DIR/failure, which SageMaker shows as the job's FailureReason (rank 0's reason wins)."""
    path = env.output_dir / "failure"
    try:
        env.output_dir.mkdir(parents=True, exist_ok=True)
        if env.is_main or not path.exists():
            path.write_text(message[:FAILURE_REASON_LIMIT])
    except OSError:
        LOG.exception("could not write %s", path)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _reduce(values: list[float], op: str, device: Any) -> list[float]:
    """All-reduce a few numbers across ranks (sum or max); identity when not distributed."""
    if not _distributed():
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor.tolist()


def _free_memory(runtime: modeling.Runtime) -> None:
    gc.collect()
    if runtime.use_cuda:
        import torch

        torch.cuda.empty_cache()


def _release_training_state(trainer: Any, runtime: modeling.Runtime, keep_model: bool) -> None:
    """Drop the optimizer, scheduler, gradients and wrappers (and the model unless `keep_model`) to free memory.

    Every holder is cleared: the trainer, its accelerator and its callback handler (which keeps its own references
    to the model, optimizer, scheduler and data loader); one left behind would keep its GPU memory alive.
    """
    model = trainer.model
    trainer.accelerator.free_memory()
    handler = trainer.callback_handler
    trainer.optimizer = trainer.lr_scheduler = trainer.model_wrapped = None
    handler.optimizer = handler.lr_scheduler = handler.train_dataloader = None
    if keep_model:
        model.zero_grad(set_to_none=True)  # gradients take as much memory as the trainable weights
    else:
        trainer.model = handler.model = None
    del model
    _free_memory(runtime)


def _leave_process_group() -> None:
    """All ranks leave together. A rank that exits while its gloo/NCCL group is alive can abort at shutdown."""
    if _distributed():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def build_sft_config(
    config: TrainConfig,
    env: SageMakerEnv,
    runtime: modeling.Runtime,
    learning_rate: float,
    gradient_checkpointing: bool,
    batching: str,
    layer_classes: list[str],
):  # -> trl.SFTConfig
    """TRL/Trainer arguments. Checkpoints go to checkpoint_dir, but the Trainer decides none of them: saving on a
    time interval and on SIGTERM, and rotation, are the checkpoint callback's (see checkpoints.py)."""
    from trl import SFTConfig

    fsdp_kwargs: dict[str, Any] = {}
    if config.uses_fsdp:
        # FSDP wraps each decoder layer and does its own activation checkpointing (the Trainer's would clash).
        fsdp_kwargs = fsdp.trainer_arguments(config.strategy, layer_classes, gradient_checkpointing)
        gradient_checkpointing = False
    return SFTConfig(
        output_dir=config.checkpoint_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=learning_rate,
        # A float below 1 is a share of the total steps (transformers >= 5 replaced warmup_ratio by this).
        warmup_steps=config.warmup_ratio,
        seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,  # the first loss shows at once that the run is alive and where it starts
        save_strategy="no",  # the checkpoint callback sets should_save itself
        save_total_limit=None,  # rotation is ours: by step among verified checkpoints
        bf16=runtime.bf16,
        fp16=runtime.fp16,
        use_cpu=not runtime.use_cuda,
        gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        # QLoRA's paged 8-bit AdamW: optimizer states in 8 bits, paged to host memory on spikes.
        optim=config.kind.optimizer,
        completion_only_loss=True,
        max_length=None,  # lengths were checked against max_seq_length: nothing may be truncated
        padding_free=batching == "padding_free",
        train_sampling_strategy="group_by_length" if batching == "length_grouped" else "random",
        # NCCL on GPUs (the default); gloo for CPU processes under torchrun. Single process: no process group.
        ddp_backend="gloo" if env.world_size > 1 and not runtime.use_cuda else None,
        ddp_find_unused_parameters=False,
        # lean steps each parameter inside backward (lean.py): no moment sees every gradient to clip by their norm.
        max_grad_norm=0.0 if config.strategy == "lean" else 1.0,
        dataloader_pin_memory=runtime.use_cuda,
        report_to="none",
        disable_tqdm=True,
        **fsdp_kwargs,
    )


@dataclass(frozen=True)
class EvalSetup:
    """Everything generation needs, fixed before training: prompts, references, decoding and placement limits."""

    examples: list[data.Example]
    prompts: list[str]
    labels: list[str]
    trie: evaluation.LabelTrie | None
    max_new_tokens: int
    bertscore: evaluation.BertScoreEncoder | None
    reserve_bytes: int
    """GPU memory left free per GPU when a model is dispatched for inference (KV cache + headroom)."""
    indices: list[int] | None = None
    """Each evaluated example's position in the test split (predictions.jsonl pairs jobs by it)."""
    add_special_tokens: bool = True
    """False for task sft: its prompts are rendered with their special tokens already."""
    stop_token_ids: list[int] | None = None
    """Tokens that end an answer besides EOS (a chat template's end of turn)."""


def _placement(runtime: modeling.Runtime, setup: EvalSetup) -> dict[str, Any]:
    """Where an inference load goes: dispatched over this node's GPUs (GPU 0 first), or this process's device."""
    if not runtime.use_cuda:
        return {}
    device_map, max_memory = modeling.dispatch(modeling.free_gpu_bytes(), setup.reserve_bytes)
    return {"device_map": device_map, "max_memory": max_memory}


def _generate(model: Any, tokenizer: Any, setup: EvalSetup, config: TrainConfig) -> evaluation.Generations:
    """Timed generation for the evaluation prompts: a fixed batch size on the model's (first) device, after an
    untimed warm-up batch, so the inference seconds of every approach compare like for like."""
    return evaluation.generate(
        model,
        tokenizer,
        setup.prompts,
        batch_size=config.eval_batch_size,
        max_new_tokens=setup.max_new_tokens,
        device=str(model.device),
        trie=setup.trie,
        warmup=True,
        add_special_tokens=setup.add_special_tokens,
        stop_token_ids=setup.stop_token_ids,
    )


def evaluate_trained(
    trainer: Any,
    plan: modeling.EvaluationPlan,
    config: TrainConfig,
    runtime: modeling.Runtime,
    token: str | None,
    tokenizer: Any,
    setup: EvalSetup,
    model_dir: Path,
) -> evaluation.Scores:
    """Rank 0: generate with the trained model (in memory, or reloaded after FSDP) and score the answers.

    Never raises: the model is already saved, so a failure (an OOM, a broken metric) is recorded as missing
    metrics with its reason, and the job still ends with its artifacts.
    """
    model = None
    try:
        if plan.reload:
            model = modeling.load_for_inference(config, model_dir, runtime, token, **_placement(runtime, setup))
        else:
            # Take the only reference left, so that the model is freed when evaluation is done.
            model, trainer.model, trainer.callback_handler.model = trainer.model, None, None
        generations = _generate(model, tokenizer, setup, config)
    except Exception as exc:
        LOG.exception("evaluation failed: the trained model is saved, its evaluation metrics are missing")
        return evaluation.Scores(missing=dict.fromkeys(evaluation.EVAL_METRICS, evaluation.failure_reason(exc)))
    finally:
        del model
        _free_memory(runtime)  # BERTScore and the merge need the GPU next
    return _score(generations, setup, runtime)


def _score(generations: evaluation.Generations, setup: EvalSetup, runtime: modeling.Runtime) -> evaluation.Scores:
    """Every evaluation metric and the per-sample answers of `generations` for the evaluated examples (a few
    predictions logged first)."""
    for example, output in list(zip(setup.examples, generations.outputs, strict=True))[:3]:
        LOG.info("sample prediction: %r → %r (reference %r)", example.text, output.strip(), example.label)
    references = [example.label for example in setup.examples]
    return evaluation.score(
        generations.outputs,
        references,
        setup.labels,
        generations.seconds,
        setup.bertscore,
        runtime.device,
        indices=setup.indices,
    )


def merge_and_time(
    config: TrainConfig,
    runtime: modeling.Runtime,
    token: str | None,
    tokenizer: Any,
    setup: EvalSetup | None,
    model_dir: Path,
    model_card: dict[str, Any],
) -> evaluation.Scores:
    """Rank 0: merge the adapter into the base, save it to `model_dir/merged`, and time inference with it.

    A failed merge leaves the adapter (already saved) as the job's result and is recorded as missing merged metrics:
    the adapter can be merged offline, while a failed job would upload nothing.
    """
    scores = evaluation.Scores()
    merged = None
    out_dir = model_dir / "merged"
    try:
        placement = _placement(runtime, setup) if setup is not None else {}
        merged = modeling.load_merged(config, model_dir, runtime, token, **placement)
        modeling.save_merged(merged, tokenizer, out_dir)
        (out_dir / LABELS_FILE).write_text(json.dumps(model_card, indent=2) + "\n")
        LOG.info("merged adapter into %s", out_dir)
    except Exception as exc:
        LOG.exception("merging the adapter failed: the adapter is saved and can be merged offline")
        shutil.rmtree(out_dir, ignore_errors=True)  # never ship a half-written merged model
        del merged
        _free_memory(runtime)
        reason = f"merge failed: {evaluation.failure_reason(exc)}"
        return evaluation.Scores(missing=dict.fromkeys(evaluation.MERGED_METRICS, reason))
    try:
        if setup is not None:
            generations = _generate(merged, tokenizer, setup, config)
            scores.metrics["eval_inference_seconds_merged"] = generations.seconds
            scores.metrics["eval_seconds_per_sample_merged"] = generations.seconds / max(len(setup.prompts), 1)
    except Exception as exc:
        LOG.exception("timing the merged model failed: it is saved, its inference time is missing")
        scores.missing.update(dict.fromkeys(evaluation.MERGED_METRICS, evaluation.failure_reason(exc)))
    finally:
        del merged
        _free_memory(runtime)
    return scores


def save_final_model(
    trainer: Any, tokenizer: Any, config: TrainConfig, runtime: modeling.Runtime, env: SageMakerEnv, model_dir: Path
) -> None:
    """Every rank: save the trained model to `model_dir` (FSDP gathers it onto rank 0, which alone writes).

    A full fine-tune is written in the precision it trained in (`modeling.save_full_model`); an adapter as PEFT
    saves it (small, and its fp32 weights are what a merge should start from).
    """
    if trainer.is_fsdp_enabled:
        fsdp.use_full_state_dict(trainer.accelerator.state.fsdp_plugin)
    if config.kind.adapter:
        trainer.save_model(str(model_dir))
        return
    state_dict = trainer.accelerator.get_state_dict(trainer.model)  # collective under FSDP; whole on rank 0
    if env.is_main:
        model = trainer.accelerator.unwrap_model(trainer.model)
        modeling.save_full_model(model, tokenizer, state_dict, model_dir, modeling.saved_dtype(config, runtime))


def resolve_training(config: TrainConfig, runtime: modeling.Runtime, num_parameters: int) -> dict[str, Any]:
    """The training settings decided at run time: learning rate, gradient checkpointing and batching."""
    batching = config.batching
    if batching == "auto":
        batching = "padding_free" if runtime.padding_free_capable else "length_grouped"
    return {
        "learning_rate": resolve_learning_rate(config, num_parameters),
        "gradient_checkpointing": modeling.use_gradient_checkpointing(config, runtime, num_parameters),
        "batching": batching,
    }


def evaluate_baseline(
    config: TrainConfig,
    env: SageMakerEnv,
    runtime: modeling.Runtime,
    token: str | None,
    tokenizer: Any,
    setup: EvalSetup,
    model_card: dict[str, Any],
    resolved: dict[str, Any],
    dataset_rows: dict[str, int],
    timing: phases.Phases,
) -> int:
    """approach=baseline: generate with the untrained base model and score it like any trained one.

    No trainer, optimizer or checkpoint. The artifact is small and holds no weights (the base model is on the Hub):
    labels.json (how the model was prompted), training_config.json (what was evaluated, with a note) and
    metrics.json. A failure fails the job: unlike a trained job, there is nothing else to keep.
    """
    model_dir = env.model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / LABELS_FILE).write_text(json.dumps(model_card, indent=2) + "\n")
    note = {
        "hyperparameters": as_dict(config),
        "resolved": resolved,
        **model_card,
        "baseline": {
            "base_model": config.model_id,
            "note": "zero-shot baseline: the base model evaluated without training (listed-labels prompt, "
            f"{config.decoding} decoding); no weights are saved here, load the base model by its id",
        },
    }
    (model_dir / "training_config.json").write_text(json.dumps(note, indent=2) + "\n")

    with timing.timed("load"):
        model = modeling.load_base_for_inference(config, runtime, token, **_placement(runtime, setup))
    with timing.timed("evaluate"):
        try:
            generations = _generate(model, tokenizer, setup, config)
        finally:
            del model
            _free_memory(runtime)  # BERTScore runs next
        peak = telemetry.peak_memory_gb(runtime.use_cuda)  # the high-water mark of generation, before BERTScore's
        scores = _score(generations, setup, runtime)
    scores.metrics["peak_memory_gb"] = peak
    scores.metrics.update(dataset_rows)
    report(scores, scores, env, model_dir)
    LOG.info("done: baseline metrics in %s", model_dir)
    return EXIT_OK


def report(new: evaluation.Scores, everything: evaluation.Scores, env: SageMakerEnv, model_dir: Path) -> None:
    """Print the metric lines of `new` (SageMaker parses them) and write metrics.json with `everything` (rank 0)."""
    telemetry.print_final_metrics(new.metrics)
    for name, reason in new.missing.items():
        LOG.warning("metric %s is missing: %s", name, reason)
    telemetry.write_metrics_json(everything.metrics, everything.missing, env.output_data_dir, model_dir)
    if new.predictions:
        evaluation.write_predictions(new.predictions, env.output_data_dir, model_dir)


@dataclass(frozen=True)
class Channels:
    """The rows of the train and test channels, read and checked before any model is loaded."""

    train: list[Any]
    labels: list[str]
    """The classification label set (from train); empty for task sft."""
    evaluated: list[Any]
    """The test examples drawn for evaluation (none when eval_samples=0)."""
    eval_indices: list[int]
    rows: dict[str, int]
    """The channels' row counts, as their metrics (`dataset_train_rows`, `dataset_test_rows`)."""
    fmt: data.PromptFormat | None
    """The classification prompt format; None for task sft (its rows carry their prompts)."""


@dataclass(frozen=True)
class Prompts:
    """Tokenized training data and evaluation prompts: the same shape for both tasks from here on."""

    train_dataset: Any  # datasets.Dataset
    eval_prompts: list[str]
    label_sequences: list[list[int]]
    """Every label's tokens as generated after a prompt (classification; empty for sft): the constrained trie."""
    max_new_tokens: int
    lengths: data.LengthReport
    model_card: dict[str, Any]
    stop_token_ids: list[int] | None


@dataclass(frozen=True)
class Job:
    """What every stage after the tokenizer shares: the configuration, this process and its loaded pieces."""

    config: TrainConfig
    env: SageMakerEnv
    runtime: modeling.Runtime
    token: str | None
    tokenizer: Any
    timing: phases.Phases
    hyperparameters: dict[str, Any]


@dataclass
class Training:
    """The trainer and what was built with it, handed from `build_trainer` to the stages that use them."""

    trainer: Any  # trl.SFTTrainer
    args: Any  # trl.SFTConfig
    optimizer: lean.LeanAdamW | None
    checkpoint_callback: Any
    save_timer: phases.SaveTimer
    counter: data.PaddingCounter
    stop: checkpoints.StopRequest
    resume_from: Path | None


@dataclass(frozen=True)
class Trained:
    """The training loop's outcome: its seconds and loss (0.0 and None when resumed after the last step)."""

    seconds: float
    loss: float | None


def read_config(argv: list[str], env: SageMakerEnv) -> TrainConfig:
    """Stage 1: parse and validate the hyperparameters, log them and what they mean for this job."""
    config = parse_hyperparameters(argv)
    validate(config, env)
    LOG.info("hyperparameters: %s", json.dumps(as_dict(config), sort_keys=True))
    if config.is_baseline:
        LOG.info("approach=baseline: zero-shot evaluation of the base model; the training settings are unused")
    elif config.merge_adapter and not config.is_peft:
        LOG.warning("merge_adapter is ignored for approach=full: the saved model is already complete")
    return config


def channel_dir(directory: Path | None, channel: str) -> Path:
    """A channel's directory. `config.validate` has refused a missing one already (ConfigError naming the variable);
    this narrows the type, and says which channel should a caller skip that check."""
    if directory is None:
        raise data.DataError(f"the job has no {channel} channel (SM_CHANNEL_{channel.upper()} is not set)")
    return directory


def read_channels(config: TrainConfig, env: SageMakerEnv) -> Channels:
    """Stage 2: read the train channel, and the test channel when evaluating; draw the evaluation samples."""
    # task=sft reads instruction/chat rows (sft.py); classification reads {"text", "label"} rows.
    read_rows: Callable[[Path], list[Any]] = sft.read_sft_dir if config.is_sft else data.read_jsonl_dir
    train_examples = read_rows(channel_dir(env.train_dir, "train"))
    labels = [] if config.is_sft else data.label_set(train_examples)
    if config.is_sft and not train_examples:
        raise data.DataError(f"the train channel {env.train_dir} has no rows")
    eval_examples: list[Any] = []
    eval_indices: list[int] = []
    dataset_rows = {"dataset_train_rows": len(train_examples)}
    if config.eval_samples > 0:
        test_examples = read_rows(channel_dir(env.test_dir, "test"))
        dataset_rows["dataset_test_rows"] = len(test_examples)
        if not test_examples:
            raise data.DataError(f"the test channel {env.test_dir} has no rows; eval_samples=0 skips evaluation")
        unseen = [] if config.is_sft else sorted({example.label for example in test_examples} - set(labels))
        if unseen:
            LOG.warning("test labels never seen in train count as errors: %s", ", ".join(unseen))
        eval_indices = data.select_eval_indices(len(test_examples), config.eval_samples, config.seed)
        eval_examples = [test_examples[index] for index in eval_indices]
    LOG.info("%d train examples, %d labels, %d eval examples", len(train_examples), len(labels), len(eval_examples))
    fmt = None if config.is_sft else data.prompt_format(config.prompt_style, labels)
    return Channels(train_examples, labels, eval_examples, eval_indices, dataset_rows, fmt)


def read_token(config: TrainConfig) -> str | None:
    """The Hugging Face token from its secret, or None (no secret, or a local model that needs none)."""
    if config.hf_token_secret_arn and Path(config.model_id).expanduser().is_dir():
        LOG.info("model_id is a local directory: the Hugging Face token is not needed and not read")
        return None
    if config.hf_token_secret_arn:
        return read_hf_token(config.hf_token_secret_arn)  # never logged; None when the secret holds no token
    return None


def prepare_prompts(config: TrainConfig, tokenizer: Any, channels: Channels) -> Prompts:
    """Stage 3: the training data as prompt/completion pairs and the evaluation prompts, with their lengths."""
    if config.is_sft:
        prepared = sft.prepare(tokenizer, channels.train, channels.evaluated)
        return Prompts(
            train_dataset=prepared.train_dataset,
            eval_prompts=prepared.eval_prompts,
            label_sequences=[],
            max_new_tokens=prepared.max_new_tokens,
            lengths=prepared.lengths,
            model_card=prepared.model_card,
            stop_token_ids=prepared.stop_token_ids,
        )
    fmt, eos = channels.fmt, tokenizer.eos_token
    assert fmt is not None
    train_dataset = data.to_prompt_completion(channels.train, fmt, eos)
    eval_prompts = [fmt.prompt(example.text) for example in channels.evaluated]
    # Every label's tokens as generated after a prompt: the generation room and the constrained-decoding trie.
    label_sequences = evaluation.label_token_sequences(tokenizer, train_dataset["prompt"][0], channels.labels, eos)
    max_new_tokens = max(len(sequence) for sequence in label_sequences) + data.FREE_ANSWER_SLACK_TOKENS
    return Prompts(
        train_dataset=train_dataset,
        eval_prompts=eval_prompts,
        label_sequences=label_sequences,
        max_new_tokens=max_new_tokens,
        lengths=data.measure_lengths(tokenizer, train_dataset, eval_prompts, max_new_tokens),
        model_card=fmt.describe(eos),
        stop_token_ids=None,
    )


def effective_batch_size(config: TrainConfig, env: SageMakerEnv) -> int:
    """Samples per optimizer step: per-device batch x gradient accumulation x data-parallel ranks (every process
    of ddp/fsdp sees its own batch; single, split and lean run one process)."""
    return config.per_device_batch_size * config.gradient_accumulation_steps * env.world_size


def resolve_settings(
    config: TrainConfig, env: SageMakerEnv, runtime: modeling.Runtime, info: modeling.ModelInfo, prompts: Prompts
) -> dict[str, Any]:
    """Stage 4: every setting decided at run time (`auto` values, the strategy this process trains with), logged,
    and the hyperparameters actually used printed once as `resolved_*` metric lines (rank 0)."""
    strategy = effective_strategy(config, env)
    if strategy != config.strategy:
        LOG.info("strategy=%s with one process trains as %s", config.strategy, strategy)
    resolved: dict[str, Any] = {
        "num_parameters": info.num_parameters,
        "attn_implementation": runtime.attn_implementation,
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "world_size": env.world_size,
        "strategy": strategy,
        "max_seq_length": data.resolve_max_seq_length(config.max_seq_length, prompts.lengths, info.max_positions),
        "longest_sequence": prompts.lengths.longest,
        "mean_sequence": round(prompts.lengths.mean_train, 1),
        "eval_max_new_tokens": prompts.max_new_tokens,
    }
    if not config.is_baseline:  # a baseline trains nothing: no rate, batch, recomputation or batching to decide
        resolved.update(resolve_training(config, runtime, info.num_parameters))
        resolved["effective_batch_size"] = effective_batch_size(config, env)
    LOG.info("resolved: %s", json.dumps(resolved, sort_keys=True))
    if env.is_main:
        telemetry.print_resolved_metrics(resolved)
    return resolved


def build_eval_setup(
    job: Job, channels: Channels, prompts: Prompts, info: modeling.ModelInfo, max_seq_length: int
) -> EvalSetup | None:
    """Stage 5: everything evaluation needs, fixed before training (None when nothing is evaluated)."""
    if not channels.evaluated:
        return None
    config = job.config
    # Constrained decoding chooses among labels; an sft answer is free text.
    constrained = config.decoding == "constrained" and not config.is_sft
    return EvalSetup(
        examples=channels.evaluated,
        prompts=prompts.eval_prompts,
        labels=channels.labels,
        trie=evaluation.LabelTrie(prompts.label_sequences, job.tokenizer.eos_token_id) if constrained else None,
        max_new_tokens=prompts.max_new_tokens,
        # Fetched now, before training: a missing encoder fails the job before GPU hours are spent on it.
        bertscore=evaluation.prepare_bertscore(config.bertscore_model, job.token) if job.env.is_main else None,
        reserve_bytes=modeling.inference_reserve_bytes(
            info, config.eval_batch_size, max_seq_length, job.runtime.dtype.itemsize
        ),
        indices=channels.eval_indices,
        add_special_tokens=not config.is_sft,
        stop_token_ids=prompts.stop_token_ids,
    )


def training_arguments(job: Job, resolved: dict[str, Any], info: modeling.ModelInfo):  # -> trl.SFTConfig
    """The trainer arguments for the resolved settings; creating them sets up torch.distributed under torchrun
    (before the model is loaded), so that resuming can be agreed between ranks."""
    if job.config.uses_fsdp:
        fsdp.apply_environment()  # read by accelerate when the trainer builds its FSDP plugin
    args = build_sft_config(
        job.config,
        job.env,
        job.runtime,
        resolved["learning_rate"],
        resolved["gradient_checkpointing"],
        resolved["batching"],
        info.layer_classes,
    )
    _ = args.device  # initialises the process group now: resuming is agreed between ranks
    return args


def resume_point(job: Job, checkpoint_dir: Path) -> checkpoints.ResumePlan:
    """The newest verified checkpoint every rank agrees on (checked against these hyperparameters), or none."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    resume = checkpoints.plan_resume(checkpoint_dir, job.config.save_total_limit, is_local_main=job.env.local_rank == 0)
    if resume.resume_from is not None:
        checkpoints.check_resumable(resume.resume_from, job.hyperparameters)
        LOG.info("resuming from %s", resume.resume_from)
    return resume


def build_trainer(
    job: Job, resolved: dict[str, Any], prompts: Prompts, info: modeling.ModelInfo, clock: Callable[[], float]
) -> Training:
    """Stage 6: trainer arguments, the resume decision, the model, the checkpoint and progress callbacks, and the
    trainer over them, its supervision checked."""
    from transformers import PrinterCallback
    from trl import SFTTrainer

    config, env = job.config, job.env
    args = training_arguments(job, resolved, info)
    checkpoint_dir = Path(config.checkpoint_dir)
    resume = resume_point(job, checkpoint_dir)

    with job.timing.timed("load"):
        model = modeling.load_model(config, job.runtime, job.token, env.local_rank)
    # lean steps every parameter inside backward: the Trainer gets that optimizer instead of building AdamW.
    optimizer = lean.make_optimizer(model, resolved["learning_rate"], args) if config.strategy == "lean" else None
    stop = checkpoints.StopRequest()
    checkpoint_callback = checkpoints.make_checkpoint_callback(
        checkpoint_dir,
        config.save_total_limit,
        resume.kept_steps,
        job.hyperparameters,
        stop,
        checkpoints.SaveSchedule(config.save_interval_seconds, clock),
        is_main=env.is_main,
        is_local_main=env.local_rank == 0,
    )
    # After the checkpoint callback: it times each save from that callback's decision to its marking (phases.py).
    save_timer_callback, save_timer = phases.make_save_timer(checkpoint_dir)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=prompts.train_dataset,
        processing_class=job.tokenizer,
        peft_config=modeling.lora_config(config) if config.is_peft else None,
        callbacks=[checkpoint_callback, save_timer_callback, telemetry.make_progress_callback(env.is_main)],
        optimizers=(optimizer, None),
    )
    del model  # the trainer holds it (wrapped with the adapter); releasing it later must not leave a reference here
    trainer.remove_callback(PrinterCallback)  # our progress callback prints the catalog lines instead
    if config.is_sft:
        sft.assert_answers_supervised(trainer.train_dataset)
    else:
        data.assert_completions_supervised(trainer.train_dataset, job.tokenizer.eos_token_id)
    counter = data.PaddingCounter(trainer.data_collator)
    trainer.data_collator = counter
    return Training(
        trainer, args, optimizer, checkpoint_callback, save_timer, counter, stop, resume_from=resume.resume_from
    )


def train_or_resume(job: Job, training: Training) -> Trained | None:
    """Stage 7: train (resuming from the newest verified checkpoint), or load the final checkpoint when training
    already finished; None when SIGTERM stopped training after its checkpoint."""
    from transformers import TrainerState

    trainer, resume_from = training.trainer, training.resume_from
    if resume_from is not None and checkpoints.is_final(resume_from, job.hyperparameters):
        # Training already finished (a restart during evaluation or upload): load the final weights and state.
        LOG.info("%s is this run's last step: training is complete, evaluating it", resume_from.name)
        trainer._load_from_checkpoint(str(resume_from))  # the Trainer's own loader: full weights, adapters, FSDP
        trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
        job.timing.record_training(0.0, training.save_timer)
        return Trained(seconds=0.0, loss=None)
    training.stop.install()
    started = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        training.stop.uninstall()
    trained = Trained(seconds=time.perf_counter() - started, loss=output.training_loss)
    job.timing.record_training(trained.seconds, training.save_timer)
    if training.stop.requested:
        LOG.warning("stopped by SIGTERM at step %d; the next start resumes from it", trainer.state.global_step)
        return None
    return trained


def training_metrics(job: Job, training: Training, trained: Trained, dataset_rows: dict[str, int]) -> dict[str, float]:
    """The training metrics over every rank: tokens per second and padding (summed), peak memory (max), loss."""
    counter, device = training.counter, training.args.device
    real, padded = _reduce([counter.real_tokens, counter.batch_tokens], "sum", device)
    (peak,) = _reduce([telemetry.peak_memory_gb(job.runtime.use_cuda)], "max", device)
    metrics: dict[str, float] = {"train_runtime_seconds": trained.seconds, "peak_memory_gb": peak, **dataset_rows}
    final_loss = telemetry.last_logged_loss(training.trainer.state.log_history)
    loss = final_loss if final_loss is not None else trained.loss
    if loss is not None:
        metrics["train_loss"] = loss
    if real > 0:  # a restart after the last step trains nothing: no throughput to report
        metrics["train_tokens_per_second"] = real / trained.seconds
        metrics["train_padding_fraction"] = 1.0 - real / padded
    return metrics


def write_model_card(job: Job, training: Training, resolved: dict[str, Any], model_card: dict[str, Any]) -> None:
    """Rank 0, before evaluation: labels.json and training_config.json next to the model, so that whatever happens
    next the artifact says how to prompt the model and what it was trained with."""
    if not job.env.is_main:
        return
    model_dir = job.env.model_dir
    (model_dir / LABELS_FILE).write_text(json.dumps(model_card, indent=2) + "\n")
    saves = training.checkpoint_callback.stats
    training_config = {
        "hyperparameters": job.hyperparameters,
        "resolved": resolved,
        **model_card,
        "global_step": training.trainer.state.global_step,
        "checkpoints": {"saves": saves.saves, "steps": saves.steps, "seconds": round(saves.seconds, 1)},
    }
    (model_dir / "training_config.json").write_text(json.dumps(training_config, indent=2) + "\n")


def evaluate_and_report(
    job: Job,
    trainer: Any,
    plan: modeling.EvaluationPlan,
    setup: EvalSetup | None,
    metrics: dict[str, float],
    model_card: dict[str, Any],
) -> None:
    """Stage 9 (rank 0): evaluate the trained model, report, then merge the adapter and time the merged model."""
    config, model_dir = job.config, job.env.model_dir
    results = evaluation.Scores(metrics=metrics)
    with job.timing.timed("evaluate"):  # the reload, generation, scoring and the merged model's timing
        if setup is not None:
            scores = evaluate_trained(trainer, plan, config, job.runtime, job.token, job.tokenizer, setup, model_dir)
            results.metrics.update(scores.metrics)
            results.missing.update(scores.missing)
            results.predictions = scores.predictions
        report(results, results, job.env, model_dir)
        if config.is_peft and config.merge_adapter:
            merged = merge_and_time(config, job.runtime, job.token, job.tokenizer, setup, model_dir, model_card)
            results.metrics.update(merged.metrics)
            results.missing.update(merged.missing)
            report(merged, results, job.env, model_dir)


def train_save_evaluate(
    job: Job,
    resolved: dict[str, Any],
    channels: Channels,
    prompts: Prompts,
    info: modeling.ModelInfo,
    setup: EvalSetup | None,
    clock: Callable[[], float],
) -> int:
    """Stages 6-9 of a training job: build the trainer, train, save (every rank), then evaluate on rank 0."""
    training = build_trainer(job, resolved, prompts, info, clock)
    trained = train_or_resume(job, training)
    if trained is None:
        return EXIT_STOPPED
    if training.optimizer is not None:
        training.optimizer.remove_hooks()  # no more training: evaluation must not step the weights
    with job.timing.timed("save"):
        save_final_model(training.trainer, job.tokenizer, job.config, job.runtime, job.env, job.env.model_dir)
    metrics = training_metrics(job, training, trained, channels.rows)
    write_model_card(job, training, resolved, prompts.model_card)

    # Evaluation runs on rank 0 alone, with one GPU's worth of timing for every approach; the other ranks free
    # their memory first (after FSDP, rank 0 spreads the reloaded model over the node's GPUs) and leave.
    trainer = training.trainer
    plan = modeling.plan_evaluation(rank=job.env.rank, fsdp=trainer.is_fsdp_enabled)
    _release_training_state(trainer, job.runtime, keep_model=plan.keeps_trained_model and setup is not None)
    _leave_process_group()
    if not job.env.is_main:
        return EXIT_OK
    evaluate_and_report(job, trainer, plan, setup, metrics, prompts.model_card)
    LOG.info("done: artifacts in %s", job.env.model_dir)
    return EXIT_OK


def run(argv: list[str], env: SageMakerEnv, clock: Callable[[], float] = time.monotonic) -> int:
    """The whole job as its stages; returns the exit status (exceptions are handled by `main`). `clock` times
    checkpoint saves."""
    config = read_config(argv, env)
    if config.is_baseline and not env.is_main:
        # One process evaluates a baseline; under a launcher that started more, the others leave at once.
        return EXIT_OK
    timing = phases.Phases(env.is_main)
    channels = read_channels(config, env)
    token = read_token(config)
    runtime = modeling.detect_runtime(env.local_rank)
    with timing.timed("download"):
        # Every rank of a node asks: huggingface_hub locks each file, so one downloads and the others wait for it
        # (no process group exists yet to agree through).
        phases.download_snapshot(config.model_id, token)
    tokenizer = modeling.load_tokenizer(config.model_id, token)
    job = Job(config, env, runtime, token, tokenizer, timing, hyperparameters=as_dict(config))
    prompts = prepare_prompts(config, tokenizer, channels)
    info = modeling.inspect_model(config.model_id, token)
    resolved = resolve_settings(config, env, runtime, info, prompts)
    setup = build_eval_setup(job, channels, prompts, info, resolved["max_seq_length"])
    if config.is_baseline:
        assert setup is not None  # validate() requires eval_samples >= 1 for a baseline
        return evaluate_baseline(
            config, env, runtime, token, tokenizer, setup, prompts.model_card, resolved, channels.rows, timing
        )
    return train_save_evaluate(job, resolved, channels, prompts, info, setup, clock)


def main(argv: list[str] | None = None, clock: Callable[[], float] = time.monotonic) -> int:
    """Entry point: run the job, turn any exception into $SM_OUTPUT_DIR/failure and a non-zero exit status."""
    env = SageMakerEnv.from_environ()
    setup_logging(env)
    try:
        return run(list(sys.argv[1:] if argv is None else argv), env, clock)
    except (ConfigError, data.DataError, evaluation.EvaluationSetupError, TokenError) as exc:
        LOG.error("%s", exc)
        write_failure(env, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        LOG.error("training failed:\n%s", traceback.format_exc())
        write_failure(env, f"{type(exc).__name__}: {exc}")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
