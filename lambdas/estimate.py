"""The expected cost of a training job: what it will probably cost, next to the maximum its runtime bound allows.

Pure arithmetic over the catalog's assumptions (`catalog.TOKENS_PER_EXAMPLE`, `UTILISATION`, `STARTUP_SECONDS`, ...):

    train tokens   = train rows x mean tokens per example x epochs   (or max_steps x batch x data-parallel GPUs)
    train FLOPs    = train tokens x (6N full | 4N LoRA/QLoRA, + 2N when gradient checkpointing recomputes)
    train seconds  = train FLOPs / (GPUs x peak dense TFLOP/s x utilisation of the approach)
    eval seconds   = prefill (eval samples x tokens per example x 2N FLOPs, on one GPU) + decoding (ceil(samples /
                     batch) x decode tokens steps, each reading the weights once at a share of memory bandwidth)
    other seconds  = startup + model download (+ upload of a full-size model) at the catalog's rates
    hours          = the sum; on-demand $ = hours x instances x hourly price; expected $ = x spot fraction if spot

The budget gate keeps using the maximum (`cost.estimated_max_cost_usd`); this is what Plan, the CLI and the report
show so that the assumptions can be checked against what jobs really cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdas import catalog

# training_code/modeling.py's `auto` rule (also memory.uses_gradient_checkpointing): QLoRA always, GPU models of 1B+.
_CHECKPOINTING_MIN_PARAMETERS = 1_000_000_000


@dataclass(frozen=True)
class Expected:
    """A job's expected duration and cost, with every assumption that produced them (for display and the ledger)."""

    hours: float
    cost_usd: float  # at the job's pricing: the expected spot price for spot jobs, else on-demand
    on_demand_cost_usd: float
    training_hours: float
    evaluation_hours: float
    overhead_hours: float  # startup, model download, artifact upload
    train_tokens: float
    train_flops: float
    assumptions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON (for the CLI and report.json)."""
        return asdict(self)


def train_rows(dataset_name: str | None, train_bytes: int | None = None) -> tuple[float, str]:
    """Rows in the train channel and how they were found: the catalog's count for a known named dataset, else the
    channel's size / mean bytes per row, else the catalog default."""
    if dataset_name is not None and dataset_name in catalog.DATASET_TRAIN_ROWS:
        return float(catalog.DATASET_TRAIN_ROWS[dataset_name]), f"{dataset_name} train split (catalog)"
    if train_bytes:
        rows = max(1.0, train_bytes / catalog.MEAN_BYTES_PER_ROW)
        return rows, f"{train_bytes:,} bytes / {catalog.MEAN_BYTES_PER_ROW} bytes per row"
    return float(catalog.DEFAULT_TRAIN_ROWS), "catalog default (Banking77-sized)"


def uses_gradient_checkpointing(approach: str, parameters: int, has_gpu: bool) -> bool:
    """Whether the training code's `auto` setting recomputes activations for this job."""
    return approach == "qlora" or (has_gpu and parameters >= _CHECKPOINTING_MIN_PARAMETERS)


def flops_per_token(approach: str, parameters: int, checkpointing: bool) -> float:
    """Training FLOPs per token (0 for approaches that do not train, e.g. a zero-shot baseline)."""
    per_parameter = catalog.TRAINING_FLOPS_PER_PARAMETER.get(approach)
    if per_parameter is None:
        return 0.0
    return float((per_parameter + (catalog.RECOMPUTE_FLOPS_PER_PARAMETER if checkpointing else 0)) * parameters)


