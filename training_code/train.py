"""Fine-tune a causal LM for intent classification: full fine-tuning, LoRA or QLoRA, spot-safe, then evaluate.

Run by SageMaker's Hugging Face PyTorch DLC (`python train.py --name value ...`, or `torchrun --nproc_per_node N
train.py ...` when distributed training is enabled), or locally on CPU with the same environment variables:

    SM_CHANNEL_TRAIN=data/train SM_CHANNEL_TEST=data/test SM_MODEL_DIR=out/model SM_OUTPUT_DATA_DIR=out/data \
    SM_OUTPUT_DIR=out python training_code/train.py --model_id ./tiny-llama --approach lora --max_steps 30 \
        --checkpoint_dir out/checkpoints --bertscore_model <local encoder dir>

Read top to bottom, `run` is the whole job: validate → read data → tokenizer and length checks (all before any
model is loaded) → model → train (resuming from the latest complete checkpoint) → save → evaluate → report → merge.
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
import time
import traceback
from typing import Any

from training_code import checkpoints, data, evaluation, modeling, telemetry
from training_code.config import (
    ConfigError,
    SageMakerEnv,
    TrainConfig,
    as_dict,
    parse_hyperparameters,
    resolve_learning_rate,
    validate,
)
from training_code.hf_token import read_hf_token

LOG = logging.getLogger("train")

EXIT_OK, EXIT_FAILED, EXIT_STOPPED = 0, 1, 143  # 143 = 128 + SIGTERM, as a shell reports a terminated process
FAILURE_REASON_LIMIT = 1024  # SageMaker's FailureReason length


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


def _release_training_state(trainer: Any, runtime: modeling.Runtime) -> None:
    """Drop the trainer's model, optimizer and accelerator references so their (GPU) memory can be reused."""
    trainer.accelerator.free_memory()
    trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None
    gc.collect()
    if runtime.use_cuda:
        import torch

        torch.cuda.empty_cache()


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
    """TRL/Trainer arguments: checkpoints every save_steps into checkpoint_dir, no Trainer-side rotation."""
    from trl import SFTConfig

    fsdp_kwargs: dict[str, Any] = {}
    if config.fsdp:
        # FSDP wraps each decoder layer; FSDP does its own activation checkpointing (the Trainer's would clash).
        fsdp_kwargs = {
            "fsdp": config.fsdp,
            "fsdp_config": {
                "transformer_layer_cls_to_wrap": layer_classes,
                "activation_checkpointing": gradient_checkpointing,
                "use_orig_params": True,  # lets LoRA mix frozen and trainable parameters in one flat parameter
                "cpu_ram_efficient_loading": True,  # rank 0 reads the weights, the others receive them
                "sync_module_states": True,
                "state_dict_type": "SHARDED_STATE_DICT",  # fast checkpoints; the final save switches to full
            },
        }
        gradient_checkpointing = False
    return SFTConfig(
        output_dir=config.checkpoint_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=learning_rate,
        seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,  # the first loss shows at once that the run is alive and where it starts
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,  # rotation is ours: by step among complete checkpoints (see checkpoints.py)
        bf16=runtime.bf16,
        fp16=runtime.fp16,
        use_cpu=not runtime.use_cuda,
        gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        # QLoRA's paged 8-bit AdamW: optimizer states in 8 bits, paged to host memory on spikes.
        optim="paged_adamw_8bit" if config.approach == "qlora" else "adamw_torch",
        completion_only_loss=True,
        max_length=None,  # lengths were checked against max_seq_length: nothing may be truncated
        padding_free=batching == "padding_free",
        train_sampling_strategy="group_by_length" if batching == "length_grouped" else "random",
        # NCCL on GPUs (the default); gloo for CPU processes under torchrun. Single process: no process group.
        ddp_backend="gloo" if env.world_size > 1 and not runtime.use_cuda else None,
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=runtime.use_cuda,
        report_to="none",
        disable_tqdm=True,
        **fsdp_kwargs,
    )


