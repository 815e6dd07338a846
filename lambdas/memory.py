"""The memory and fit planner: does a job's training and evaluation fit the GPUs and host memory it is given?

Pure arithmetic over the catalog (model shapes, accelerators, host RAM). Plan uses it to choose how a job shards and to
refuse what cannot fit (with the cheapest alternative that does); the CLI and the training code may ask it too.

Bytes are counted the way the training stack (transformers + PEFT + TRL + accelerate 1.15, `training_code/`) holds
state, per GPU:
- **weights**: parameters in their working precision (bf16; NF4 for QLoRA's quantized layers; fp32 on CPU);
- **master weights**: fp32 copies the optimizer updates: FSDP's flat parameters, which accelerate upcasts to fp32 when
  they hold anything trainable (with `use_orig_params` a decoder layer's flat parameter holds its LoRA adapters, so the
  frozen base of that layer is upcast too); the fp32 model that fp16 autocast needs on V100s; PEFT's fp32 adapters;
- **gradients** and **optimizer** state (AdamW: two moments in the parameter's dtype; bitsandbytes' paged 8-bit
  AdamW: two 1-byte moments). FSDP keeps a gradient for a whole flat parameter, frozen parts included;
- **working** copies that exist only during a step: the layers FSDP has gathered, QLoRA's dequantized layer, fp16
  autocast's cast of every weight;
- **activations** kept for backward, and a fixed **runtime** reserve (CUDA context, cuBLAS workspace, NCCL buffers,
  allocator slack).
Host memory per instance: the OS and one Python/torch process per GPU, the weights while they load, and the state
FSDP's CPU offload keeps there. Evaluation: inference weights plus the KV cache at the evaluation batch size.
A zero-shot baseline (`catalog.BASELINE`) trains nothing: it needs the evaluation's memory only, in one process whose
bf16 model a device map spreads over the instance's GPUs, loaded shard by shard.

Estimates are for planning: conservative where it is cheap to be (every LoRA layer's dropout copy, 12 bytes per logit),
never tuned to a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from lambdas import approaches, catalog
from lambdas.errors import InfeasibleJob

GIB = 2**30
GB = 10**9

# The QLoRA paper (Dettmers et al. 2023, arXiv:2305.14314, section 3): NF4 with double quantization stores 4 bits per
# weight plus 0.127 bits of quantization constants (blocks of 64, 8-bit constants in blocks of 256).
NF4_BYTES_PER_PARAMETER = (4 + 0.127) / 8
ADAMW_8BIT_BYTES_PER_PARAMETER = 2  # two 1-byte moments; block-wise statistics add well under 1%
# `lean` full fine-tuning keeps a bf16 Kahan compensation term per weight (stochastic rounding would need none).
LEAN_COMPENSATION_BYTES_PER_PARAMETER = 2
# CUDA context (~0.3-0.5 GiB on Ampere and newer), cuBLAS/cuDNN workspaces, NCCL buffers and allocator fragmentation.
RUNTIME_RESERVE_GIB = 1.0
HOST_OS_RESERVE_GIB = 2.0  # kernel, SageMaker agents, the training toolkit
HOST_PER_PROCESS_GIB = 2.0  # one Python + torch + CUDA libraries + data loader per GPU
# A 4-bit model loads shard by shard straight onto its GPU; the host holds one safetensors shard at a time. Hub models
# shard at 5-10 GB (transformers' default is 5 GB; Llama 2's repository uses ~10 GB): plan for the larger.
LOAD_SHARD_BYTES = 10 * GB
# Per logit: the bf16 logits, their fp32 upcast in the loss, the fp32 log-softmax kept for backward, its gradient.
LOGIT_BYTES = 12
# training_code/modeling.py: gradient checkpointing `auto` is on for QLoRA and for GPU models of 1B+ parameters (a
# contract test, tests/lambdas/test_lambda_approaches.py, evaluates both rules over a grid and compares them).
GRADIENT_CHECKPOINTING_MIN_PARAMETERS = 1_000_000_000
# FSDP holds the layer it computes, the one it prefetches and the unsharded gradient of one layer at a time.
FSDP_LIVE_LAYERS = 3
# The sequence length the planner assumes when `max_seq_length` is auto (the training code measures the real one). A
# compact Banking77 prompt is ~30 tokens for a typical query (Llama-2 and Mistral tokenizers, FIELD_NOTES) plus a label
# of a few tokens: 256 leaves room for queries ~8x the typical one. Listing Banking77's 77 labels adds ~600 tokens to
# every prompt (626 measured with the Llama-2 tokenizer), so listed prompts plan with 1024.
PLANNING_SEQ_LENGTH: dict[str, int] = {"compact": 256, "listed": 1024}

# Checkpoints. A save is safe once SageMaker's checkpoint sync has uploaded it to S3; that upload, not the write to the
# instance's NVMe disk, is the slow part. 100 MB/s is a conservative rate for it (one S3 upload stream's order of
# magnitude), so sizing the interval on it keeps saving under SAVE_TIME_SHARE of the wall time.
CHECKPOINT_THROUGHPUT_BYTES_PER_SECOND = 100 * 10**6
SAVE_TIME_SHARE = 0.10
# At least 10 minutes apart: more often saves little (a spot restart itself costs minutes of startup and loading);
# at most 4 hours apart: a spot interruption never loses more than that, even when a save is expensive.
SAVE_INTERVAL_BOUNDS_SECONDS = (600, 14_400)
# Alternatives considered when a job does not fit: every catalog instance type, up to this many instances.
MAX_ALTERNATIVE_INSTANCES = 4


class Strategy(StrEnum):
    """How the training state is spread over the GPUs; the values are the `strategy` hyperparameter
    (catalog.STRATEGIES describes each)."""

    SINGLE = "single"  # one process on one GPU (or on the CPU)
    DDP = "ddp"  # one process per GPU under torchrun, a full replica on each
    FSDP = "fsdp"  # parameters, gradients and optimizer state sharded over all GPUs
    FSDP_OFFLOAD = "fsdp_offload"  # sharded, and kept in host memory between uses
    SPLIT = "split"  # one process, the model's layers spread over the node's GPUs by a device map
    LEAN = "lean"  # one GPU, full fine-tuning: bf16 weights, 8-bit states, fused step, Kahan-compensated updates

    @property
    def torchrun(self) -> bool:
        """One process per GPU under torchrun (Launch enables it for these when there is more than one GPU)."""
        return self.value in catalog.TORCHRUN_STRATEGIES

    @property
    def shards(self) -> bool:
        """FSDP: each GPU holds 1/world of the state and gathers layers to run them."""
        return self in (Strategy.FSDP, Strategy.FSDP_OFFLOAD)


class Optimizer(StrEnum):
    """The optimizer whose state the planner counts."""

    ADAMW = "adamw"  # torch AdamW: two moments in the parameter's dtype
    ADAMW_8BIT = "adamw_8bit"  # bitsandbytes (paged) 8-bit AdamW


class Precision(StrEnum):
    """Training precision; the training code picks it from the GPU."""

    BF16 = "bf16"  # Ampere and newer
    FP16 = "fp16"  # V100: autocast to fp16 with a grad scaler, so full fine-tuning keeps an fp32 model
    FP32 = "fp32"  # CPU


# The Trainer `optim` of an approach (lambdas/approaches.py) -> the state the planner counts for it.
_OPTIMIZER_STATE: dict[str, Optimizer] = {
    approaches.ADAMW: Optimizer.ADAMW,
    approaches.PAGED_ADAMW_8BIT: Optimizer.ADAMW_8BIT,
}


def default_optimizer(approach: str) -> Optimizer:
    """What training_code uses for the approach (its `optimizer` row: paged 8-bit AdamW for QLoRA, the QLoRA
    recipe; torch AdamW otherwise)."""
    return _OPTIMIZER_STATE[approaches.get(approach).optimizer]


def planning_seq_length(max_seq_length: int | str, prompt_style: str, task: str | None = None) -> int:
    """The sequence length the planner sizes activations for: the explicit one, or the planning length of `auto`
    (task sft: catalog.SFT_PLANNING_SEQ_LENGTH, whatever the prompt style, which only classification prompts use)."""
    if isinstance(max_seq_length, int):
        return max_seq_length
    return catalog.SFT_PLANNING_SEQ_LENGTH if catalog.is_sft(task) else PLANNING_SEQ_LENGTH[prompt_style]


@dataclass(frozen=True)
class Workload:
    """What a job trains and evaluates, independent of where it runs."""

    model: catalog.Model
    approach: str
    batch_size: int  # per device
    seq_length: int  # tokens per training example (prompt + completion); also the evaluation length
    lora_r: int = field(default_factory=lambda: catalog.default("lora_r"))
    eval_batch_size: int = field(default_factory=lambda: catalog.default("eval_batch_size"))
    optimizer: Optimizer | None = None  # None: what the training code uses for the approach

    @property
    def kind(self) -> approaches.Approach:
        """The approach's row (lambdas/approaches.py)."""
        return approaches.get(self.approach)

    @property
    def adapter_parameters(self) -> int:
        """Trainable adapter parameters: LoRA's A and B on every linear layer, plus DoRA's magnitude vectors (0 for
        full fine-tuning and for a baseline, which trains nothing)."""
        if not self.kind.adapter:
            return 0
        return self.model.architecture.lora_parameters(self.lora_r) + self.dora_magnitude_parameters

    @property
    def dora_magnitude_parameters(self) -> int:
        """DoRA's magnitude vectors: one trainable value per output feature of every adapted linear layer (PEFT
        0.21 `DoraLinearLayer.weight`, the column norms of W + BA); 0 for every other approach."""
        if not self.kind.dora:
            return 0
        arch = self.model.architecture
        return arch.layers * sum(fan_out for _, fan_out in arch.layer_linears())

    @property
    def trains(self) -> bool:
        """False for a baseline: no weights, gradients, optimizer state or activations for backward."""
        return self.kind.trains

    @property
    def chosen_optimizer(self) -> Optimizer:
        """The optimizer the estimate counts."""
        return self.optimizer or default_optimizer(self.approach)


