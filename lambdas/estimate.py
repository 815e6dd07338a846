"""The time model: what a training job will take, part by part, and what it will cost (low / expected / high).

Pure arithmetic over `catalog.TIME_MODEL` (every constant, its band and its source) and the memory planner's state
sizes. A job's wall time is the sum of its parts (`PARTS`):

    startup     SageMaker's Starting + Downloading phases, by instance size (catalog.startup_constant)
    install     `pip install -r requirements.txt` at the start of the training code
    download    Hub snapshot download at a rate, then loading (and NF4 quantization) onto the GPUs
    train       optimizer steps x (max(compute, memory traffic, communication) + a fixed per-step overhead)
                  compute        step tokens x FLOPs per token / (working GPUs x peak dense TFLOP/s x utilization),
                                 plus DoRA's per-forward rebuild of each adapted weight (memory.dora_forward_work)
                  memory         bytes each GPU reads and writes per step / (bandwidth x efficiency)
                  communication  bytes each GPU sends per step over the instance's link (PCIe or NVSwitch; the
                                 network between instances): FSDP all-gathers the weights for forward and again for
                                 backward and reduce-scatters the gradients, DDP all-reduces the trainable gradients,
                                 FSDP offload also copies the shards to and from host memory and steps AdamW on the
                                 CPU; single, split and lean move nothing between GPUs
    checkpoint  saves (one per save interval of training) x their real bytes written, plus the upload backlog the
                background checkpoint sync has not cleared when training ends
    evaluate    reload after FSDP, prefill of the evaluation prompts, constrained decoding (memory-bound) of the labels
    upload      the final save (bf16 model after full fine-tuning or merging; else the adapter) and its upload

Each constant has a best / expected / worst value: the low estimate takes every best value and the best spot price
fraction, the high one every worst value. Calibration (`lambdas.calibration.Calibration`) multiplies each part by what
recorded jobs of the same instance family, approach and strategy really took. The budget gate keeps using the maximum
(runtime bound x instances x hourly price); this is what Plan, the CLI and the report show and what the planner
minimises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lambdas import approaches, catalog, cost, memory

if TYPE_CHECKING:
    from lambdas.calibration import Calibration
    from lambdas.job_spec import EstimateFields

PARTS: tuple[str, ...] = ("startup", "install", "download", "train", "checkpoint", "evaluate", "upload")
BANDS: tuple[str, ...] = ("low", "expected", "high")
# The global batch the planner keeps when it chooses the per-device batch (the study's recipe: 8 examples per
# optimizer step, whatever the GPU count), so the learning-rate schedule means the same on every plan.
PLANNED_GLOBAL_BATCH = 8
# Instances per plan the planner considers (more only when nothing fits fewer).
MAX_PLANNED_INSTANCES = 4


@dataclass(frozen=True)
class JobShape:
    """What the time model needs to know about one job: the work, where it runs and how, and the price."""

    model: catalog.Model
    approach: str
    instance_type: str
    instance_count: int
    strategy: memory.Strategy
    batch_size: int  # per device
    epochs: float
    rows: float
    # Defaults are the hyperparameter table's (catalog.HYPERPARAMETERS), not copies of them.
    prompt_style: str = catalog.default("prompt_style")
    max_seq_length: int | str = catalog.default("max_seq_length")
    task: str = catalog.CLASSIFICATION
    max_steps: int = catalog.default("max_steps")
    gradient_accumulation_steps: int = 1
    eval_samples: int = catalog.default("eval_samples")
    eval_batch_size: int = catalog.default("eval_batch_size")
    lora_r: int = catalog.default("lora_r")
    merge_adapter: bool = catalog.default("merge_adapter")
    spot: bool = catalog.default("spot")
    hourly_price_usd: float | None = None  # None: the catalog's
    max_runtime_seconds: int = 3600
    rows_source: str = "given"

    @property
    def instance(self) -> catalog.InstanceType:
        """The catalog's instance type."""
        return catalog.INSTANCES[self.instance_type]

    @property
    def placement(self) -> memory.Placement:
        """The memory planner's placement."""
        return memory.Placement(self.instance, self.instance_count)

    @property
    def workload(self) -> memory.Workload:
        """The memory planner's workload (for the fit and the checkpoint size)."""
        return memory.Workload(
            model=self.model,
            approach=self.approach,
            batch_size=self.batch_size,
            seq_length=memory.planning_seq_length(self.max_seq_length, self.prompt_style, self.task),
            lora_r=self.lora_r,
            eval_batch_size=self.eval_batch_size,
        )

    @property
    def data_parallel(self) -> int:
        """Ranks that each take a batch per step: every GPU under torchrun, else one process."""
        return self.placement.world_size if self.strategy.torchrun else 1

    @property
    def price(self) -> float:
        """Hourly price of one instance (the given one, else the catalog's)."""
        return self.instance.hourly_price_usd if self.hourly_price_usd is None else self.hourly_price_usd


