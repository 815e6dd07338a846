"""GPU check of the training code: memory against the planner, compact vs listed prompts, CUDA QLoRA. One script.

    python bench/gpu_train_bench.py                      # full, LoRA, QLoRA x compact, listed on a ~1B Llama
    python bench/gpu_train_bench.py --approaches lora --styles compact --steps 60 --out bench-results.jsonl
    python bench/gpu_train_bench.py --size tiny --allow-cpu --steps 3 --warmup 1   # a CPU dry run of the script

Each run trains `--warmup` + `--steps` optimizer steps on a randomly initialised model saved once to disk
(TinyLlama-1.1B's shape: hidden 2048, 22 layers, GQA 32/4 heads, vocab 32000), with exactly the model loading,
PEFT/quantization config, attention choice, batching and trainer arguments `train.py` uses (`build_sft_config`),
checkpointing off. The tokenizer is Mistral-7B-v0.1's real one when the `mistral-common` package is installed (it
ships the SentencePiece model; same 32000 vocabulary), a small BPE otherwise (then the token counts are not real).
The data: the bundled banking77-mini messages with their Banking77 labels; `listed` prompts list all 77 Banking77
labels (~616 tokens per example with the real tokenizer), `compact` prompts do not (~34).

Reported per run, over the timed steps:
  tokens_per_second       non-padding tokens trained per second
  peak_memory_gib         torch.cuda.max_memory_allocated from model load to the end of training
  planner_gib             the memory planner's per-GPU training estimate (lambdas/memory.py) for the same job,
                          without its fixed runtime reserve (CUDA context, allocator slack: max_memory_allocated
                          does not see them), and the ratio measured / predicted (meant to be within 15%)
  mfu                     tokens/s x FLOPs per token / peak dense bf16 FLOP/s, FLOPs per token = 6N (full) or
                          4N (LoRA/QLoRA), N = parameters except the input embedding
  quantized_layers        QLoRA: bitsandbytes Linear4bit layers in the model (proves the CUDA 4-bit path ran)
and for each approach the compact/listed tokens/s ratio and the wall time per epoch of Banking77's 10,003 examples.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere: import training_code, finetune and lambdas

from training_code import data, modeling  # noqa: E402
from training_code.banking77 import LABELS as BANKING77_LABELS  # noqa: E402
from training_code.config import SageMakerEnv, TrainConfig, resolve_learning_rate  # noqa: E402

DATASET = REPO_ROOT / "examples" / "datasets" / "banking77-mini" / "train.jsonl"
BANKING77_TRAIN_EXAMPLES = 10_003
# Peak dense bf16 tensor FLOP/s by GPU name fragment (vendor datasheets); others need --peak-tflops.
PEAK_BF16_TFLOPS = {
    "H100 80GB HBM3": 989.0,
    "H100 SXM": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "A10G": 125.0,
    "L4": 121.0,
}
SIZES = {
    # TinyLlama-1.1B's shape.
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32000},
    # For a dry run of this script on a CPU.
    "tiny": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 32000},
}  # fmt: skip


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


def flops_parameters(num_parameters: int, size: str) -> int:
    """Parameters that take part in matmuls: all but the input embedding (a lookup). LoRA adapters are ignored."""
    shape = SIZES[size]
    return num_parameters - shape["vocab_size"] * shape["hidden_size"]


def peak_tflops(override: float | None) -> float | None:
    """The GPU's peak dense bf16 TFLOP/s (from --peak-tflops, or the table by device name)."""
    import torch

    if override:
        return override
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((value for fragment, value in PEAK_BF16_TFLOPS.items() if fragment in name), None)