@dataclass(frozen=True)
class Placement:
    """Where a job runs: an instance type and how many of it."""

    instance: catalog.InstanceType
    count: int = 1

    @property
    def processes(self) -> int:
        """Training processes per instance (torchrun starts one per GPU; one on a CPU instance)."""
        return max(1, self.instance.gpus)

    @property
    def world_size(self) -> int:
        """Processes over all instances: FSDP shards over this many."""
        return self.processes * self.count

    @property
    def precision(self) -> Precision:
        """bf16 where the GPU computes in it, fp16 on older GPUs, fp32 on CPU."""
        gpu = self.instance.gpu
        if gpu is None:
            return Precision.FP32
        return Precision.BF16 if gpu.bf16 else Precision.FP16

    @property
    def gpu_usable_bytes(self) -> float:
        """Memory one GPU process can get (0 on CPU instances)."""
        gpu = self.instance.gpu
        return gpu.usable_gib * GIB if gpu else 0.0

    @property
    def host_bytes(self) -> float:
        """The instance's RAM."""
        return self.instance.host_memory_gib * GIB

    @property
    def hourly_price_usd(self) -> float:
        """Catalog price of all instances (the planner ranks alternatives offline)."""
        return self.instance.hourly_price_usd * self.count

    def describe(self) -> str:
        """`2 x ml.p4d.24xlarge (16 A100)`."""
        gpu = self.instance.gpu
        devices = f"{self.instance.gpus * self.count} {gpu.name}" if gpu else "CPU"
        return f"{self.count} x {self.instance.name} ({devices})"


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes per GPU by what holds them (for a CPU instance: the training process, in host RAM)."""

    weights: float = 0.0
    master_weights: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    working: float = 0.0
    activations: float = 0.0
    runtime: float = 0.0

    @property
    def total(self) -> float:
        """Everything at once (the peak of a training step)."""
        return (
            self.weights
            + self.master_weights
            + self.gradients
            + self.optimizer
            + self.working
            + self.activations
            + self.runtime
        )

    def gib(self) -> dict[str, float]:
        """The breakdown in GiB, rounded to 0.1 (for messages and logs)."""
        parts = ("weights", "master_weights", "gradients", "optimizer", "working", "activations", "runtime")
        return {name: round(getattr(self, name) / GIB, 1) for name in parts}


@dataclass(frozen=True)
class HostMemory:
    """Bytes of one instance's RAM (the first instance: it is the one that loads the weights under FSDP)."""

    runtime: float = 0.0  # OS and training processes
    loading: float = 0.0  # weights while they are read from disk
    offloaded: float = 0.0  # FSDP CPU offload: this instance's shards of parameters, gradients, optimizer state
    training: float = 0.0  # CPU instances: the training process's memory (DeviceMemory.total)

    @property
    def total(self) -> float:
        """Peak need, counting loading and the rest as coexisting (conservative)."""
        return self.runtime + self.loading + self.offloaded + self.training