@dataclass(frozen=True)
class JobEstimate:
    """A job's time split and cost: expected, with the low and high ends of the band, and the maximum."""

    seconds: dict[str, float]  # expected, each part and "total"
    low_seconds: dict[str, float]
    high_seconds: dict[str, float]
    expected_usd: float  # at the job's pricing: spot at the expected spot fraction, else on demand
    low_usd: float
    high_usd: float
    max_usd: float  # the runtime bound x instances x hourly price (the budget gate's figure)
    on_demand_usd: float  # the expected seconds at the on-demand price
    bottleneck: str  # what bounds a training step: compute, memory or communication ("none" without training)
    steps: int
    train_tokens: float
    train_flops: float
    assumptions: dict[str, Any] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        """Expected wall hours."""
        return self.seconds["total"] / 3600

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON (for the CLI and report.json)."""
        return asdict(self)


def _bytes_per_row(task: str | None) -> float:
    # task sft: per assumed chat row (catalog.SFT_BYTES_PER_TOKEN); classification: Banking77's mean row.
    return (
        catalog.SFT_TOKENS_PER_EXAMPLE * catalog.SFT_BYTES_PER_TOKEN
        if catalog.is_sft(task)
        else catalog.MEAN_BYTES_PER_ROW
    )


def _channel_rows(
    split: str, known: Mapping[str, int], default: int, dataset_name: str | None, size: int | None, task: str | None
) -> tuple[float, str]:
    if dataset_name is not None and dataset_name in known:
        return float(known[dataset_name]), f"{dataset_name} {split} split (catalog)"
    if size:
        per_row = _bytes_per_row(task)
        return max(1.0, size / per_row), f"{size:,} bytes / {per_row:g} bytes per row"
    return float(default), "catalog default (Banking77-sized)"


def train_rows(dataset_name: str | None, train_bytes: int | None = None, task: str | None = None) -> tuple[float, str]:
    """Rows in the train channel and how they were found: the catalog's count for a known named dataset, else the
    channel's size / mean bytes per row (task sft: per assumed chat row, catalog.SFT_BYTES_PER_TOKEN), else the
    catalog default."""
    return _channel_rows(
        "train", catalog.DATASET_TRAIN_ROWS, catalog.DEFAULT_TRAIN_ROWS, dataset_name, train_bytes, task
    )


def rows_in_test_split(
    dataset_name: str | None, test_bytes: int | None = None, task: str | None = None
) -> tuple[float, str]:
    """Rows in the test channel (what `eval_samples: "all"` evaluates and any number is capped at), found as
    `train_rows` finds the train channel's."""
    return _channel_rows("test", catalog.DATASET_TEST_ROWS, catalog.ASSUMED_TEST_ROWS, dataset_name, test_bytes, task)


