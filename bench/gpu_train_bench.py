"""GPU bench of what decides the plans (issue 18): memory against the planner, step and decode times, FSDP, lean.

    python bench/gpu_train_bench.py --out bench-results.jsonl          # on one H100: every case, <= 8 minutes
    python bench/gpu_train_bench.py --cases lora-b8,lean-b8             # a subset
    python bench/gpu_train_bench.py --dry-run                           # tiny shapes on the CPU: the script runs

Every case trains a randomly initialised model of a real shape (no Hub on the device: Llama-2-7B's by default,
`--size`), saved once to local disk, with exactly the model loading, strategy, PEFT/quantization config and trainer
arguments `train.py` uses (`build_sft_config`, `modeling.load_model`, `lean.make_optimizer`), checkpointing off,
on the bundled banking77-mini messages with compact prompts (~35 tokens per example with Mistral's tokenizer).

Cases (CASES): LoRA and QLoRA at batch 1 and 8 (peak memory against the planner, step time); DoRA at batch 8 (its
per-forward weight rebuild against the planner's and the time model's count); lean full fine-tuning at batch 8; one
single-process FSDP LoRA run showing what transformers 5.3 builds (dtypes of the flat parameters, peak memory, one
sharded checkpoint's files, bytes and seconds); a plain transformers Trainer + PEFT baseline (no TRL, no project
code) at batch 8; and evaluation decode time with constrained decoding over the 77 labels.

Reported per case (one JSON line each, then a markdown table for docs/benchmarks.md):
  step_seconds            mean wall seconds per optimizer step after `--warmup` steps
  tokens_per_second       non-padding tokens trained per second
  peak_memory_gib         torch.cuda.max_memory_allocated from model load to the end of the case
  planner_gib             the memory planner's per-GPU estimate (lambdas/memory.py), runtime reserve excluded
  mfu                     tokens/s x FLOPs per token / the GPU's peak (lambdas.catalog.ACCELERATORS: one table)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere: import training_code, finetune and lambdas

from training_code import data, evaluation, lean, modeling  # noqa: E402
from training_code.banking77 import LABELS as BANKING77_LABELS  # noqa: E402
from training_code.config import SageMakerEnv, TrainConfig, resolve_learning_rate  # noqa: E402

DATASET = REPO_ROOT / "examples" / "datasets" / "banking77-mini" / "train.jsonl"
SIZES = {
    # Llama-2-7B / Mistral-7B's dense shape (Mistral: GQA 8 KV heads, intermediate 14336; Llama-2: below).
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32, "vocab_size": 32000},
    # TinyLlama-1.1B's shape: a quicker run on a small GPU.
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32000},
    # For a dry run of this script on a CPU.
    "tiny": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 32000},
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One measurement: an approach and strategy at a batch size, through `train.py`'s code or plain HF."""

    name: str
    approach: str
    strategy: str
    batch_size: int
    kind: str = "train"  # train | hf_baseline | decode
    fsdp_checkpoint: bool = False


CASES = {
    case.name: case
    for case in (
        Case("lora-b1", "lora", "single", 1),
        Case("lora-b8", "lora", "single", 8),
        Case("qlora-b1", "qlora", "single", 1),
        Case("qlora-b8", "qlora", "single", 8),
        Case("dora-b8", "dora", "single", 8),
        Case("lean-b8", "full", "lean", 8),
        Case("hf-peft-b8", "lora", "single", 8, kind="hf_baseline"),
        Case("decode-constrained", "lora", "single", 8, kind="decode"),
        # Last: it starts a (one-process) process group, which the cases after it would then run under.
        Case("fsdp-lora-b8", "lora", "fsdp", 8, fsdp_checkpoint=True),
    )
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's options; `--dry-run` = tiny shapes, CPU allowed, 1 warm-up + 2 timed steps."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--size", choices=sorted(SIZES), default="7b")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing starts (kernels, allocator)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--decode-samples", type=int, default=64, help="prompts generated in the decode case")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s when the catalog lacks the GPU")
    parser.add_argument("--out", type=Path, help="append JSON lines here too")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on whatever device: the script runs")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASES)}")
    args.cases = [CASES[name] for name in names]
    if args.dry_run:
        args.size, args.warmup, args.steps, args.decode_samples = "tiny", 1, 2, 8
    return args


def load_examples() -> list[data.Example]:
    """The bundled banking77-mini training rows."""
    return [data.Example(**json.loads(line)) for line in DATASET.read_text().splitlines() if line.strip()]