def planner_prediction(size: str, approach: str, batch_size: int, seq_length: int, lora_r: int) -> dict[str, Any]:
    """The memory planner's per-GPU training estimate for this job on one bf16 GPU, or why there is none.

    The planner (`lambdas/memory.py`) belongs to the Lambda side and is imported defensively: its API may move, and
    the bench must still measure. Its fixed runtime reserve is left out (max_memory_allocated does not see it).
    """
    try:
        from lambdas import catalog, memory

        shape = SIZES[size]
        architecture = catalog.Architecture(
            hidden_size=shape["hidden_size"],
            layers=shape["num_hidden_layers"],
            heads=shape["num_attention_heads"],
            kv_heads=shape["num_key_value_heads"],
            intermediate_size=shape["intermediate_size"],
            vocab_size=shape["vocab_size"],
        )
        parameters = architecture.parameters()
        model = catalog.Model("bench-1b", "bench/tinyllama-shape", "llama", architecture, parameters, gated=False)
        gpu = catalog.ACCELERATORS["H100"]  # any bf16 GPU: the per-GPU estimate does not depend on its size
        instance = catalog.InstanceType("bench", 1, gpu, 128, 0.0)
        workload = memory.Workload(model, approach, batch_size, seq_length, lora_r=lora_r)
        estimate = memory.estimate(workload, memory.Placement(instance), memory.Strategy.DDP)
        predicted = estimate.device.total - estimate.device.runtime
        return {"planner_gib": round(predicted / 2**30, 2), "planner_breakdown_gib": estimate.device.gib()}
    except Exception as exc:  # the planner is optional here: report why, keep measuring
        return {"planner_gib": None, "planner_error": f"{type(exc).__name__}: {exc}"}