def flops_per_token(approach: str, parameters: int, checkpointing: bool) -> float:
    """Training FLOPs per token (0 for approaches that do not train, e.g. a zero-shot baseline)."""
    kind = approaches.get(approach)
    if not kind.trains:
        return 0.0
    per_parameter = kind.flops_per_parameter
    return float((per_parameter + (catalog.RECOMPUTE_FLOPS_PER_PARAMETER if checkpointing else 0)) * parameters)


def tokens_per_example(prompt_style: str, max_seq_length: int | str, task: str | None = None) -> float:
    """Mean tokens per example: the catalog's measured mean for the prompt style (task sft: the assumed chat row,
    catalog.SFT_TOKENS_PER_EXAMPLE), truncated to an explicit length."""
    if catalog.is_sft(task):
        tokens = catalog.SFT_TOKENS_PER_EXAMPLE
    else:
        tokens = catalog.TOKENS_PER_EXAMPLE.get(prompt_style, catalog.TOKENS_PER_EXAMPLE["compact"])
    return min(tokens, float(max_seq_length)) if isinstance(max_seq_length, int) else tokens


def _value(name: str, band: str) -> float:
    return catalog.TIME_MODEL[name].at(band)


def _peak_flops(instance: catalog.InstanceType) -> float:
    return (instance.gpu.peak_tflops if instance.gpu else catalog.CPU_PEAK_TFLOPS) * 1e12


def _bandwidth(instance: catalog.InstanceType) -> float:
    return (instance.gpu.memory_gb_per_s if instance.gpu else catalog.CPU_MEMORY_GB_PER_S) * 1e9


def collective_bytes_per_second(shape: JobShape, band: str) -> float:
    """Bus bandwidth per GPU for collectives: the instance's link, or the network between instances if slower."""
    instance = shape.instance
    rate = _value(f"collective_{catalog.gpu_link(instance)}_gb_per_s", band) * 1e9
    if shape.instance_count > 1:
        network = catalog.NETWORK_PEAK_GB_PER_S.get(instance.family, catalog.NETWORK_PEAK_DEFAULT_GB_PER_S)
        rate = min(rate, network * 1e9)
    return rate


@dataclass(frozen=True)
class StepTraffic:
    """What one optimizer step moves, per GPU: FLOPs, DRAM bytes, bytes over the GPU link and over the host link,
    and CPU optimizer bytes (offload)."""

    flops: float
    working_gpus: int
    memory_bytes: float
    collective_bytes: float
    host_bytes: float = 0.0
    cpu_optimizer_bytes: float = 0.0