def build_model(size: str, out_dir: Path) -> tuple[Path, bool]:
    """A random Llama of `size` saved in bf16 with the real Mistral tokenizer (or a BPE); returns (dir, real)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from finetune.local import tiny_model

    try:
        tokenizer = AutoTokenizer.from_pretrained(tiny_model.mistral_tokenizer_dir(out_dir / "tokenizer-source"))
        real_tokenizer = True
    except ImportError:  # mistral-common (a dev dependency) is not installed here
        texts = [example.text for example in load_examples()] + list(BANKING77_LABELS)
        tokenizer = tiny_model.train_bpe_tokenizer(texts, add_bos=True)
        real_tokenizer = False
    shape = {**SIZES[size], "vocab_size": len(tokenizer)}
    config = LlamaConfig(
        **shape, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    return out_dir, real_tokenizer


def catalog_peak_tflops(device_name: str) -> float | None:
    """The GPU's peak dense TFLOP/s from lambdas.catalog.ACCELERATORS (the one table), matched by name."""
    from lambdas import catalog

    matches = [gpu for name, gpu in catalog.ACCELERATORS.items() if name.lower() in device_name.lower()]
    best = max(matches, key=lambda gpu: len(gpu.name), default=None)
    return best.peak_tflops if best is not None and best.peak_tflops else None


def flops_per_token(num_parameters: int, size: str, approach: str) -> int:
    """The approach's training FLOPs per parameter (lambdas/approaches.py: 6N full, 4N with frozen weights, which
    need no weight gradients) x N, N = parameters but the embedding."""
    from lambdas import approaches

    shape = SIZES[size]
    matmul_parameters = num_parameters - shape["vocab_size"] * shape["hidden_size"]
    return approaches.get(approach).flops_per_parameter * matmul_parameters


def catalog_architecture(size: str):  # -> lambdas.catalog.Architecture
    """The shape `size` as the catalog describes a model (what the planner and the time model read)."""
    from lambdas import catalog

    shape = SIZES[size]
    return catalog.Architecture(
        hidden_size=shape["hidden_size"],
        layers=shape["num_hidden_layers"],
        heads=shape["num_attention_heads"],
        kv_heads=shape["num_key_value_heads"],
        intermediate_size=shape["intermediate_size"],
        vocab_size=shape["vocab_size"],
    )


def planner_prediction(size: str, case: Case, seq_length: int, lora_r: int) -> dict[str, Any]:
    """The memory planner's per-GPU training estimate for the case on one bf16 GPU, or why there is none.

    Imported defensively: the planner belongs to the Lambda side and its API may move; the bench still measures.
    """
    try:
        from lambdas import catalog, memory

        architecture = catalog_architecture(size)
        model = catalog.Model(f"bench-{size}", f"bench/{size}", architecture, architecture.parameters(), gated=False)
        instance = catalog.InstanceType("bench", 1, catalog.ACCELERATORS["H100"], 128, 0.0)
        workload = memory.Workload(model, case.approach, case.batch_size, seq_length, lora_r=lora_r)
        strategies = {strategy.value: strategy for strategy in memory.Strategy}
        strategy = strategies.get(case.strategy) or strategies.get("ddp") or next(iter(memory.Strategy))
        estimate = memory.estimate(workload, memory.Placement(instance), strategy)
        predicted = estimate.device.total - estimate.device.runtime
        return {"planner_gib": round(predicted / 2**30, 2), "planner_strategy": str(strategy.value)}
    except Exception as exc:  # the planner is optional here: report why, keep measuring
        return {"planner_gib": None, "planner_error": f"{type(exc).__name__}: {exc}"}