def evaluate_model(
    model: Any,
    tokenizer: Any,
    config: TrainConfig,
    env: SageMakerEnv,
    runtime: modeling.Runtime,
    examples: list[data.Example],
    labels: list[str],
) -> dict[str, float]:
    """Generate on this rank's shard of the eval examples, gather on rank 0, score there."""
    prompts = [data.build_prompt(example.text, labels) for example in examples]
    sequences = evaluation.label_token_sequences(tokenizer, prompts[0], labels, tokenizer.eos_token)
    max_new_tokens = max(len(sequence) for sequence in sequences) + 2  # room for a wrong, longer answer
    trie = evaluation.LabelTrie(sequences, tokenizer.eos_token_id) if config.decoding == "constrained" else None
    indices = list(range(env.rank, len(prompts), env.world_size))
    local = evaluation.generate(
        model,
        tokenizer,
        [prompts[i] for i in indices],
        batch_size=config.per_device_batch_size,
        max_new_tokens=max_new_tokens,
        device=runtime.device,
        trie=trie,
    )
    shards = [(indices, local.outputs, local.seconds)]
    if _distributed():
        import torch.distributed as dist

        shards = [None] * env.world_size
        dist.all_gather_object(shards, (indices, local.outputs, local.seconds))
    if not env.is_main:
        return {}
    outputs = [""] * len(prompts)
    for shard_indices, shard_outputs, _ in shards:
        for index, output in zip(shard_indices, shard_outputs, strict=True):
            outputs[index] = output
    seconds = max(shard[2] for shard in shards)  # the ranks generate in parallel: wall time is the slowest shard
    for example, output in list(zip(examples, outputs, strict=True))[:3]:
        LOG.info("sample prediction: %r → %r (reference %r)", example.text, output.strip(), example.label)
    return evaluation.score(
        outputs, [example.label for example in examples], labels, seconds, config.bertscore_model, runtime.device
    )