def step_traffic(shape: JobShape, fit: memory.FitEstimate) -> StepTraffic:
    """FLOPs and bytes of one optimizer step (see the module docstring for what each strategy moves)."""
    n = shape.model.parameters
    strategy = shape.strategy
    checkpointing = memory.uses_gradient_checkpointing(shape.workload, shape.placement)
    per_token = flops_per_token(shape.approach, shape.model.active_parameters, checkpointing)  # MoE: routed experts
    tokens = tokens_per_example(shape.prompt_style, shape.max_seq_length, shape.task)
    step_tokens = shape.batch_size * shape.gradient_accumulation_steps * shape.data_parallel * tokens
    # split: one GPU works at a time; torchrun strategies: every GPU on its own batch.
    working = shape.data_parallel
    # Each pass (forward, recomputation, backward) streams the bf16 weights once; QLoRA dequantizes each NF4 layer
    # to bf16 first, so it moves at least as much. The optimizer step reads and writes its state once.
    passes = 3 if checkpointing else 2
    weights = catalog.WEIGHT_BYTES_PER_PARAMETER * n
    state = fit.device.master_weights + fit.device.gradients + fit.device.optimizer
    kind = approaches.get(shape.approach)
    if not kind.adapter:
        state += fit.device.weights
    memory_bytes = passes * shape.gradient_accumulation_steps * weights + 2 * state
    # DoRA rebuilds every adapted weight in each forward (the recomputation's included): per micro-batch, not per token.
    forwards = shape.gradient_accumulation_steps * (2 if checkpointing else 1)
    dora = memory.dora_forward_work(fit.workload, shape.placement)
    memory_bytes += forwards * dora.memory_bytes
    world = shape.placement.world_size
    ring = (world - 1) / world if world > 1 else 0.0
    grad_bytes = 4 * fit.workload.adapter_parameters if kind.adapter else 2 * n
    collective = 0.0
    host = 0.0
    cpu_optimizer = 0.0
    if strategy is memory.Strategy.DDP:
        collective = 2 * ring * grad_bytes  # ring all-reduce
    elif strategy.shards:
        # transformers 5.3 wraps FSDP1 with bf16 parameters; backward gathers every layer again (no prefetch
        # overlaps it); gradients are reduce-scattered (for a PEFT model only the adapters have any).
        collective = ring * (2 * catalog.WEIGHT_BYTES_PER_PARAMETER * n + grad_bytes)
        if strategy is memory.Strategy.FSDP_OFFLOAD:
            trainable = fit.workload.adapter_parameters if kind.adapter else n
            host = 2 * 4 * trainable / world  # fp32 shard to the GPU for the step, its gradient back
            cpu_optimizer = 16 * trainable * 2 / max(shape.placement.processes, 1)  # fp32 state read and written
    elif strategy is memory.Strategy.SPLIT:
        arch = shape.model.architecture
        gpus = shape.instance.gpus
        collective = 2 * (gpus - 1) * step_tokens * arch.hidden_size * 2  # activations forward, gradients back
    return StepTraffic(
        flops=step_tokens * per_token + working * forwards * dora.flops,  # every working GPU rebuilds them
        working_gpus=working,
        memory_bytes=memory_bytes,
        collective_bytes=collective,
        host_bytes=host,
        cpu_optimizer_bytes=cpu_optimizer,
    )


def steps_of(shape: JobShape) -> int:
    """Optimizer steps: max_steps, else ceil(rows x epochs / global batch); 0 without training."""
    if not approaches.get(shape.approach).trains:
        return 0
    if shape.max_steps and shape.max_steps > 0:
        return shape.max_steps
    global_batch = shape.batch_size * shape.gradient_accumulation_steps * shape.data_parallel
    return math.ceil(shape.rows * shape.epochs / max(global_batch, 1))


def _step_seconds(shape: JobShape, traffic: StepTraffic, band: str) -> dict[str, float]:
    instance = shape.instance
    lean = shape.strategy is memory.Strategy.LEAN
    utilization = _value("utilization_lean" if lean else approaches.get(shape.approach).utilization, band)
    compute = traffic.flops / (traffic.working_gpus * _peak_flops(instance) * utilization)
    memory_seconds = traffic.memory_bytes / (_bandwidth(instance) * _value("memory_efficiency", band))
    communication = 0.0
    if traffic.collective_bytes:
        communication = traffic.collective_bytes / collective_bytes_per_second(shape, band)
    if traffic.host_bytes:
        communication += traffic.host_bytes / (_value("host_link_gb_per_s", band) * 1e9)
        communication += traffic.cpu_optimizer_bytes / _value("cpu_adam_bytes_per_s", band)
    return {"compute": compute, "memory": memory_seconds, "communication": communication}


