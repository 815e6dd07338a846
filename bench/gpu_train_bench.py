"""GPU training throughput of full fine-tuning, LoRA and QLoRA on a ~1B Llama, through the training code's own setup.

    python bench/gpu_train_bench.py                      # all approaches, 1B Llama, on the visible GPU
    python bench/gpu_train_bench.py --approaches lora --steps 60 --out bench-results.jsonl
    python bench/gpu_train_bench.py --size tiny --allow-cpu --steps 5   # a CPU dry run of the bench itself

Each approach trains `--warmup` + `--steps` optimizer steps on a randomly initialised model saved once to disk
(TinyLlama-1.1B's shape: hidden 2048, 22 layers, GQA 32/4 heads, vocab 32000), with exactly the model loading,
PEFT/quantization config, batching and trainer arguments `train.py` uses (`build_sft_config`), checkpointing off.
The data is throughput-only: the bundled banking77-mini messages under 77 synthetic intent names, so every prompt
lists 77 labels and is about as long as a Banking77 prompt (~500-600 tokens).

Reported per approach, over the steps after warm-up:
  tokens_per_second   non-padding tokens trained per second
  padding_fraction    padding share of the batch tokens (0 with padding-free batches)
  peak_memory_gib     torch.cuda.max_memory_allocated over the run
  mfu                 tokens/s x FLOPs per token / peak dense bf16 FLOP/s of the GPU, where FLOPs per token are
                      6N for full fine-tuning and 4N for LoRA/QLoRA (frozen weights need no weight gradients),
                      N = parameters excluding the input embedding (a lookup, not a matmul). Attention FLOPs are
                      left out, as in the 6N rule; gradient checkpointing's recomputation is not counted as useful.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere: import training_code and finetune

from training_code import data, modeling  # noqa: E402
from training_code.config import SageMakerEnv, TrainConfig, resolve_learning_rate  # noqa: E402

DATASET = REPO_ROOT / "examples" / "datasets" / "banking77-mini" / "train.jsonl"
# Peak dense bf16 tensor FLOP/s by GPU name fragment (vendor datasheets); others need --peak-tflops.
PEAK_BF16_TFLOPS = {"H100 80GB HBM3": 989.0, "H100 SXM": 989.0, "H200": 989.0, "A100": 312.0}
SIZES = {
    # TinyLlama-1.1B's shape.
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32000},
    # For a dry run of this script on a CPU.
    "tiny": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 1000},
}  # fmt: skip
# Word pairs for 77 synthetic intent names of Banking77-like length (e.g. card_payment_pending).
_WORDS = ["card", "payment", "transfer", "top_up", "cash", "exchange", "pin", "account", "refund", "fee", "identity"]
_STATES = ["pending", "failed", "declined", "charged", "not_received", "limits", "reverted"]


def synthetic_labels() -> list[str]:
    """77 distinct intent names, ~4-6 tokens each like Banking77's."""
    return [f"{word}_{state}" for word in _WORDS for state in _STATES][:77]


def build_model(size: str, out_dir: Path) -> Path:
    """A random Llama of `size` saved in bf16 with a BPE tokenizer trained on the bundled messages."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from finetune.local.tiny_model import train_bpe_tokenizer

    texts = [json.loads(line)["text"] for line in DATASET.read_text().splitlines()] + synthetic_labels()
    tokenizer = train_bpe_tokenizer(texts, add_bos=True)
    shape = SIZES[size]
    config = LlamaConfig(
        **shape, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    return out_dir


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


def bench_approach(approach: str, model_dir: Path, args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    """Train `approach` for warmup + steps and measure the steps after warm-up."""
    import torch
    from transformers import PrinterCallback, TrainerCallback
    from transformers.trainer_utils import SaveStrategy
    from trl import SFTTrainer

    from training_code.train import build_sft_config

    config = TrainConfig(
        model_id=str(model_dir),
        approach=approach,
        max_steps=args.warmup + args.steps,
        per_device_batch_size=args.batch_size,
        lora_dropout=0.05,
        checkpoint_dir=str(work_dir / f"checkpoints-{approach}"),
        logging_steps=max(args.steps // 4, 1),
        max_seq_length=2048,
        batching=args.batching,
    )
    env = SageMakerEnv(train_dir=None, test_dir=None, model_dir=work_dir, output_data_dir=work_dir, output_dir=work_dir)
    runtime = modeling.detect_runtime(0)
    tokenizer = modeling.load_tokenizer(config.model_id, None)
    rows = [json.loads(line)["text"] for line in DATASET.read_text().splitlines()]
    labels = synthetic_labels()
    rng = random.Random(0)
    examples = [data.Example(text=text, label=rng.choice(labels)) for text in rows]
    dataset = data.to_prompt_completion(examples, labels, tokenizer.eos_token)
    lengths = data.check_sequence_lengths(tokenizer, dataset, config.max_seq_length)
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
    sft_args.save_strategy = SaveStrategy.NO  # measure training, not checkpoint I/O

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
    result = {
        "approach": approach,
        "device": torch.cuda.get_device_name(0) if runtime.use_cuda else "cpu",
        "size": args.size,
        "parameters": info.num_parameters,
        "flops_parameters": n,
        "batch_size": args.batch_size,
        "batching": batching,
        "attn_implementation": runtime.attn_implementation,
        "gradient_checkpointing": gradient_checkpointing,
        "mean_sequence_tokens": round(lengths.mean, 1),
        "measured_steps": args.steps,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens_per_second, 1),
        "padding_fraction": round(1 - real / batch, 4) if batch else 0.0,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if runtime.use_cuda else None,
        "mfu": round(tokens_per_second * flops_per_token / (peak * 1e12), 4) if peak else None,
    }
    del trainer, model
    if runtime.use_cuda:
        torch.cuda.empty_cache()
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    """The results as the table in docs/benchmarks.md."""
    lines = [
        "| approach | tokens/s (non-padding) | MFU | peak memory (GiB) | padding | batching | grad. ckpt |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(
            f"| {r['approach']} | {r['tokens_per_second']:,.0f} | {mfu} | {r['peak_memory_gib']} "
            f"| {r['padding_fraction']:.1%} | {r['batching']} | {r['gradient_checkpointing']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one JSON line per approach and a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--approaches", default="full,lora,qlora", help="comma-separated (full,lora,qlora)")
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--batch-size", type=int, default=8, help="per-device batch size (the study's 8)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing starts (kernels, allocator)")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--batching", choices=["auto", "padding_free", "length_grouped"], default="auto")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s when the GPU is not in the table")
    parser.add_argument("--out", type=Path, help="append JSON lines here too")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (dry run; numbers meaningless)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA GPU visible: run on a GPU machine (or pass --allow-cpu for a dry run)", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-train-bench-") as tmp:
        work_dir = Path(tmp)
        model_dir = build_model(args.size, work_dir / "model")
        for approach in [name.strip() for name in args.approaches.split(",") if name.strip()]:
            result = bench_approach(approach, model_dir, args, work_dir)
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.out:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