class Workbench:
    """What every case shares: the saved model, its tokenizer, the prompts, the device and the options."""

    def __init__(self, model_dir: Path, args: argparse.Namespace, work_dir: Path) -> None:
        import torch

        self.model_dir, self.args, self.work_dir = model_dir, args, work_dir
        self.runtime = modeling.detect_runtime(0)
        self.tokenizer = modeling.load_tokenizer(str(model_dir), None)
        self.fmt = data.prompt_format("compact", sorted(BANKING77_LABELS))
        self.examples = load_examples()
        self.dataset = data.to_prompt_completion(self.examples, self.fmt, self.tokenizer.eos_token)
        self.lengths = data.measure_lengths(self.tokenizer, self.dataset, [], generation_tokens=0)
        self.max_seq_length = data.resolve_max_seq_length(None, self.lengths)
        self.info = modeling.inspect_model(str(model_dir), None)
        self.device_name = torch.cuda.get_device_name(0) if self.runtime.use_cuda else "cpu"
        self.peak_tflops = args.peak_tflops or (
            catalog_peak_tflops(self.device_name) if self.runtime.use_cuda else None
        )

    def config(self, case: Case) -> TrainConfig:
        """The training configuration `train.py` would parse for the case."""
        return TrainConfig(
            model_id=str(self.model_dir),
            approach=case.approach,
            strategy=case.strategy,
            max_steps=self.args.warmup + self.args.steps,
            per_device_batch_size=case.batch_size,
            checkpoint_dir=str(self.work_dir / f"checkpoints-{case.name}"),
            logging_steps=max(self.args.steps, 1),
        )

    def reset_memory(self) -> None:
        """Free what the previous case left and restart the peak-memory count."""
        import gc

        import torch

        gc.collect()
        if self.runtime.use_cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        """Peak GPU memory allocated since `reset_memory`, in GiB (None on CPU)."""
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.runtime.use_cuda else None


def _step_timer(warmup: int, total: int, use_cuda: bool, counter: data.PaddingCounter | None):
    """A TrainerCallback marking time (and real tokens) when warm-up ends and at the last step."""
    import torch
    from transformers import TrainerCallback

    marks: dict[str, float] = {}

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, total):
                if use_cuda:
                    torch.cuda.synchronize()
                key = "start" if state.global_step == warmup else "end"
                marks[key] = time.perf_counter()
                marks[f"{key}_tokens"] = counter.real_tokens if counter else 0
            return control

    return StepTimer(), marks


def _timing(bench: Workbench, approach: str, marks: dict[str, float]) -> dict[str, Any]:
    seconds = marks["end"] - marks["start"]
    tokens = marks["end_tokens"] - marks["start_tokens"]
    result: dict[str, Any] = {"step_seconds": round(seconds / bench.args.steps, 4)}
    if tokens:
        tokens_per_second = tokens / seconds
        result["tokens_per_second"] = round(tokens_per_second, 1)
        if bench.peak_tflops:
            flops = flops_per_token(bench.info.num_parameters, bench.args.size, approach)
            result["mfu"] = round(tokens_per_second * flops / (bench.peak_tflops * 1e12), 4)
    return result


def _fsdp_single_process_environment() -> None:
    """What torchrun would set for one process: the Trainer builds FSDP only in a distributed launch."""
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")