def _part_seconds(shape: JobShape, fit: memory.FitEstimate, band: str) -> tuple[dict[str, float], str]:
    """Seconds of each part in one band, and the training step's bottleneck."""
    instance = shape.instance
    n = shape.model.parameters
    weight_bytes = catalog.WEIGHT_BYTES_PER_PARAMETER * n
    parts: dict[str, float] = {}
    parts["startup"] = catalog.startup_constant(instance).at(band)
    parts["install"] = _value("install", band)
    load = weight_bytes / _value("load_bytes_per_s", band)
    if approaches.get(shape.approach).quantized:
        load += _value("quantize_s_per_billion", band) * n / 1e9
    parts["download"] = weight_bytes / _value("download_bytes_per_s", band) + load

    steps = steps_of(shape)
    bottleneck = "none"
    if steps:
        traffic = step_traffic(shape, fit)
        step = _step_seconds(shape, traffic, band)
        bottleneck = max(step, key=lambda name: step[name])
        parts["train"] = steps * (step[bottleneck] + _value("step_overhead_s", band))
    else:
        parts["train"] = 0.0

    # Checkpoints: one per save interval of training (none in a job shorter than the interval), written while
    # training waits; SageMaker uploads them in the background, and what it has not uploaded when training ends
    # delays the end.
    saves = math.floor(parts["train"] / fit.save_interval_seconds) if steps and fit.checkpoint_bytes else 0
    write = fit.checkpoint_bytes / _value("checkpoint_write_bytes_per_s", band)
    upload_rate = _value("s3_upload_bytes_per_s", band)
    backlog = max(fit.checkpoint_bytes / upload_rate, saves * fit.checkpoint_bytes / upload_rate - parts["train"])
    parts["checkpoint"] = saves * write + (backlog if saves else 0.0)

    # Evaluation on one GPU (or the node's GPUs one after another when the model is spread over them).
    eval_flops, decode_steps = evaluation_work(shape)
    reload = weight_bytes / _value("load_bytes_per_s", band) if shape.strategy.shards else 0.0
    prefill = eval_flops / (_peak_flops(instance) * _value("eval_utilization", band))
    per_token = weight_bytes / (_bandwidth(instance) * _value("decode_bandwidth_efficiency", band))
    parts["evaluate"] = reload + prefill + decode_steps * (per_token + _value("decode_step_overhead_s", band))

    artifact = artifact_bytes(shape, fit)
    save = artifact / _value("checkpoint_write_bytes_per_s", band)
    parts["upload"] = save + artifact / upload_rate + _value("upload_fixed_s", band)
    return parts, bottleneck


def evaluation_work(shape: JobShape) -> tuple[float, int]:
    """The evaluation's prefill FLOPs (2N per prompt token) and its decoding steps (each reads every weight once)."""
    tokens = tokens_per_example(
        shape.prompt_style if approaches.get(shape.approach).trains else catalog.BASELINE_PROMPT_STYLE,
        shape.max_seq_length,
        shape.task,
    )
    answer_tokens = (
        catalog.SFT_DECODE_TOKENS_PER_SAMPLE if catalog.is_sft(shape.task) else catalog.DECODE_TOKENS_PER_SAMPLE
    )
    flops = shape.eval_samples * tokens * 2 * shape.model.active_parameters
    steps = math.ceil(shape.eval_samples / max(shape.eval_batch_size, 1)) * answer_tokens
    return flops, steps


def artifact_bytes(shape: JobShape, fit: memory.FitEstimate) -> float:
    """The final artifact: a bf16 model after full fine-tuning or merging, else the adapter (PEFT's fp32 weights);
    nothing for a job that does not train."""
    if not steps_of(shape):
        return 0.0
    if not approaches.get(shape.approach).adapter or shape.merge_adapter:
        return float(catalog.WEIGHT_BYTES_PER_PARAMETER * shape.model.parameters)
    return float(4 * fit.workload.adapter_parameters)


def _with_total(parts: dict[str, float]) -> dict[str, float]:
    return {**{name: parts[name] for name in PARTS}, "total": sum(parts[name] for name in PARTS)}