@dataclass(frozen=True)
class FitEstimate:
    """One strategy's memory needs on one placement, and whether they fit."""

    workload: Workload
    placement: Placement
    strategy: Strategy
    device: DeviceMemory
    host: HostMemory
    evaluation_bytes: float  # per GPU used for evaluation
    evaluation_gpus: int  # 1, or the instance's GPUs when the inference weights do not fit one
    checkpoint_bytes: float  # one checkpoint of all ranks together

    @property
    def precision(self) -> Precision:
        """The training precision the estimate assumes."""
        return self.placement.precision

    @property
    def on_gpu(self) -> bool:
        """False for CPU instances (their training memory is host memory)."""
        return self.placement.instance.has_gpu

    def problems(self) -> list[str]:
        """What does not fit, with the numbers; empty when everything does."""
        found = []
        usable = self.placement.gpu_usable_bytes
        if self.on_gpu and self.device.total > usable:
            found.append(f"training needs {_gib(self.device.total)} GiB per GPU of {_gib(usable)}")
        if self.on_gpu and self.evaluation_bytes > usable:
            found.append(f"evaluation needs {_gib(self.evaluation_bytes)} GiB per GPU of {_gib(usable)}")
        if self.host.total > self.placement.host_bytes:
            found.append(f"host memory needs {_gib(self.host.total)} GiB of {_gib(self.placement.host_bytes)}")
        return found

    @property
    def fits(self) -> bool:
        """True when training, evaluation and host memory all fit."""
        return not self.problems()

    @property
    def save_interval_seconds(self) -> int:
        """The checkpoint interval for this job (see `save_interval_seconds`)."""
        return save_interval_seconds(self.checkpoint_bytes)

    def describe(self) -> str:
        """One line: strategy, precision and optimizer, per-GPU total and breakdown, host, evaluation, checkpoint."""
        parts = ", ".join(f"{name} {value}" for name, value in self.device.gib().items() if value)
        if not self.workload.trains:
            where = f"on {self.evaluation_gpus} GPU(s)" if self.on_gpu else "in host RAM"
            return (
                f"evaluation only (baseline, {self.precision.value}) on {self.placement.describe()}: "
                f"{_gib(self.evaluation_bytes)} GiB {where}; host {_gib(self.host.total)} of "
                f"{_gib(self.placement.host_bytes)} GiB; no checkpoints"
            )
        if self.on_gpu:
            training = f"{_gib(self.device.total)} GiB per GPU of {_gib(self.placement.gpu_usable_bytes)}"
            evaluation = f"{_gib(self.evaluation_bytes)} GiB on {self.evaluation_gpus} GPU(s)"
        else:
            training = f"{_gib(self.device.total)} GiB in host RAM"
            evaluation = f"{_gib(self.evaluation_bytes)} GiB in host RAM"
        return (
            f"{self.strategy.value} ({self.precision.value}, {self.workload.chosen_optimizer.value}) on "
            f"{self.placement.describe()}: {training} ({parts}); host {_gib(self.host.total)} of "
            f"{_gib(self.placement.host_bytes)} GiB; evaluation {evaluation}; checkpoint "
            f"{self.checkpoint_bytes / GB:.1f} GB"
        )