def bench_run(approach: str, style: str, model_dir: Path, args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    """Train `approach` with `style` prompts for warmup + steps and measure the steps after warm-up."""
    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTTrainer

    from training_code.train import build_sft_config

    config = TrainConfig(
        model_id=str(model_dir),
        approach=approach,
        max_steps=args.warmup + args.steps,
        per_device_batch_size=args.batch_size,
        checkpoint_dir=str(work_dir / f"checkpoints-{approach}-{style}"),
        logging_steps=max(args.steps // 4, 1),
        batching=args.batching,
        prompt_style=style,
    )
    env = SageMakerEnv(train_dir=None, test_dir=None, model_dir=work_dir, output_data_dir=work_dir, output_dir=work_dir)
    runtime = modeling.detect_runtime(0)
    tokenizer = modeling.load_tokenizer(config.model_id, None)
    fmt = data.prompt_format(style, sorted(BANKING77_LABELS))
    dataset = data.to_prompt_completion(load_examples(), fmt, tokenizer.eos_token)
    lengths = data.measure_lengths(tokenizer, dataset, [], generation_tokens=0)
    max_seq_length = data.resolve_max_seq_length(None, lengths)
    info = modeling.inspect_model(config.model_id, None)
    gradient_checkpointing = modeling.use_gradient_checkpointing(config, runtime, info.num_parameters)
    batching = config.batching
    if batching == "auto":
        batching = "padding_free" if runtime.padding_free_capable else "length_grouped"
    sft_args = build_sft_config(
        config,
        env,
        runtime,
        resolve_learning_rate(config, info.num_parameters),
        gradient_checkpointing,
        batching,
        info.layer_classes,
    )

    if runtime.use_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = modeling.load_model(config, runtime, None, 0)
    trainer = SFTTrainer(
        model=model,
        args=sft_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=modeling.lora_config(config) if config.is_peft else None,
    )
    trainer.remove_callback(PrinterCallback)
    counter = data.PaddingCounter(trainer.data_collator)
    trainer.data_collator = counter
    marks: dict[str, float] = {}

    class Timer(TrainerCallback):
        """Marks time and token counts when warm-up ends and at the last step."""

        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step in (args.warmup, args.warmup + args.steps):
                if runtime.use_cuda:
                    torch.cuda.synchronize()
                key = "start" if state.global_step == args.warmup else "end"
                marks[key] = time.perf_counter()
                marks[f"{key}_real"], marks[f"{key}_batch"] = counter.real_tokens, counter.batch_tokens
            return control

    trainer.add_callback(Timer())
    trainer.train()
    seconds = marks["end"] - marks["start"]
    real = marks["end_real"] - marks["start_real"]
    batch = marks["end_batch"] - marks["start_batch"]
    tokens_per_second = real / seconds
    n = flops_parameters(info.num_parameters, args.size)
    flops_per_token = (6 if approach == "full" else 4) * n
    peak = peak_tflops(args.peak_tflops)
    measured_gib = torch.cuda.max_memory_allocated() / 2**30 if runtime.use_cuda else None
    planner = planner_prediction(args.size, approach, args.batch_size, max_seq_length, config.lora_r)
    quantized = None
    if approach == "qlora":
        import bitsandbytes

        quantized = sum(isinstance(module, bitsandbytes.nn.Linear4bit) for module in trainer.model.modules())
    result = {
        "approach": approach,
        "prompt_style": style,
        "device": torch.cuda.get_device_name(0) if runtime.use_cuda else "cpu",
        "size": args.size,
        "parameters": info.num_parameters,
        "batch_size": args.batch_size,
        "batching": batching,
        "attn_implementation": runtime.attn_implementation,
        "gradient_checkpointing": gradient_checkpointing,
        "mean_sequence_tokens": round(lengths.mean_train, 1),
        "max_seq_length": max_seq_length,
        "measured_steps": args.steps,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens_per_second, 1),
        "examples_per_second": round(args.steps * args.batch_size / seconds, 2),
        "padding_fraction": round(1 - real / batch, 4) if batch else 0.0,
        "peak_memory_gib": round(measured_gib, 2) if measured_gib is not None else None,
        **planner,
        "measured_over_planned": (
            round(measured_gib / planner["planner_gib"], 3) if measured_gib and planner.get("planner_gib") else None
        ),
        "mfu": round(tokens_per_second * flops_per_token / (peak * 1e12), 4) if peak else None,
        "quantized_layers": quantized,
    }
    del trainer, model
    if runtime.use_cuda:
        torch.cuda.empty_cache()
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    """The results as the table in docs/benchmarks.md, plus compact vs listed per approach."""
    lines = [
        "| approach | prompts | tokens/example | tokens/s | examples/s | MFU | peak GiB (measured) | planner GiB | "
        "measured/planned | attention | grad. ckpt |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(
            f"| {r['approach']} | {r['prompt_style']} | {r['mean_sequence_tokens']} | {r['tokens_per_second']:,.0f} "
            f"| {r['examples_per_second']} | {mfu} | {r['peak_memory_gib']} | {r['planner_gib']} "
            f"| {r['measured_over_planned']} | {r['attn_implementation']} | {r['gradient_checkpointing']} |"
        )
    by_key = {(r["approach"], r["prompt_style"]): r for r in results}
    for approach in dict.fromkeys(r["approach"] for r in results):
        compact, listed = by_key.get((approach, "compact")), by_key.get((approach, "listed"))
        if compact and listed:
            speedup = compact["examples_per_second"] / listed["examples_per_second"]
            epoch_hours = {
                style: BANKING77_TRAIN_EXAMPLES / run["examples_per_second"] / 3600
                for style, run in (("compact", compact), ("listed", listed))
            }
            lines.append(
                f"\n{approach}: compact prompts train {speedup:.1f}x more examples/s than listed; one Banking77 epoch "
                f"{epoch_hours['compact']:.2f} h vs {epoch_hours['listed']:.2f} h on this device"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one JSON line per run and a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--approaches", default="full,lora,qlora", help="comma-separated (full,lora,qlora)")
    parser.add_argument("--styles", default="compact,listed", help="prompt styles, comma-separated")
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--batch-size", type=int, default=8, help="per-device batch size (the study's 8)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing starts (kernels, allocator)")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--batching", choices=["auto", "padding_free", "length_grouped"], default="auto")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s when the GPU is not in the table")
    parser.add_argument("--out", type=Path, help="append JSON lines here too")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (dry run; numbers meaningless)")
    args = parser.parse_args(argv)

    import datasets
    import torch

    datasets.disable_progress_bars()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA GPU visible: run on a GPU machine (or pass --allow-cpu for a dry run)", file=sys.stderr)
        return 2
    if torch.cuda.is_available():
        import bitsandbytes

        print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bitsandbytes {bitsandbytes.__version__}")
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-train-bench-") as tmp:
        work_dir = Path(tmp)
        model_dir, real_tokenizer = build_model(args.size, work_dir / "model")
        print(f"# tokenizer: {'Mistral-7B-v0.1 (real)' if real_tokenizer else 'BPE (token counts not real)'}")
        for approach in [name.strip() for name in args.approaches.split(",") if name.strip()]:
            for style in [name.strip() for name in args.styles.split(",") if name.strip()]:
                result = bench_run(approach, style, model_dir, args, work_dir)
                results.append(result)
                print(json.dumps(result), flush=True)
                if args.out:
                    with args.out.open("a") as handle:
                        handle.write(json.dumps(result) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