def estimate_job(shape: JobShape, calibration: Calibration | None = None) -> JobEstimate:
    """Low / expected / high seconds and dollars of one job (the module docstring has the model).

    `calibration` multiplies each part's seconds by its factor (1.0 where it has none)."""
    fit = memory.estimate(shape.workload, shape.placement, shape.strategy)
    factors = calibration.factors if calibration is not None else {}
    bands: dict[str, dict[str, float]] = {}
    bottleneck = "none"
    for band in BANDS:
        parts, limit = _part_seconds(shape, fit, band)
        bands[band] = _with_total({name: parts[name] * factors.get(name, 1.0) for name in PARTS})
        if band == "expected":
            bottleneck = limit
    per_hour = shape.instance_count * shape.price / 3600
    spot = catalog.TIME_MODEL["spot_price_fraction"]

    def dollars(band: str) -> float:
        return bands[band]["total"] * per_hour * (spot.at(band) if shape.spot else 1.0)

    steps = steps_of(shape)
    traffic = step_traffic(shape, fit) if steps else None
    train_flops = steps * traffic.flops if traffic else 0.0
    tokens = tokens_per_example(shape.prompt_style, shape.max_seq_length, shape.task)
    global_batch_size = shape.batch_size * shape.gradient_accumulation_steps * shape.data_parallel
    assumptions = {
        "task": shape.task,
        "strategy": shape.strategy.value,
        "train_rows": round(shape.rows, 1),
        "train_rows_source": shape.rows_source,
        "tokens_per_example": tokens,
        "steps": steps,
        "global_batch_size": global_batch_size,
        "gpus": shape.placement.world_size if shape.instance.has_gpu else 0,
        "peak_tflops_per_gpu": _peak_flops(shape.instance) / 1e12,
        "gpu_link": catalog.gpu_link(shape.instance) if shape.instance.gpus > 1 else "none",
        "checkpoint_gb": round(fit.checkpoint_bytes / 1e9, 2),
        "save_interval_seconds": fit.save_interval_seconds,
        "spot_price_fraction": spot.expected if shape.spot else 1.0,
        "calibration": calibration.key if calibration is not None else "table",
        "calibration_samples": calibration.samples if calibration is not None else 0,
    }
    return JobEstimate(
        seconds=bands["expected"],
        low_seconds=bands["low"],
        high_seconds=bands["high"],
        expected_usd=dollars("expected"),
        low_usd=dollars("low"),
        high_usd=dollars("high"),
        max_usd=float(cost.estimated_max_cost_usd(shape.max_runtime_seconds, shape.instance_count, shape.price)),
        on_demand_usd=bands["expected"]["total"] * per_hour,
        bottleneck=bottleneck,
        steps=steps,
        train_tokens=steps * global_batch_size * tokens,
        train_flops=train_flops,
        assumptions=assumptions,
    )


def physical_floor(shape: JobShape) -> dict[str, float]:
    """Seconds below which no part can go, at the hardware's peak: the training FLOPs at 100% of peak on the working
    GPUs or the step's collective bytes at the link's peak, the evaluation's prefill FLOPs at peak plus its decoding
    steps each reading the weights at peak bandwidth, the weights (download) and the artifact (upload) through the
    instance's network at its peak. The estimate's low end never goes below these."""
    fit = memory.estimate(shape.workload, shape.placement, shape.strategy)
    instance = shape.instance
    network = catalog.NETWORK_PEAK_GB_PER_S.get(instance.family, catalog.NETWORK_PEAK_DEFAULT_GB_PER_S) * 1e9
    weight_bytes = catalog.WEIGHT_BYTES_PER_PARAMETER * shape.model.parameters
    steps = steps_of(shape)
    floor = dict.fromkeys(PARTS, 0.0)
    floor["download"] = weight_bytes / network
    floor["upload"] = artifact_bytes(shape, fit) / network
    eval_flops, decode_steps = evaluation_work(shape)
    floor["evaluate"] = eval_flops / _peak_flops(instance) + decode_steps * weight_bytes / _bandwidth(instance)
    if steps:
        traffic = step_traffic(shape, fit)
        link = catalog.LINK_PEAK_GB_PER_S[catalog.gpu_link(instance)] * 1e9
        compute = traffic.flops / (traffic.working_gpus * _peak_flops(instance))
        communication = traffic.collective_bytes / link
        floor["train"] = steps * max(compute, communication)
    return floor