def _leave_single_process_group() -> None:
    """Undo `_fsdp_single_process_environment` so a later case runs as a plain single process again."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        os.environ.pop(name, None)


def fsdp_report(trainer: Any) -> dict[str, Any]:
    """What FSDP built: the dtype (and trainable share) of every flat parameter, counted by kind."""
    kinds: dict[str, int] = {}
    for name, parameter in trainer.model_wrapped.named_parameters():
        kind = f"{str(parameter.dtype).removeprefix('torch.')}/{'trainable' if parameter.requires_grad else 'frozen'}"
        if "_flat_param" in name or kind not in kinds:
            kinds[kind] = kinds.get(kind, 0) + parameter.numel()
    return {"flat_parameters": kinds, "wrapper": type(trainer.model_wrapped).__name__}


def save_checkpoint_report(trainer: Any, checkpoint_dir: Path) -> dict[str, Any]:
    """Save one checkpoint the way training does (the Trainer's own `_save_checkpoint`) and measure it."""
    import torch

    started = time.perf_counter()
    trainer._save_checkpoint(trainer.model_wrapped, trial=None)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    saved = max(checkpoint_dir.glob("checkpoint-*"), key=lambda path: path.stat().st_mtime)
    files = {str(path.relative_to(saved)): path.stat().st_size for path in saved.rglob("*") if path.is_file()}
    return {"checkpoint_seconds": round(seconds, 2), "checkpoint_bytes": sum(files.values()), "checkpoint_files": files}


def run_train_case(bench: Workbench, case: Case) -> dict[str, Any]:
    """Train the case through train.py's own setup; time the steps after warm-up; measure memory."""
    from transformers import PrinterCallback
    from trl import SFTTrainer

    from training_code.train import build_sft_config

    if case.strategy == "fsdp":
        _fsdp_single_process_environment()
    config = bench.config(case)
    env = SageMakerEnv(
        train_dir=None,
        test_dir=None,
        model_dir=bench.work_dir,
        output_data_dir=bench.work_dir,
        output_dir=bench.work_dir,
        launched_by_torchrun=case.strategy == "fsdp",
    )
    gradient_checkpointing = modeling.use_gradient_checkpointing(config, bench.runtime, bench.info.num_parameters)
    learning_rate = resolve_learning_rate(config, bench.info.num_parameters)
    batching = "padding_free" if bench.runtime.padding_free_capable else "length_grouped"
    args = build_sft_config(
        config, env, bench.runtime, learning_rate, gradient_checkpointing, batching, bench.info.layer_classes
    )
    bench.reset_memory()
    load_started = time.perf_counter()
    model = modeling.load_model(config, bench.runtime, None, 0)
    load_seconds = time.perf_counter() - load_started
    optimizer = lean.make_optimizer(model, learning_rate, args) if case.strategy == "lean" else None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=bench.dataset,
        processing_class=bench.tokenizer,
        peft_config=modeling.lora_config(config) if config.is_peft else None,
        optimizers=(optimizer, None),
    )
    trainer.remove_callback(PrinterCallback)
    counter = data.PaddingCounter(trainer.data_collator)
    trainer.data_collator = counter
    timer, marks = _step_timer(bench.args.warmup, config.max_steps, bench.runtime.use_cuda, counter)
    trainer.add_callback(timer)
    trainer.train()
    result: dict[str, Any] = {
        "load_seconds": round(load_seconds, 1),
        **_timing(bench, case.approach, marks),
        "peak_memory_gib": bench.peak_gib(),
        "gradient_checkpointing": gradient_checkpointing,
        **planner_prediction(bench.args.size, case, bench.max_seq_length, config.lora_r),
    }
    if trainer.is_fsdp_enabled:
        result.update(fsdp_report(trainer))
        if case.fsdp_checkpoint:
            result.update(save_checkpoint_report(trainer, Path(config.checkpoint_dir)))
    if config.kind.quantized:
        import bitsandbytes

        result["quantized_layers"] = sum(isinstance(m, bitsandbytes.nn.Linear4bit) for m in trainer.model.modules())
    if optimizer is not None:
        optimizer.remove_hooks()
    del trainer, model, optimizer
    if case.strategy == "fsdp":
        _leave_single_process_group()
    return result


def run_hf_baseline(bench: Workbench, case: Case) -> dict[str, Any]:
    """The plain recipe: transformers Trainer + PEFT LoRA (r16, all linear), bf16, no TRL and no project code."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    pairs = zip(bench.dataset["prompt"], bench.dataset["completion"], strict=True)
    texts = [prompt + completion for prompt, completion in pairs]
    tokenized = [bench.tokenizer(text)["input_ids"] for text in texts]
    train = [{"input_ids": ids} for ids in tokenized]
    bench.reset_memory()
    model = AutoModelForCausalLM.from_pretrained(str(bench.model_dir), dtype=bench.runtime.dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    total = bench.args.warmup + bench.args.steps
    args = TrainingArguments(
        output_dir=str(bench.work_dir / "hf-baseline"),
        per_device_train_batch_size=case.batch_size,
        max_steps=total,
        learning_rate=2e-4,
        bf16=bench.runtime.bf16,
        use_cpu=not bench.runtime.use_cuda,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=total,
    )
    collator = DataCollatorForLanguageModeling(bench.tokenizer, mlm=False)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    timer, marks = _step_timer(bench.args.warmup, total, bench.runtime.use_cuda, None)
    trainer.add_callback(timer)
    trainer.train()
    tokens = sum(len(ids) for ids in tokenized) / len(tokenized) * case.batch_size * bench.args.steps
    marks["start_tokens"], marks["end_tokens"] = 0, tokens  # padded batches: the mean real tokens per step
    result = {**_timing(bench, case.approach, marks), "peak_memory_gib": bench.peak_gib()}
    del trainer, model
    if bench.runtime.use_cuda:
        torch.cuda.synchronize()
    return result


def run_decode(bench: Workbench, case: Case) -> dict[str, Any]:
    """Evaluation's decoding: greedy, constrained to the label set, batch 8, as train.py evaluates."""
    config = bench.config(case)
    eos = bench.tokenizer.eos_token
    prompts = [bench.fmt.prompt(example.text) for example in bench.examples[: bench.args.decode_samples]]
    labels = sorted(BANKING77_LABELS)
    sequences = evaluation.label_token_sequences(bench.tokenizer, prompts[0], labels, eos)
    trie = evaluation.LabelTrie(sequences, bench.tokenizer.eos_token_id)
    max_new_tokens = max(len(sequence) for sequence in sequences) + data.FREE_ANSWER_SLACK_TOKENS
    bench.reset_memory()
    model = modeling.load_base_for_inference(config, bench.runtime, None)
    generations = evaluation.generate(
        model, bench.tokenizer, prompts, case.batch_size, max_new_tokens, str(model.device), trie=trie, warmup=True
    )
    result = {
        "decode_seconds": round(generations.seconds, 3),
        "seconds_per_sample": round(generations.seconds / len(prompts), 4),
        "samples": len(prompts),
        "max_new_tokens": max_new_tokens,
        "peak_memory_gib": bench.peak_gib(),
    }
    del model
    return result