def _gib(value: float) -> float:
    return round(value / GIB, 1)


# ---------------------------------------------------------------------------------------------------------------------
# The estimate
# ---------------------------------------------------------------------------------------------------------------------
def _compute_bytes(precision: Precision) -> int:
    return 4 if precision is Precision.FP32 else 2


def uses_gradient_checkpointing(workload: Workload, placement: Placement) -> bool:
    """The training code's `auto` rule (its mirror: training_code/modeling.use_gradient_checkpointing): always for
    an approach whose row says so (QLoRA); else GPU models of 1B+ parameters. The planner and the time model both
    ask this function."""
    return gradient_checkpointing_rule(
        workload.approach, workload.model.parameters, on_gpu=placement.instance.has_gpu, explicit="auto"
    )


def gradient_checkpointing_rule(approach: str, parameters: int, *, on_gpu: bool, explicit: str = "auto") -> bool:
    """Whether a job trains with gradient checkpointing: the `gradient_checkpointing` hyperparameter when it is
    `true`/`false`, else (`auto`) always for approaches that always checkpoint, and for GPU models of 1B+."""
    if explicit != "auto":
        return explicit == "true"
    if approaches.get(approach).always_checkpoints:
        return True
    return on_gpu and parameters >= GRADIENT_CHECKPOINTING_MIN_PARAMETERS


def activation_bytes(workload: Workload, placement: Placement) -> float:
    """Activations kept for backward, per GPU, plus the logits.

    Per token and decoder layer, what backward needs (after Korthikanti et al. 2022, "Reducing Activation Recomputation
    in Large Transformer Models", without the attention-score term: FlashAttention and SDPA keep no score matrix): the
    attention block's normed input, Q, K, V and output; the MLP's normed input and intermediates (4 for SwiGLU: gate,
    up, activation, product; 2 for GeLU); both norms' inputs in fp32 (HF's RMSNorm upcasts); for LoRA, the dropout copy
    of every adapted layer's input. With gradient checkpointing only each layer's input is kept, and one layer at a
    time is recomputed.
    """
    arch = workload.model.architecture
    a = _compute_bytes(placement.precision)
    h, i = arch.hidden_size, arch.active_intermediate_size  # MoE: the widths of the experts a token is routed to
    tokens = workload.batch_size * workload.seq_length
    mlp_intermediates = 4 if arch.gated_mlp else 2
    per_token = a * (2 * h + 2 * arch.q_dim + 2 * arch.kv_dim + mlp_intermediates * i) + 2 * 4 * h
    if workload.kind.adapter:
        per_token += a * sum(fan_in for fan_in, _ in arch.layer_linears())
    if workload.kind.dora:
        # DoRA's output is (m/|W+BA| - 1) * base_result + m/|W+BA| * lora_result: backward to the magnitude keeps both
        # results, an output-width tensor each per adapted layer (PEFT 0.21 `DoraLinearLayer.forward`).
        per_token += 2 * a * sum(fan_out for _, fan_out in arch.layer_linears())
    layer = tokens * per_token
    if uses_gradient_checkpointing(workload, placement):
        kept = arch.layers * tokens * h * a + layer
    else:
        kept = arch.layers * layer
    return kept + tokens * arch.vocab_size * LOGIT_BYTES