def shape_of(job: Mapping[str, Any], *, model: catalog.Model, rows: float, rows_source: str = "given") -> JobShape:
    """The time model's view of a JobSpec (or any mapping with its hyperparameter and placement fields)."""
    return JobShape(
        model=model,
        approach=job["approach"],
        instance_type=job["instance_type"],
        instance_count=int(job["instance_count"]),
        strategy=memory.Strategy(job.get("strategy") or memory.Strategy.SINGLE),
        batch_size=int(job["batch_size"]),
        epochs=float(job["epochs"]),
        rows=rows,
        prompt_style=job["prompt_style"],
        max_seq_length=job["max_seq_length"],
        task=job.get("task") or catalog.CLASSIFICATION,
        max_steps=int(job.get("max_steps", -1)),
        gradient_accumulation_steps=int(job.get("gradient_accumulation_steps") or 1),
        eval_samples=catalog.planned_eval_samples(job["eval_samples"], job.get("estimated_test_rows")),
        eval_batch_size=int(job.get("eval_batch_size") or catalog.default("eval_batch_size")),
        lora_r=int(job.get("lora_r") or catalog.default("lora_r")),
        merge_adapter=bool(job.get("merge_adapter", False)),
        spot=bool(job["spot"]),
        hourly_price_usd=float(job["hourly_price_usd"]) if job.get("hourly_price_usd") is not None else None,
        max_runtime_seconds=int(job.get("max_runtime_seconds") or 3600),
        rows_source=rows_source,
    )


def estimate_for_job(
    job: Mapping[str, Any],
    *,
    model: catalog.Model,
    rows: float,
    rows_source: str = "given",
    calibration: Calibration | None = None,
) -> JobEstimate:
    """`estimate_job` for a JobSpec."""
    return estimate_job(shape_of(job, model=model, rows=rows, rows_source=rows_source), calibration)


def spec_fields(found: JobEstimate, in_force: Calibration) -> EstimateFields:
    """The JobSpec's estimate fields (Plan and Remedy write the same ones), with the calibration in force (its key
    files the job's actuals under it once Record has them)."""
    return {
        "estimated_hours": round(found.hours, 4),
        "estimated_cost_usd": round(found.expected_usd, 4),
        "estimated_low_cost_usd": round(found.low_usd, 4),
        "estimated_high_cost_usd": round(found.high_usd, 4),
        "estimated_on_demand_cost_usd": round(found.on_demand_usd, 4),
        "estimated_seconds": {name: round(value, 1) for name, value in found.seconds.items()},
        "estimated_bottleneck": found.bottleneck,
        "calibration_key": in_force.key,
        "calibration": in_force.as_dict(),
    }


# ---------------------------------------------------------------------------------------------------------------------
# The planner: the cheapest expected plan that fits and can launch
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedJob:
    """A feasible plan for one job: its memory fit and its estimate."""

    fit: memory.FitEstimate
    estimate: JobEstimate
    shape: JobShape