def run(argv: list[str], env: SageMakerEnv) -> int:
    """The whole job; returns the exit status (exceptions are handled by `main`)."""
    config = parse_hyperparameters(argv)
    validate(config, env)
    hyperparameters = as_dict(config)
    LOG.info("hyperparameters: %s", json.dumps(hyperparameters, sort_keys=True))
    if config.merge_adapter and not config.is_peft:
        LOG.warning("merge_adapter is ignored for approach=full: the saved model is already complete")

    train_examples = data.read_jsonl_dir(env.train_dir)
    labels = data.label_set(train_examples)
    eval_examples: list[data.Example] = []
    if config.eval_samples > 0:
        test_examples = data.read_jsonl_dir(env.test_dir)
        if not test_examples:
            raise data.DataError(f"the test channel {env.test_dir} has no rows; eval_samples=0 skips evaluation")
        unseen = sorted({example.label for example in test_examples} - set(labels))
        if unseen:
            LOG.warning("test labels never seen in train count as errors: %s", ", ".join(unseen))
        eval_examples = data.select_eval_examples(test_examples, config.eval_samples, config.seed)
    LOG.info("%d train examples, %d labels, %d eval examples", len(train_examples), len(labels), len(eval_examples))

    token = None
    if config.hf_token_secret_arn and Path(config.model_id).expanduser().is_dir():
        LOG.info("model_id is a local directory: the Hugging Face token is not needed and not read")
    elif config.hf_token_secret_arn:
        token = read_hf_token(config.hf_token_secret_arn)  # never logged
    runtime = modeling.detect_runtime(env.local_rank)
    tokenizer = modeling.load_tokenizer(config.model_id, token)
    train_dataset = data.to_prompt_completion(train_examples, labels, tokenizer.eos_token)
    lengths = data.check_sequence_lengths(tokenizer, train_dataset, config.max_seq_length)
    info = modeling.inspect_model(config.model_id, token)
    learning_rate = resolve_learning_rate(config, info.num_parameters)
    gradient_checkpointing = modeling.use_gradient_checkpointing(config, runtime, info.num_parameters)
    batching = config.batching
    if batching == "auto":
        batching = "padding_free" if runtime.padding_free_capable else "length_grouped"
    resolved = {
        "num_parameters": info.num_parameters,
        "learning_rate": learning_rate,
        "gradient_checkpointing": gradient_checkpointing,
        "batching": batching,
        "attn_implementation": runtime.attn_implementation,
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "world_size": env.world_size,
        "longest_sequence": lengths.longest,
        "mean_sequence": round(lengths.mean, 1),
    }
    LOG.info("resolved: %s", json.dumps(resolved, sort_keys=True))

    checkpoint_dir = Path(config.checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if env.is_main:
        for path in checkpoints.remove_incomplete(checkpoint_dir):
            LOG.warning("removed incomplete checkpoint %s (killed while saving)", path.name)
    resume_from = checkpoints.latest_complete_checkpoint(checkpoint_dir)
    if resume_from is not None:
        checkpoints.check_resumable(resume_from, hyperparameters)
        LOG.info("resuming from %s", resume_from)

    # Creating the trainer arguments sets up torch.distributed under torchrun (before the model is loaded).
    from transformers import PrinterCallback, TrainerState
    from trl import SFTTrainer

    args = build_sft_config(config, env, runtime, learning_rate, gradient_checkpointing, batching, info.layer_classes)
    model = modeling.load_model(config, runtime, token, env.local_rank)
    stop = checkpoints.StopRequest()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=modeling.lora_config(config) if config.is_peft else None,
        callbacks=[
            checkpoints.make_checkpoint_callback(
                checkpoint_dir, config.save_total_limit, hyperparameters, stop, env.is_main
            ),
            telemetry.make_progress_callback(env.is_main),
        ],
    )
    del model  # the trainer holds it (wrapped with the adapter); releasing it later must not leave a reference here
    trainer.remove_callback(PrinterCallback)  # our progress callback prints the catalog lines instead
    data.assert_completions_supervised(trainer.train_dataset, tokenizer.eos_token_id)
    counter = data.PaddingCounter(trainer.data_collator)
    trainer.data_collator = counter

    if resume_from is not None and checkpoints.is_final(resume_from, hyperparameters):
        # Training already finished (a restart during evaluation or upload): load the final weights and state.
        LOG.info("%s is this run's last step: training is complete, evaluating it", resume_from.name)
        trainer._load_from_checkpoint(str(resume_from))  # the Trainer's own loader: full weights, adapters, FSDP
        trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
        train_seconds, trained_loss = 0.0, None
    else:
        stop.install()
        started = time.perf_counter()
        try:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        finally:
            stop.uninstall()
        train_seconds, trained_loss = time.perf_counter() - started, output.training_loss
        if stop.requested:
            LOG.warning("stopped by SIGTERM at step %d; the next start resumes from it", trainer.state.global_step)
            return EXIT_STOPPED

    model_dir = env.model_dir
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(model_dir))  # every rank calls it (FSDP gathers); only rank 0 writes

    real, padded = _reduce([counter.real_tokens, counter.batch_tokens], "sum", args.device)
    (peak,) = _reduce([telemetry.peak_memory_gb(runtime.use_cuda)], "max", args.device)
    metrics: dict[str, float] = {"train_runtime_seconds": train_seconds, "peak_memory_gb": peak}
    final_loss = telemetry.last_logged_loss(trainer.state.log_history)
    if final_loss is not None or trained_loss is not None:
        metrics["train_loss"] = final_loss if final_loss is not None else trained_loss
    if real > 0:  # a restart after the last step trains nothing: no throughput to report
        metrics["train_tokens_per_second"] = real / train_seconds
        metrics["train_padding_fraction"] = 1.0 - real / padded
    global_step = trainer.state.global_step
    if eval_examples:
        if trainer.is_fsdp_enabled:
            # Generation through FSDP shards is impractical: free them, every rank reloads the saved full model.
            _release_training_state(trainer, runtime)
            eval_model = modeling.load_for_inference(model_dir, runtime)
        else:
            eval_model = trainer.model
        metrics.update(evaluate_model(eval_model, tokenizer, config, env, runtime, eval_examples, labels))
        del eval_model
    _leave_process_group()  # the last collective is behind us; rank 0 finishes alone (report, merge)

    if not env.is_main:
        return EXIT_OK
    telemetry.print_final_metrics(metrics)
    telemetry.write_metrics_json(metrics, env.output_data_dir, model_dir)
    training_config = {
        "hyperparameters": hyperparameters,
        "resolved": resolved,
        "labels": labels,
        "prompt_template": data.PROMPT_TEMPLATE,
        "global_step": global_step,
    }
    (model_dir / "training_config.json").write_text(json.dumps(training_config, indent=2) + "\n")
    if config.is_peft and config.merge_adapter:
        _release_training_state(trainer, runtime)  # room for the full-precision base on the GPU
        merged = modeling.merge_adapter(config.model_id, model_dir, model_dir / "merged", runtime, token, tokenizer)
        LOG.info("merged adapter into %s", merged)
    LOG.info("done: artifacts in %s", model_dir)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the job, turn any exception into $SM_OUTPUT_DIR/failure and a non-zero exit status."""
    env = SageMakerEnv.from_environ()
    setup_logging(env)
    try:
        return run(list(sys.argv[1:] if argv is None else argv), env)
    except (ConfigError, data.DataError) as exc:
        LOG.error("%s", exc)
        write_failure(env, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        LOG.error("training failed:\n%s", traceback.format_exc())
        write_failure(env, f"{type(exc).__name__}: {exc}")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