@dataclass(frozen=True)
class DoraWork:
    """What DoRA adds to one forward pass of the whole model, beyond LoRA's."""

    flops: float
    memory_bytes: float  # DRAM traffic
    peak_working_bytes: float  # the largest transient of one adapted layer (they are built one at a time)


def dora_forward_work(workload: Workload, placement: Placement) -> DoraWork:
    """DoRA's per-forward work, counted from PEFT 0.21's `DoraLinearLayer.forward` (training mode: its cache is off).

    For each adapted linear layer of `fan_in` x `fan_out`: `get_lora_weight` runs a `fan_in` x `fan_in` identity in the
    adapters' fp32 through lora_A and lora_B (2r(in^2 + in*out) FLOPs) into an fp32 `fan_in` x `fan_out` delta, casts
    it to the compute dtype, and `get_weight_norm` adds `scaling` x the delta to the base weight and takes the column
    norms (~3 in*out FLOPs). The norm is detached, so none of this is kept for backward; it is rebuilt every forward
    (gradient checkpointing's recomputation included). The identity trick dates from PEFT 0.12 (huggingface/peft#1806,
    so the DLC's PEFT 0.18.1 does the same); huggingface/peft#1692 reports DoRA's fp32 upcasting costing GBs of VRAM.
    Zero for every approach but DoRA.
    """
    if not workload.kind.dora:
        return DoraWork(0.0, 0.0, 0.0)
    a = _compute_bytes(placement.precision)
    r = workload.lora_r
    flops = memory_bytes = peak = 0.0
    for fan_in, fan_out in workload.model.architecture.layer_linears():
        weight = fan_in * fan_out
        flops += 2 * r * (fan_in * fan_in + weight) + 3 * weight
        # identity and fp32 delta written and read; base weight read; cast, scaled and summed copies written and read
        memory_bytes += 2 * 4 * fan_in * fan_in + 2 * 4 * weight + 7 * a * weight
        peak = max(peak, 4 * fan_in * fan_in + (4 + 3 * a) * weight)
    layers = workload.model.architecture.layers
    return DoraWork(flops=layers * flops, memory_bytes=layers * memory_bytes, peak_working_bytes=peak)


def _optimizer_bytes_per_parameter(optimizer: Optimizer, parameter_bytes: int) -> float:
    return ADAMW_8BIT_BYTES_PER_PARAMETER if optimizer is Optimizer.ADAMW_8BIT else 2 * parameter_bytes


def _decoder_layer_parameters(workload: Workload) -> int:
    """One decoder layer with its adapters: FSDP's unit of gathering (every decoder layer is its own unit)."""
    arch = workload.model.architecture
    return arch.layer_parameters() + workload.adapter_parameters // arch.layers