def expected_job_cost(
    *,
    parameters: int,
    approach: str,
    instance_type: str,
    instance_count: int,
    epochs: float,
    max_steps: int,
    batch_size: int,
    prompt_style: str,
    max_seq_length: int | str,
    eval_samples: int,
    eval_batch_size: int,
    spot: bool,
    hourly_price_usd: float,
    rows: float,
    rows_source: str = "given",
    merge_adapter: bool = False,
) -> Expected:
    """The expected hours and dollars of one job (see the module's docstring for the formula)."""
    instance = catalog.INSTANCES[instance_type]
    gpu = instance.gpu
    peak_tflops = gpu.peak_tflops if gpu is not None else catalog.CPU_PEAK_TFLOPS
    bandwidth = gpu.memory_gb_per_s if gpu is not None else catalog.CPU_MEMORY_GB_PER_S
    devices = max(instance.gpus, 1) * instance_count  # data-parallel ranks (one process on a CPU instance)
    utilisation = catalog.UTILISATION.get(approach, catalog.DEFAULT_UTILISATION)
    tokens_per_example = catalog.TOKENS_PER_EXAMPLE.get(prompt_style, catalog.TOKENS_PER_EXAMPLE["compact"])
    if isinstance(max_seq_length, int):
        tokens_per_example = min(tokens_per_example, float(max_seq_length))  # longer examples are truncated
    checkpointing = uses_gradient_checkpointing(approach, parameters, instance.has_gpu)
    per_token = flops_per_token(approach, parameters, checkpointing)

    if per_token == 0:
        train_tokens = 0.0
    elif max_steps and max_steps > 0:
        train_tokens = float(max_steps * batch_size * devices * tokens_per_example)
    else:
        train_tokens = rows * tokens_per_example * epochs
    train_flops = train_tokens * per_token
    training_seconds = train_flops / (devices * peak_tflops * 1e12 * utilisation)

    # Evaluation runs on rank 0 only: prefill is compute-bound, decoding memory-bound.
    weight_bytes = parameters * catalog.WEIGHT_BYTES_PER_PARAMETER
    prefill_seconds = eval_samples * tokens_per_example * 2 * parameters / (peak_tflops * 1e12 * utilisation)
    steps = math.ceil(eval_samples / max(eval_batch_size, 1)) * catalog.DECODE_TOKENS_PER_SAMPLE
    decode_seconds = steps * weight_bytes / (bandwidth * 1e9 * catalog.DECODE_BANDWIDTH_EFFICIENCY)
    evaluation_seconds = prefill_seconds + decode_seconds

    # A full-size model goes up at the end when the whole model trained or the adapter is merged.
    uploads_model = approach == "full" or (merge_adapter and per_token > 0)
    transfer_bytes = weight_bytes * (2 if uploads_model else 1)
    overhead_seconds = catalog.STARTUP_SECONDS + transfer_bytes / catalog.MODEL_DOWNLOAD_BYTES_PER_SECOND

    hours = (training_seconds + evaluation_seconds + overhead_seconds) / 3600
    on_demand = hours * instance_count * hourly_price_usd
    expected = on_demand * catalog.SPOT_PRICE_FRACTION if spot else on_demand
    assumptions = {
        "train_rows": round(rows, 1),
        "train_rows_source": rows_source,
        "tokens_per_example": tokens_per_example,
        "flops_per_token": f"{per_token / parameters:g}N" if per_token else "0 (no training)",
        "gradient_checkpointing": checkpointing,
        "gpus": devices,
        "peak_tflops_per_gpu": peak_tflops,
        "utilisation": utilisation,
        "decode_tokens_per_sample": catalog.DECODE_TOKENS_PER_SAMPLE,
        "memory_gb_per_s": bandwidth,
        "startup_seconds": catalog.STARTUP_SECONDS,
        "download_mb_per_s": catalog.MODEL_DOWNLOAD_BYTES_PER_SECOND / 1e6,
        "spot_price_fraction": catalog.SPOT_PRICE_FRACTION if spot else 1.0,
        "spot_price_source": catalog.SPOT_PRICE_SOURCE if spot else "on-demand",
    }
    return Expected(
        hours=hours,
        cost_usd=expected,
        on_demand_cost_usd=on_demand,
        training_hours=training_seconds / 3600,
        evaluation_hours=evaluation_seconds / 3600,
        overhead_hours=overhead_seconds / 3600,
        train_tokens=train_tokens,
        train_flops=train_flops,
        assumptions=assumptions,
    )


def expected_for_job(job: Mapping[str, Any], *, parameters: int, rows: float, rows_source: str = "given") -> Expected:
    """`expected_job_cost` for a JobSpec (or any mapping with its hyperparameter and placement fields)."""
    return expected_job_cost(
        parameters=parameters,
        approach=job["approach"],
        instance_type=job["instance_type"],
        instance_count=int(job["instance_count"]),
        epochs=float(job["epochs"]),
        max_steps=int(job.get("max_steps", -1)),
        batch_size=int(job["batch_size"]),
        prompt_style=job["prompt_style"],
        max_seq_length=job["max_seq_length"],
        eval_samples=catalog.planned_eval_samples(job["eval_samples"]),
        eval_batch_size=int(job.get("eval_batch_size") or catalog.default("eval_batch_size")),
        spot=bool(job["spot"]),
        hourly_price_usd=float(job["hourly_price_usd"]),
        rows=rows,
        rows_source=rows_source,
        merge_adapter=bool(job.get("merge_adapter", False)),
    )


def assumptions_table() -> list[tuple[str, str, str]]:
    """(assumption, value, source) rows for display next to an estimate (the CLI, docs): the catalog's figures."""
    gpus = ", ".join(f"{a.name} {a.peak_tflops:g}" for a in catalog.ACCELERATORS.values() if a.peak_tflops)
    utilisation = ", ".join(f"{k} {v:g}" for k, v in catalog.UTILISATION.items())
    flops = ", ".join(f"{k} {v}N" for k, v in catalog.TRAINING_FLOPS_PER_PARAMETER.items())
    tokens = ", ".join(f"{k} {v:g}" for k, v in catalog.TOKENS_PER_EXAMPLE.items())
    return [
        ("tokens per example", tokens, "Banking77 train, Mistral-7B tokenizer (measured)"),
        (
            "train rows",
            f"banking77 {catalog.DATASET_TRAIN_ROWS['banking77']:,}; else bytes / "
            f"{catalog.MEAN_BYTES_PER_ROW}; else {catalog.DEFAULT_TRAIN_ROWS:,}",
            "catalog",
        ),
        (
            "FLOPs per token",
            f"{flops}; +{catalog.RECOMPUTE_FLOPS_PER_PARAMETER}N with gradient checkpointing",
            "forward 2N, backward 4N (2N with frozen weights)",
        ),
        ("peak dense TFLOP/s per GPU", f"{gpus}; CPU {catalog.CPU_PEAK_TFLOPS:g}", "NVIDIA datasheets (sparse / 2)"),
        ("utilisation", utilisation, "published PEFT/FSDP MFU; QLoRA >= 25% slower than LoRA"),
        (
            "evaluation",
            f"{catalog.DECODE_TOKENS_PER_SAMPLE} decode tokens per sample at "
            f"{catalog.DECODE_BANDWIDTH_EFFICIENCY:g} of memory bandwidth",
            "memory-bound decoding",
        ),
        ("startup", f"{catalog.STARTUP_SECONDS} s", "provisioning and image pull"),
        (
            "model download",
            f"{catalog.MODEL_DOWNLOAD_BYTES_PER_SECOND / 1e6:g} MB/s of "
            f"{catalog.WEIGHT_BYTES_PER_PARAMETER} bytes per parameter",
            "conservative",
        ),
        ("spot price", f"{catalog.SPOT_PRICE_FRACTION:g} x on-demand", catalog.SPOT_PRICE_SOURCE),
    ]