def planned_batch(strategy: memory.Strategy, world_size: int, global_batch: int = PLANNED_GLOBAL_BATCH) -> int:
    """The per-device batch that keeps `global_batch` examples per step (at least 1)."""
    ranks = world_size if strategy.torchrun else 1
    return max(1, global_batch // ranks)


def _rank(plan: PlannedJob) -> tuple[float, float, int, str]:
    return (plan.estimate.expected_usd, plan.estimate.high_usd, plan.fit.placement.world_size, plan.shape.instance_type)


def plans_on(shape: JobShape, *, fixed_batch: bool) -> list[PlannedJob]:
    """Every strategy that fits `shape`'s placement, priced (the batch re-planned per strategy unless fixed)."""
    placement = shape.placement
    found = []
    for strategy in memory.strategies(shape.workload, placement):
        batch = shape.batch_size if fixed_batch else planned_batch(strategy, placement.world_size)
        candidate = replace(shape, strategy=strategy, batch_size=batch)
        fit = memory.estimate(candidate.workload, placement, strategy)
        if fit.fits:
            found.append(PlannedJob(fit, estimate_job(candidate), candidate))
    return found


def cheapest_on(shape: JobShape, *, fixed_batch: bool = True) -> PlannedJob | None:
    """The cheapest expected strategy on `shape`'s instance type and count; None when none fits."""
    found = plans_on(shape, fixed_batch=fixed_batch)
    return min(found, key=_rank) if found else None


def cheapest_plan(
    shape: JobShape,
    *,
    instance_types: Iterable[str] | None = None,
    counts: Iterable[int] | None = None,
    fixed_batch: bool = False,
) -> PlannedJob | None:
    """The cheapest expected plan over instance types (default: those of `catalog.PLANNABLE_FAMILIES`), instance
    counts (default 1 to MAX_PLANNED_INSTANCES) and strategies that fits by the memory planner; fewer instances are
    tried first and more only when none fits. `shape`'s instance and strategy are ignored; its batch is kept only with
    `fixed_batch`."""
    names = list(instance_types) if instance_types is not None else planned_instance_types()
    for count in counts or range(1, MAX_PLANNED_INSTANCES + 1):
        found = [
            plan
            for name in names
            if count == 1 or catalog.INSTANCES[name].gpus > 1 or counts is not None
            for plan in plans_on(replace(shape, instance_type=name, instance_count=count), fixed_batch=fixed_batch)
        ]
        if found:
            return min(found, key=_rank)
    return None


def planned_instance_types() -> list[str]:
    """The instance types the planner chooses from by default: the GPU types of `catalog.PLANNABLE_FAMILIES` (CPU
    instances only where asked for: they are for smoke tests)."""
    return [name for name, instance in catalog.INSTANCES.items() if instance.family in catalog.PLANNABLE_FAMILIES]


def assumptions_table() -> list[tuple[str, str, str]]:
    """(constant, best / expected / worst, source) rows for display next to an estimate (the CLI, docs)."""
    rows = [
        (c.name, f"{c.best:g} / {c.expected:g} / {c.worst:g} {c.unit}", c.source) for c in catalog.TIME_MODEL.values()
    ]
    gpus = ", ".join(
        f"{a.name} {a.peak_tflops:g} TFLOP/s {a.memory_gb_per_s:g} GB/s"
        for a in catalog.ACCELERATORS.values()
        if a.peak_tflops
    )
    tokens = ", ".join(f"{k} {v:g}" for k, v in catalog.TOKENS_PER_EXAMPLE.items())
    flops = ", ".join(f"{k} {v}N" for k, v in catalog.TRAINING_FLOPS_PER_PARAMETER.items())
    return [
        ("tokens per example", tokens, "Banking77 train, Mistral-7B tokenizer (measured)"),
        (
            "task sft",
            f"{catalog.SFT_TOKENS_PER_EXAMPLE:g} tokens per example, {catalog.SFT_PLANNING_SEQ_LENGTH} planning "
            f"length, {catalog.SFT_DECODE_TOKENS_PER_SAMPLE} answer tokens, {catalog.SFT_BYTES_PER_TOKEN:g} bytes "
            "per token",
            "assumed for chat rows (catalog.py); the training code measures the real lengths",
        ),
        (
            "FLOPs per token",
            f"{flops}; +{catalog.RECOMPUTE_FLOPS_PER_PARAMETER}N with gradient checkpointing",
            "forward 2N, backward 4N (2N with frozen weights)",
        ),
        ("peak dense bf16 per GPU", gpus, "NVIDIA datasheets (sparse / 2); A10G: Baseten's A10 vs A10G table"),
        *rows,
    ]