def _full_state(workload: Workload, placement: Placement, strategy: Strategy) -> DeviceMemory:
    n = workload.model.parameters
    precision = placement.precision
    a = _compute_bytes(precision)
    opt = workload.chosen_optimizer
    if strategy is Strategy.LEAN:
        # bf16 weights, bitsandbytes 8-bit AdamW moments, a bf16 Kahan compensation buffer per weight (the update bits
        # bf16 rounding would lose), and the optimizer step fused into backward: each layer's gradient is applied and
        # freed as soon as it exists, so at most one layer's gradient (plus the embeddings') lives at a time.
        layer = max(_decoder_layer_parameters(workload), workload.model.embedding_parameters // 2)
        return DeviceMemory(
            weights=2 * n,
            master_weights=LEAN_COMPENSATION_BYTES_PER_PARAMETER * n,
            gradients=2 * 2 * layer,
            optimizer=ADAMW_8BIT_BYTES_PER_PARAMETER * n,
        )
    if not strategy.shards:
        if precision is Precision.BF16:  # pure bf16 training: AdamW's moments are bf16 too
            return DeviceMemory(weights=2 * n, gradients=2 * n, optimizer=_optimizer_bytes_per_parameter(opt, 2) * n)
        # fp16 autocast needs fp32 weights (the grad scaler cannot unscale fp16 gradients) and caches an fp16 cast of
        # each weight for the step; the CPU trains in fp32 throughout.
        master = 4 * n if precision is Precision.FP16 else 0
        return DeviceMemory(
            weights=0 if master else 4 * n,
            master_weights=master,
            gradients=4 * n,
            optimizer=_optimizer_bytes_per_parameter(opt, 4) * n,
            working=2 * n if master else 0,
        )
    # FSDP: accelerate upcasts every trainable flat parameter to fp32; each GPU keeps 1/world of it, its gradient and
    # its optimizer state, and gathers whole layers in the compute dtype to run them (the root unit, embeddings and
    # output projection, stays gathered for the whole step).
    working = a * (workload.model.embedding_parameters + FSDP_LIVE_LAYERS * _decoder_layer_parameters(workload))
    if strategy is Strategy.FSDP_OFFLOAD:
        return DeviceMemory(working=working)
    world = placement.world_size
    return DeviceMemory(
        master_weights=4 * n / world,
        gradients=4 * n / world,
        optimizer=_optimizer_bytes_per_parameter(opt, 4) * n / world,
        working=working,
    )


def _lora_state(workload: Workload, placement: Placement, strategy: Strategy) -> DeviceMemory:
    model = workload.model
    adapters = workload.adapter_parameters
    a = _compute_bytes(placement.precision)
    opt = _optimizer_bytes_per_parameter(workload.chosen_optimizer, 4)
    # Frozen base in the compute dtype; PEFT keeps the adapters in fp32 (autocast_adapter_dtype).
    replica = DeviceMemory(
        weights=a * model.parameters,
        master_weights=4 * adapters,
        gradients=4 * adapters,
        optimizer=opt * adapters,
    )
    if strategy is Strategy.SPLIT:
        # One process; the device map puts 1/gpus of the layers (and their adapters) on each GPU.
        gpus = placement.instance.gpus
        return DeviceMemory(
            weights=replica.weights / gpus,
            master_weights=replica.master_weights / gpus,
            gradients=replica.gradients / gpus,
            optimizer=replica.optimizer / gpus,
        )
    if not strategy.shards:
        return replica
    # FSDP as transformers 5.3 builds it for a PEFT model (FIELD_NOTES "PEFT models under FSDP in 5.3"): PEFT's wrap
    # policy makes each LoRA leaf its own unit, so the frozen base stays bf16 without gradients (accelerate upcasts
    # only flat parameters that require grad) and only the adapters get fp32 masters, gradients and AdamW state.
    # Each GPU keeps 1/world of it and gathers one decoder layer at a time (plus the root unit) to run it.
    working = a * (model.embedding_parameters + FSDP_LIVE_LAYERS * _decoder_layer_parameters(workload))
    if strategy is Strategy.FSDP_OFFLOAD:
        return DeviceMemory(working=working)
    world = placement.world_size
    return DeviceMemory(
        weights=a * model.parameters / world,
        master_weights=4 * adapters / world,
        gradients=4 * adapters / world,
        optimizer=opt * adapters / world,
        working=working,
    )


def _qlora_state(workload: Workload, placement: Placement) -> DeviceMemory:
    model = workload.model
    adapters = workload.adapter_parameters
    a = _compute_bytes(placement.precision)
    quantized = model.parameters - model.unquantized_parameters
    largest_linear = max(fan_in * fan_out for fan_in, fan_out in model.architecture.layer_linears())
    # NF4 linear layers; 16-bit embeddings, output projection and MoE routed experts; TRL casts the adapters to bf16
    # (the QLoRA recipe); bitsandbytes dequantizes one layer's weight at a time to multiply by it.
    return DeviceMemory(
        weights=NF4_BYTES_PER_PARAMETER * quantized + a * model.unquantized_parameters + 2 * adapters,
        gradients=2 * adapters,
        optimizer=_optimizer_bytes_per_parameter(workload.chosen_optimizer, 2) * adapters,
        working=a * largest_linear,
    )


def processes(placement: Placement, strategy: Strategy) -> int:
    """Training processes per instance: one per GPU under torchrun, else one."""
    return placement.processes if strategy.torchrun else 1


def _host_memory(workload: Workload, placement: Placement, strategy: Strategy, device: DeviceMemory) -> HostMemory:
    model = workload.model
    if not workload.trains:
        # One process; on a GPU its device map loads each safetensors shard straight onto the GPUs.
        runtime = (HOST_OS_RESERVE_GIB + HOST_PER_PROCESS_GIB) * GIB
        if not placement.instance.has_gpu:
            return HostMemory(runtime=runtime, training=_evaluation(workload, placement)[0])
        loading = min(LOAD_SHARD_BYTES, _compute_bytes(placement.precision) * model.parameters)
        return HostMemory(runtime=runtime, loading=loading)
    ranks = processes(placement, strategy)
    runtime = (HOST_OS_RESERVE_GIB + HOST_PER_PROCESS_GIB * ranks) * GIB
    if not placement.instance.has_gpu:
        return HostMemory(runtime=runtime, training=device.total)
    precision = placement.precision
    # The dtype the weights load in: full fine-tuning under fp16 loads fp32 (see `_full_state`).
    full = not workload.kind.adapter
    load_bytes = 4 if full and precision is Precision.FP16 else _compute_bytes(precision)
    if workload.kind.quantized:
        loading = ranks * min(LOAD_SHARD_BYTES, 2 * model.parameters)
    elif strategy is Strategy.SPLIT:
        loading = min(LOAD_SHARD_BYTES, load_bytes * model.parameters)  # the device map places shard by shard
    else:
        # Every process materialises the whole model in host RAM first: DDP replicas, and FSDP ranks too under
        # transformers 5.3 (cpu_ram_efficient_loading does nothing there: FIELD_NOTES, "Deployed versions").
        loading = ranks * load_bytes * model.parameters
    offloaded = 0.0
    if strategy is Strategy.FSDP_OFFLOAD:
        resident = _full_state if full else _lora_state
        sharded = resident(workload, placement, Strategy.FSDP)
        per_gpu = sharded.weights + sharded.master_weights + sharded.gradients + sharded.optimizer
        offloaded = per_gpu * placement.processes
    return HostMemory(runtime=runtime, loading=loading, offloaded=offloaded)


def _evaluation(workload: Workload, placement: Placement) -> tuple[float, int]:
    """Per-GPU bytes of generation at the evaluation batch size, and over how many GPUs the model is spread."""
    model = workload.model
    arch = model.architecture
    a = _compute_bytes(placement.precision)
    if workload.kind.quantized:
        weights = _qlora_state(workload, placement).weights
    else:
        weights = a * (model.parameters + workload.adapter_parameters)
    # An unmerged DoRA adapter rebuilds each adapted weight to take its norm in every forward, generation included.
    weights += dora_forward_work(workload, placement).peak_working_bytes
    tokens = workload.eval_batch_size * workload.seq_length
    kv_cache = 2 * arch.layers * arch.kv_dim * a * tokens
    mlp_intermediates = 4 if arch.gated_mlp else 2
    prefill = tokens * a * (arch.hidden_size + mlp_intermediates * arch.active_intermediate_size)
    logits = workload.eval_batch_size * arch.vocab_size * 4  # the last position, in fp32
    runtime = RUNTIME_RESERVE_GIB * GIB if placement.instance.has_gpu else 0.0
    one = weights + kv_cache + prefill + logits + runtime
    gpus = placement.instance.gpus
    if gpus <= 1 or one <= placement.gpu_usable_bytes:
        return one, 1
    # device_map="auto" spreads the layers (and their KV cache) over the instance's GPUs.
    return (weights + kv_cache) / gpus + prefill + logits + runtime, gpus


def _checkpoint_bytes(workload: Workload, placement: Placement, strategy: Strategy) -> float:
    """Trainable parameters and their optimizer state, as a checkpoint stores them (all ranks together)."""
    optimizer = workload.chosen_optimizer
    if not workload.trains:
        return 0.0
    if not workload.kind.adapter:
        fp32 = strategy is not Strategy.DDP or placement.precision is not Precision.BF16
        parameter_bytes = 4 if fp32 else 2
        return workload.model.parameters * (
            parameter_bytes + _optimizer_bytes_per_parameter(optimizer, parameter_bytes)
        )
    parameter_bytes = 2 if workload.kind.quantized else 4  # TRL's bf16 QLoRA adapters; PEFT's fp32 ones
    return workload.adapter_parameters * (parameter_bytes + _optimizer_bytes_per_parameter(optimizer, parameter_bytes))


def strategies(workload: Workload, placement: Placement) -> tuple[Strategy, ...]:
    """Strategies the training code implements for this approach here (the planner prices each and keeps the cheapest
    that fits).

    Never ddp/fsdp/fsdp_offload on one GPU in total (nothing to replicate or shard over: single or lean instead); a
    4-bit base is priced as DDP replicas only (the training code refuses FSDP with 4-bit weights); `split` is one
    process on one instance; `lean` is full fine-tuning on one GPU; a CPU instance runs one process. Of these, only
    the strategies the approach's row lists (what the training code implements for it) are offered.
    """
    kind = workload.kind
    if kind.gpu_only and not placement.instance.has_gpu:
        return ()
    if not kind.trains or not placement.instance.has_gpu:
        return (Strategy.SINGLE,)  # a baseline: one process, its device map spreads the model over the GPUs
    if placement.world_size == 1:
        candidates: tuple[Strategy, ...] = (Strategy.SINGLE, Strategy.LEAN)
    elif kind.quantized:
        candidates = (Strategy.DDP,)
    elif not kind.adapter or placement.count > 1:
        candidates = (Strategy.DDP, Strategy.FSDP, Strategy.FSDP_OFFLOAD)
    else:
        candidates = (Strategy.DDP, Strategy.SPLIT, Strategy.FSDP, Strategy.FSDP_OFFLOAD)
    return tuple(strategy for strategy in candidates if strategy.value in kind.strategies)


def estimate(workload: Workload, placement: Placement, strategy: Strategy) -> FitEstimate:
    """The memory needs of `workload` on `placement` with `strategy` (feasible or not)."""
    evaluation, evaluation_gpus = _evaluation(workload, placement)
    if not workload.trains:
        # Nothing trains: the only device memory is the evaluation's (checked as `evaluation_bytes`).
        return FitEstimate(
            workload=workload,
            placement=placement,
            strategy=strategy,
            device=DeviceMemory(),
            host=_host_memory(workload, placement, strategy, DeviceMemory()),
            evaluation_bytes=evaluation,
            evaluation_gpus=evaluation_gpus,
            checkpoint_bytes=0.0,
        )
    if workload.kind.quantized:
        state = _qlora_state(workload, placement)
    elif not workload.kind.adapter:
        state = _full_state(workload, placement, strategy)
    else:
        state = _lora_state(workload, placement, strategy)
    runtime = RUNTIME_RESERVE_GIB * GIB if placement.instance.has_gpu else 0.0
    device = DeviceMemory(
        weights=state.weights,
        master_weights=state.master_weights,
        gradients=state.gradients,
        optimizer=state.optimizer,
        working=state.working + dora_forward_work(workload, placement).peak_working_bytes,
        activations=activation_bytes(workload, placement),
        runtime=runtime,
    )
    return FitEstimate(
        workload=workload,
        placement=placement,
        strategy=strategy,
        device=device,
        host=_host_memory(workload, placement, strategy, device),
        evaluation_bytes=evaluation,
        evaluation_gpus=evaluation_gpus,
        checkpoint_bytes=_checkpoint_bytes(workload, placement, strategy),
    )


def best_fit(workload: Workload, placement: Placement) -> FitEstimate | None:
    """The fastest strategy that fits, or None."""
    for strategy in strategies(workload, placement):
        candidate = estimate(workload, placement, strategy)
        if candidate.fits:
            return candidate
    return None


def cheapest_alternative(workload: Workload) -> FitEstimate | None:
    """The placement to suggest when a job does not fit; None if nothing in the catalog does.

    GPU-resident strategies first (CPU offload makes every step wait for the optimizer on the CPU), then the fewest
    instances (traffic between instances is far slower than within one), then the lowest catalog price per hour; up to
    MAX_ALTERNATIVE_INSTANCES instances of every catalog type.
    """
    placements = [
        Placement(instance, count)
        for instance in catalog.trainable_instances().values()
        for count in range(1, MAX_ALTERNATIVE_INSTANCES + 1)
    ]
    feasible = [found for found in map(lambda p: best_fit(workload, p), placements) if found is not None]
    if not feasible:
        return None
    return min(
        feasible,
        key=lambda e: (
            e.strategy is Strategy.FSDP_OFFLOAD,
            e.placement.count,
            e.placement.hourly_price_usd,
            e.placement.instance.name,
        ),
    )


def plan_fit(workload: Workload, placement: Placement) -> FitEstimate:
    """The fastest strategy that fits `placement`; `InfeasibleJob` with every strategy's numbers and the cheapest
    feasible alternative otherwise."""
    found = best_fit(workload, placement)
    if found is not None:
        return found
    model, approach = workload.model.key, workload.approach
    tried = [estimate(workload, placement, strategy) for strategy in strategies(workload, placement)]
    lines = [f"- {e.describe()}: {'; '.join(e.problems())}" for e in tried]
    if not tried:
        lines = [f"- {approach} cannot run on {placement.instance.name}"]
    alternative = cheapest_alternative(workload)
    if alternative is None:
        advice = (
            f"No catalog instance type fits it (up to {MAX_ALTERNATIVE_INSTANCES} instances): choose a smaller model, "
            "QLoRA, or a smaller batch_size or max_seq_length."
        )
    else:
        advice = (
            f"Cheapest feasible alternative: instance_type {alternative.placement.instance.name}, instance_count "
            f"{alternative.placement.count} (${alternative.placement.hourly_price_usd:.2f}/h at catalog prices): "
            f"{alternative.describe()}."
        )
    raise InfeasibleJob(
        f"{model} {approach} (batch {workload.batch_size} per GPU, {workload.seq_length} tokens) does not fit "
        f"{placement.describe()}:\n" + "\n".join(lines) + f"\n{advice}"
    )


def save_interval_seconds(checkpoint_bytes: float) -> int:
    """Seconds between checkpoints so that uploading one takes at most SAVE_TIME_SHARE of the time, within bounds."""
    upload = checkpoint_bytes / CHECKPOINT_THROUGHPUT_BYTES_PER_SECOND
    interval = math.ceil(upload * (1 - SAVE_TIME_SHARE) / SAVE_TIME_SHARE)
    low, high = SAVE_INTERVAL_BOUNDS_SECONDS
    return min(max(interval, low), high)