RUNNERS: dict[str, Callable[[Workbench, Case], dict[str, Any]]] = {
    "train": run_train_case,
    "hf_baseline": run_hf_baseline,
    "decode": run_decode,
}


def run_case(bench: Workbench, case: Case) -> dict[str, Any]:
    """One case's result row; a failing case is reported (with its error) and the next one still runs."""
    row: dict[str, Any] = {
        "case": case.name,
        "approach": case.approach,
        "strategy": case.strategy,
        "batch_size": case.batch_size,
        "device": bench.device_name,
        "size": bench.args.size,
        "parameters": bench.info.num_parameters,
        "mean_sequence_tokens": round(bench.lengths.mean_train, 1),
    }
    started = time.perf_counter()
    try:
        row.update(RUNNERS[case.kind](bench, case))
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    row["wall_seconds"] = round(time.perf_counter() - started, 1)
    bench.reset_memory()
    return row


def _cell(value: Any, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as the table in docs/benchmarks.md (a failed case shows its error)."""
    lines = [
        "| case | strategy | batch | s/step | tokens/s | MFU | peak GiB | planner GiB | measured/planned | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        measured, planned = row.get("peak_memory_gib"), row.get("planner_gib")
        ratio = round(measured / planned, 2) if measured and planned else None
        notes = []
        if "error" in row:
            notes.append(f"FAILED: {row['error'][:80]}")
        if "flat_parameters" in row:
            notes.append(f"flat params {row['flat_parameters']}")
        if "checkpoint_bytes" in row:
            notes.append(f"checkpoint {row['checkpoint_bytes'] / 1e9:.2f} GB in {row['checkpoint_seconds']} s")
        if "seconds_per_sample" in row:
            notes.append(f"decode {row['seconds_per_sample']} s/sample (constrained, batch {row['batch_size']})")
        if "quantized_layers" in row:
            notes.append(f"{row['quantized_layers']} Linear4bit layers")
        lines.append(
            f"| {row['case']} | {row['strategy']} | {row['batch_size']} | {_cell(row.get('step_seconds'))} "
            f"| {_cell(row.get('tokens_per_second'), '{:,.0f}')} | {_cell(row.get('mfu'), '{:.1%}')} "
            f"| {_cell(measured)} | {_cell(planned)} | {_cell(ratio)} | {'; '.join(notes)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the cases; print one JSON line per case and the markdown table."""
    args = parse_args(argv)
    import datasets
    import torch

    datasets.disable_progress_bars()
    if not torch.cuda.is_available() and not args.dry_run:
        print("no CUDA GPU visible: run on a GPU machine (or pass --dry-run)", file=sys.stderr)
        return 2
    if args.dry_run:
        args.cases = [case for case in args.cases if case.strategy != "fsdp" or torch.cuda.is_available()]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"# torch {torch.__version__}, device {device}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-train-bench-") as tmp:
        work_dir = Path(tmp)
        started = time.perf_counter()
        model_dir, real_tokenizer = build_model(args.size, work_dir / "model")
        tokenizer = "Mistral-7B-v0.1 (real)" if real_tokenizer else "BPE (token counts not real)"
        print(f"# {args.size} model built in {time.perf_counter() - started:.0f} s; tokenizer: {tokenizer}", flush=True)
        bench = Workbench(model_dir, args, work_dir)
        for case in args.cases:
            row = run_case(bench, case)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
    print(markdown(rows))
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
