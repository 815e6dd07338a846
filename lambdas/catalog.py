"""The one catalog of models, approaches, instances, prices and metric definitions.

Imported by the stacks, the Lambda handlers, the CLI and the report. Training code never imports it:
it receives what it needs as hyperparameters, and prints metrics in the form `METRIC_DEFINITIONS` parses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# A float as Python's repr/format writes it, including exponents and nan/inf.
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))"


@dataclass(frozen=True)
class MetricDefinition:
    """A metric the training code prints as `name=value;` on its own stdout line."""

    name: str
    description: str

    @property
    def regex(self) -> str:
        # \b keeps `train_loss` from matching inside `eval_train_loss`.
        return rf"\b{re.escape(self.name)}={_NUMBER};"


METRICS: tuple[MetricDefinition, ...] = (
    MetricDefinition("dataset_train_rows", "rows in the train channel"),
    MetricDefinition("dataset_test_rows", "rows in the test channel (evaluation samples are drawn from them)"),
    MetricDefinition("train_loss", "training loss (logged periodically; the last value is final)"),
    MetricDefinition("train_step", "optimizer step reached (progress)"),
    MetricDefinition("train_tokens_per_second", "non-padding tokens trained per second"),
    MetricDefinition("train_padding_fraction", "fraction of batch tokens that are padding"),
    MetricDefinition("train_runtime_seconds", "wall seconds spent in the training loop"),
    MetricDefinition("peak_memory_gb", "peak accelerator (or host) memory in GiB"),
    MetricDefinition("eval_intent_accuracy", "fraction of test samples whose predicted intent is right"),
    MetricDefinition("eval_parse_rate", "fraction of outputs that are exactly one known label"),
    MetricDefinition("eval_exact_match", "fraction of test samples whose answer equals the reference (task sft)"),
    MetricDefinition("eval_rouge1", "ROUGE-1 F1 of output vs reference label"),
    MetricDefinition("eval_rouge2", "ROUGE-2 F1"),
    MetricDefinition("eval_rougeL", "ROUGE-L F1"),
    MetricDefinition("eval_bertscore_f1", "BERTScore F1"),
    MetricDefinition("eval_inference_seconds", "total generation seconds over the evaluated samples"),
    MetricDefinition("eval_seconds_per_sample", "generation seconds per evaluated sample"),
    MetricDefinition("eval_inference_seconds_merged", "the same generation with the adapter merged (merge_adapter)"),
    MetricDefinition("eval_seconds_per_sample_merged", "generation seconds per sample with the adapter merged"),
    MetricDefinition("eval_samples", "number of test samples evaluated"),
)


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker `AlgorithmSpecification.MetricDefinitions` for every catalog metric."""
    return [{"Name": m.name, "Regex": m.regex} for m in METRICS]


def parse_metric_lines(text: str) -> dict[str, float]:
    """Final value of each catalog metric found in `text` (the last occurrence wins, as in SageMaker)."""
    found: dict[str, float] = {}
    for metric in METRICS:
        matches = re.findall(metric.regex, text)
        if matches:
            found[metric.name] = float(matches[-1])
    return found


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer: what the memory planner needs besides the parameter count."""

    hidden_size: int
    layers: int
    heads: int
    kv_heads: int  # < heads: grouped-query attention (smaller K/V projections and KV cache)
    intermediate_size: int
    vocab_size: int
    gated_mlp: bool = True  # SwiGLU (gate, up, down: Llama, Mistral); False: up, down (GPT-NeoX)
    linear_bias: bool = False  # GPT-NeoX has biases on every linear layer and LayerNorm; Llama/Mistral none
    fused_qkv: bool = False  # GPT-NeoX projects Q, K and V with one linear layer (`query_key_value`)
    tied_embeddings: bool = False  # the three catalog models keep a separate output projection

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.heads

    @property
    def kv_dim(self) -> int:
        """Width of the K (and of the V) projection."""
        return self.kv_heads * self.head_dim

    def layer_linears(self) -> tuple[tuple[int, int], ...]:
        """(in, out) features of every linear layer of one decoder layer: what LoRA's `all-linear` targets and
        what bitsandbytes quantizes to 4 bits (embeddings and the output projection stay 16-bit)."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_dim
        qkv = ((h, h + 2 * kv),) if self.fused_qkv else ((h, h), (h, kv), (h, kv))
        mlp = ((h, i), (h, i), (i, h)) if self.gated_mlp else ((h, i), (i, h))
        return (*qkv, (h, h), *mlp)

    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: its linear layers plus two norms (and biases where the model has them)."""
        linears = self.layer_linears()
        weights = sum(fan_in * fan_out for fan_in, fan_out in linears)
        biases = sum(fan_out for _, fan_out in linears) if self.linear_bias else 0
        norms = 2 * self.hidden_size * (2 if self.linear_bias else 1)  # LayerNorm has a bias, RMSNorm does not
        return weights + biases + norms

    def embedding_parameters(self) -> int:
        """Token embeddings plus the output projection (once when tied) and the final norm."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return embeddings + self.hidden_size * (2 if self.linear_bias else 1)

    def parameters(self) -> int:
        """Total parameters (exact for the catalog's models: it matches their published counts)."""
        return self.layers * self.layer_parameters() + self.embedding_parameters()

    def lora_parameters(self, rank: int) -> int:
        """Trainable parameters of a rank-`rank` LoRA on every linear layer (PEFT's `all-linear`: A is r x in,
        B is out x r, the output projection excluded)."""
        return self.layers * rank * sum(fan_in + fan_out for fan_in, fan_out in self.layer_linears())


# A Hub id gives no shape, so the planner guesses one from the size: Llama-shaped (SwiGLU, width = 128 x depth as in
# Llama-2-7B/13B), full multi-head attention and a 128,256-token vocabulary (Llama 3's). Every guess errs towards
# more memory: no grouped-query saving on the KV cache, a big vocabulary for the logits.
_ESTIMATE_WIDTH_PER_LAYER = 128
_ESTIMATE_VOCAB_SIZE = 128_256


def estimate_architecture(parameters: int) -> Architecture:
    """A Llama-shaped architecture of roughly `parameters` parameters (for Hub ids: see the comment above)."""
    # 12 x layers x hidden^2 parameters per Llama-shaped model with hidden = 128 x layers -> layers = (P / 196608)^(1/3)
    layers = max(1, round((parameters / (12 * _ESTIMATE_WIDTH_PER_LAYER**2)) ** (1 / 3)))
    hidden = layers * _ESTIMATE_WIDTH_PER_LAYER
    heads = max(1, hidden // 128)
    intermediate = 256 * math.ceil(hidden * 8 / 3 / 256)  # SwiGLU's 2/3 x 4h, rounded up as Llama does
    return Architecture(hidden, layers, heads, heads, intermediate, _ESTIMATE_VOCAB_SIZE)


@dataclass(frozen=True)
class Model:
    """A causal language model the workflow can fine-tune."""

    key: str
    hf_id: str
    family: str
    architecture: Architecture
    parameters: int  # exact for catalog models (from the architecture); the input's size for Hub ids
    gated: bool

    @property
    def params_billion(self) -> float:
        """Size in billions of parameters (selects the defaults bucket)."""
        return self.parameters / 1e9

    @property
    def embedding_parameters(self) -> int:
        """Parameters outside the decoder layers (token embeddings, output projection): 16-bit even under QLoRA.
        For a Hub id's guessed shape at most half the model, so a small model's guess cannot be all embeddings."""
        return min(self.architecture.embedding_parameters(), self.parameters // 2)


def _catalog_model(key: str, hf_id: str, family: str, architecture: Architecture, *, gated: bool) -> Model:
    return Model(key, hf_id, family, architecture, architecture.parameters(), gated)


MODELS: dict[str, Model] = {
    m.key: m
    for m in (
        # Shapes from each model's config.json on the Hub. Gated on the Hub: training needs the HF token (passed as
        # a Secrets Manager ARN, never the value), and Plan refuses the run when the token secret has no value.
        _catalog_model(
            "llama2-7b", "meta-llama/Llama-2-7b-hf", "llama", Architecture(4096, 32, 32, 32, 11008, 32000), gated=True
        ),
        _catalog_model(
            "mistral-7b",
            "mistralai/Mistral-7B-v0.1",
            "mistral",
            Architecture(4096, 32, 32, 8, 14336, 32000),
            gated=False,
        ),
        _catalog_model(
            "gpt-neox-20b",
            "EleutherAI/gpt-neox-20b",
            "gpt_neox",
            Architecture(6144, 44, 64, 64, 24576, 50432, gated_mlp=False, linear_bias=True, fused_qkv=True),
            gated=False,
        ),
    )
}

# Any other Hugging Face causal LM can be named by its Hub id (`org/name`); the Hub's own rules for those names.
HF_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# A Hub id says nothing about size: assume the study's smallest class unless the input says `params_billion`.
DEFAULT_PARAMS_BILLION = 7.0


def is_hf_id(value: str) -> bool:
    """True when `value` looks like a Hugging Face Hub model id (`org/name`)."""
    return bool(HF_ID_PATTERN.fullmatch(value))


def resolve_model(model: str, params_billion: float | None = None) -> Model:
    """The catalog model for a key, or an ad-hoc entry for a Hub id; `KeyError` when it is neither.

    `params_billion` sizes a Hub id (it selects the default instance and batch size, and the planner's guessed
    shape); for catalog keys the catalog's own size wins, so the study defaults stay what they are.
    """
    if model in MODELS:
        return MODELS[model]
    if is_hf_id(model):
        parameters = round((params_billion if params_billion is not None else DEFAULT_PARAMS_BILLION) * 1e9)
        return Model(model, model, "causal-lm", estimate_architecture(parameters), parameters, gated=False)
    raise KeyError(model)


# --------------------------------------------------------------------------------------------------------------------
# Approaches
# --------------------------------------------------------------------------------------------------------------------
# The three fine-tuning approaches, and `baseline`: the base model evaluated zero-shot on the same samples, without any
# training (listed-labels prompt, constrained decoding), so a report shows what fine-tuning bought.
TRAINING_APPROACHES: tuple[str, ...] = ("full", "lora", "qlora")
BASELINE = "baseline"
APPROACHES: tuple[str, ...] = (*TRAINING_APPROACHES, BASELINE)
# Approaches that need a GPU: bitsandbytes 4-bit kernels are what make QLoRA worth running.
GPU_ONLY_APPROACHES: frozenset[str] = frozenset({"qlora"})
PROMPT_STYLES: tuple[str, ...] = ("compact", "listed")
# A zero-shot model cannot know the label set a compact prompt leaves out: a baseline always lists the labels.
BASELINE_PROMPT_STYLE = "listed"


# --------------------------------------------------------------------------------------------------------------------
# Tasks: what a dataset's rows are and which metric ranks a job
# --------------------------------------------------------------------------------------------------------------------
# classification: `{"text", "label"}` rows (Banking77); sft: instruction/chat rows, `{"messages": [...]}` or
# `{"prompt", "completion"}` (training_code/sft.py). Both are scored by greedy generation on the test split.
CLASSIFICATION = "classification"
SFT = "sft"
TASKS: tuple[str, ...] = (CLASSIFICATION, SFT)
# The quality metrics each task reports (higher is better), any of which may be the run's primary metric: the one the
# report ranks by and prices points of (cost per point). The first is the task's default.
TASK_QUALITY_METRICS: dict[str, tuple[str, ...]] = {
    CLASSIFICATION: ("eval_intent_accuracy", "eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bertscore_f1"),
    SFT: ("eval_exact_match", "eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bertscore_f1"),
}
QUALITY_METRICS: tuple[str, ...] = tuple(dict.fromkeys(m for ms in TASK_QUALITY_METRICS.values() for m in ms))
# Shares of samples answered right: a per-sample right/wrong exists, so Wilson intervals and the paired McNemar test
# (lambdas/paired.py) apply. ROUGE and BERTScore are means of graded scores: no interval is claimed for them.
PROPORTION_METRICS: frozenset[str] = frozenset({"eval_intent_accuracy", "eval_exact_match"})
# eval_samples "all": the whole test split. The estimator assumes Banking77's test split for a dataset it cannot see.
ALL_SAMPLES = "all"
ASSUMED_TEST_ROWS = 3_080


def primary_metric(task: str | None, requested: str | None = None) -> str:
    """The run's primary metric: the requested one, else the task's default (classification when unset)."""
    return requested or TASK_QUALITY_METRICS[task or CLASSIFICATION][0]


def planned_eval_samples(eval_samples: int | str) -> int:
    """The samples a job will evaluate, for estimates: the number, or the assumed test rows for `all`."""
    return ASSUMED_TEST_ROWS if eval_samples == ALL_SAMPLES else int(eval_samples)


# --------------------------------------------------------------------------------------------------------------------
# Accelerators and instance types
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Accelerator:
    """A GPU model: how much memory a process can actually get, and whether it computes in bf16."""

    name: str
    nominal_gb: int  # as marketed ("24 GB": really the GiB of memory on the board)
    usable_gib: float  # what the driver reports as total memory (nvidia-smi / torch total_memory)
    bf16: bool  # compute capability >= 8.0 (Ampere and newer); older GPUs train in fp16
    # For the expected-cost estimate (lambdas/estimate.py): peak *dense* tensor throughput in the training precision
    # (bf16; fp16 where there is no bf16) and memory bandwidth (decoding is bound by it). 0: unknown.
    peak_tflops: float = 0.0
    memory_gb_per_s: float = 0.0


# Peak dense tensor TFLOP/s (the sparsity figures are 2x and no training step reaches them): A10G 70 bf16 (AWS's
# variant of the A10, whose datasheet says 125; the A10G's tensor figure is about half, per published A10-vs-A10G spec
# comparisons), L4 121 (datasheet: 242 with sparsity), V100 SXM2 125 fp16, A100 312 bf16, H100 SXM 989 bf16 (NVIDIA
# datasheets). Bandwidth in GB/s from the same sheets (A100 40GB: 1,555; H100 SXM: 3,350).
# Usable = the total the driver reports, lower than the marketed size because ECC and the driver reserve part of it:
# nvidia-smi says 23,028 MiB (22.5 GiB) for the A10/A10G's "24 GB", 23,034 MiB for the L4, 40,960 MiB for the A100
# 40GB and 81,559 MiB for the H100 80GB (modal-labs/modal-client#2797); torch reports total_memory=16160MB for the
# Tesla V100-SXM2-16GB. The CUDA context, NCCL buffers and allocator slack come out of this too: the memory planner
# charges them per GPU (`memory.RUNTIME_RESERVE_GIB`).
ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        Accelerator("A10G", 24, 23028 / 1024, bf16=True, peak_tflops=70, memory_gb_per_s=600),
        Accelerator("L4", 24, 23034 / 1024, bf16=True, peak_tflops=121, memory_gb_per_s=300),
        Accelerator("V100", 16, 16160 / 1024, bf16=False, peak_tflops=125, memory_gb_per_s=900),
        Accelerator("A100", 40, 40960 / 1024, bf16=True, peak_tflops=312, memory_gb_per_s=1555),
        Accelerator("H100", 80, 81559 / 1024, bf16=True, peak_tflops=989, memory_gb_per_s=3350),
    )
}


@dataclass(frozen=True)
class InstanceType:
    """A SageMaker training instance type: accelerators, host memory and an on-demand price fallback."""

    name: str
    gpus: int
    gpu: Accelerator | None  # None for CPU instances
    host_memory_gib: int  # the instance's RAM (EC2's published size)
    hourly_price_usd: float  # us-east-1 on-demand training price; the Pricing API is asked first

    @property
    def has_gpu(self) -> bool:
        """True for accelerated instances (QLoRA needs one)."""
        return self.gpus > 0

    @property
    def volume_size_gb(self) -> int:
        """EBS volume for a training job on this type (instances with NVMe storage ignore it and use that)."""
        # The volume holds the Hub download, checkpoints (full FT of 7B with optimizer state ~ 80 GB per save)
        # and the final model. Multi-GPU types host the big jobs. Cost is tiny next to the GPU price.
        if not self.has_gpu:
            return 30
        return 500 if self.gpus >= 4 else 200


# Prices: us-east-1 SageMaker *training* on-demand USD/hour (price_source "catalog"), as last seen on the public price
# list; g6 ones are approximations (EC2 price x 1.25, SageMaker's usual markup on G instances). Prices move: the Plan
# step asks the Pricing API first, and these only keep estimates meaningful when it cannot be reached. Host memory is
# EC2's published RAM per size (g6 sizes have the same RAM as g5 sizes).
INSTANCES: dict[str, InstanceType] = {
    i.name: i
    for i in (
        InstanceType("ml.m5.xlarge", 0, None, 16, 0.23),  # CPU: smoke tests only
        InstanceType("ml.m5.2xlarge", 0, None, 32, 0.461),
        InstanceType("ml.g5.xlarge", 1, ACCELERATORS["A10G"], 16, 1.408),
        InstanceType("ml.g5.2xlarge", 1, ACCELERATORS["A10G"], 32, 1.515),
        InstanceType("ml.g5.4xlarge", 1, ACCELERATORS["A10G"], 64, 2.03),
        InstanceType("ml.g5.8xlarge", 1, ACCELERATORS["A10G"], 128, 3.06),
        InstanceType("ml.g5.12xlarge", 4, ACCELERATORS["A10G"], 192, 7.09),
        InstanceType("ml.g5.16xlarge", 1, ACCELERATORS["A10G"], 256, 5.12),
        InstanceType("ml.g5.24xlarge", 4, ACCELERATORS["A10G"], 384, 10.18),
        InstanceType("ml.g5.48xlarge", 8, ACCELERATORS["A10G"], 768, 20.36),
        InstanceType("ml.g6.xlarge", 1, ACCELERATORS["L4"], 16, 1.006),
        InstanceType("ml.g6.2xlarge", 1, ACCELERATORS["L4"], 32, 1.222),
        InstanceType("ml.g6.4xlarge", 1, ACCELERATORS["L4"], 64, 1.654),
        InstanceType("ml.g6.8xlarge", 1, ACCELERATORS["L4"], 128, 2.518),
        InstanceType("ml.g6.12xlarge", 4, ACCELERATORS["L4"], 192, 5.752),
        InstanceType("ml.g6.24xlarge", 4, ACCELERATORS["L4"], 384, 8.344),
        InstanceType("ml.g6.48xlarge", 8, ACCELERATORS["L4"], 768, 16.688),
        InstanceType("ml.p3.2xlarge", 1, ACCELERATORS["V100"], 61, 3.825),
        InstanceType("ml.p4d.24xlarge", 8, ACCELERATORS["A100"], 1152, 37.688),
        InstanceType("ml.p5.48xlarge", 8, ACCELERATORS["H100"], 2048, 113.068),
    )
}
# The region the fallback prices are for (recorded next to every estimate so nobody mistakes them for local prices).
CATALOG_PRICE_REGION = "us-east-1"


# --------------------------------------------------------------------------------------------------------------------
# Expected-cost assumptions (lambdas/estimate.py). Each is a guess to recalibrate from the report's estimate-vs-actual
# columns; the estimate carries them along so every figure can be traced to the number that made it.
# --------------------------------------------------------------------------------------------------------------------
# Mean tokens per training example (prompt + label) by prompt style, measured on Banking77's train split with
# Mistral-7B-v0.1's tokenizer: the compact prompt 34.3, the prompt that lists the 77 labels 616.3.
TOKENS_PER_EXAMPLE: dict[str, float] = {"compact": 34.3, "listed": 616.3}
# Train rows of the named datasets whose size is known (PolyAI/banking77's train split).
DATASET_TRAIN_ROWS: dict[str, int] = {"banking77": 10_003}
# Other datasets: the train channel's bytes / this (a JSON Lines row of a short query and its label, Banking77-like);
# when even the size is unknown, a Banking77-sized dataset.
MEAN_BYTES_PER_ROW = 110
DEFAULT_TRAIN_ROWS = 10_003
# Training FLOPs per parameter per token: forward 2N + backward 4N for full fine-tuning; with frozen base weights
# (LoRA, QLoRA) backward needs only the activation gradients, ~2N. Gradient checkpointing recomputes the forward: +2N.
TRAINING_FLOPS_PER_PARAMETER: dict[str, int] = {"full": 6, "lora": 4, "qlora": 4}
RECOMPUTE_FLOPS_PER_PARAMETER = 2
# Model FLOPs utilisation (counting the recomputation) per approach. Published Llama-2-7B LoRA on one A100: plain
# HF + PEFT ~21% (4N counted; tuned kernels ~33-35%); full fine-tuning with FSDP 44-55% on one node of A100s, less on
# PCIe A10Gs; QLoRA trains >= 25% slower than LoRA (dequantization, the study's finding): 0.25 / 1.25 = 0.20.
UTILISATION: dict[str, float] = {"full": 0.35, "lora": 0.25, "qlora": 0.20}
DEFAULT_UTILISATION = 0.25  # an approach not listed above
# CPU instances (smoke tests only): a few vCPUs of AVX-512 fp32, order of magnitude.
CPU_PEAK_TFLOPS = 0.2
CPU_MEMORY_GB_PER_S = 20.0
# Evaluation: constrained greedy decoding of the label, ~8 tokens per sample (a Banking77 label is 3-7 tokens plus the
# end token), each decoding step reading every weight once per batch (memory-bound) at this share of peak bandwidth.
DECODE_TOKENS_PER_SAMPLE = 8
DECODE_BANDWIDTH_EFFICIENCY = 0.6
# Bytes per parameter of the weights downloaded, read while decoding and (full fine-tuning, merged adapters) uploaded:
# the Hub's bf16/fp16 safetensors.
WEIGHT_BYTES_PER_PARAMETER = 2
# Before the first step: SageMaker provisioning, pulling the ~20 GB training image and the toolkit's setup (the
# Starting and Downloading secondary statuses; a few minutes on g5), then the Hub download at this rate.
STARTUP_SECONDS = 240
MODEL_DOWNLOAD_BYTES_PER_SECOND = 100 * 10**6
# Expected managed-spot price as a share of on-demand: AWS says managed spot training saves "up to 90%"; 70% is the
# usual saving on g5/p4d (re-check with the report's spot_savings_pct). Waiting for capacity is not billed.
SPOT_PRICE_FRACTION = 0.3
SPOT_PRICE_SOURCE = "assumed 70% managed-spot saving (AWS: up to 90%)"


def training_quota_name(instance_type: str, spot: bool) -> str:
    """The Service Quotas name (service code `sagemaker`) that caps concurrent instances of a type for training."""
    kind = "spot training job usage" if spot else "training job usage"
    return f"{instance_type} for {kind}"


# --------------------------------------------------------------------------------------------------------------------
# Defaults per (model size class, approach)
# --------------------------------------------------------------------------------------------------------------------
# (class, largest size in billions it covers). Every default below is feasible by the memory planner up to its class's
# bound (tests/lambdas/test_lambda_memory.py checks it); a bigger model falls into the next class.
SIZE_CLASSES: tuple[tuple[str, float], ...] = (("2b", 2.0), ("7b", 8.5), ("20b", 30.0), ("70b", 72.0))


def size_class(params_billion: float) -> str:
    """The defaults bucket for a model size: the study's 7B and 20B classes, one below for small Hub models (and the
    offline demo's tiny ones) and one above for bigger Hub models (beyond the last bound the last class's defaults
    apply, and the planner refuses what they cannot fit)."""
    return next((name for name, bound in SIZE_CLASSES if params_billion <= bound), SIZE_CLASSES[-1][0])


@dataclass(frozen=True)
class JobDefaults:
    """What a job gets when the input does not say: where it runs and how hard it trains."""

    instance_type: str
    instance_count: int
    batch_size: int  # per device
    learning_rate: float | None  # None: the training code chooses (and for baselines: no training at all)
    max_runtime_hours: float  # bounds the bill: the estimate and the budget check use it


# Learning rates: 2e-4 is the QLoRA paper's rate for models up to 13B, 1e-4 its rate above; 2e-5 for full fine-tuning
# at every size (Llama 2's SFT rate for 7B-70B; 10x below LoRA's). training_code's `auto` rule says the same.
# Runtime bounds are for compact prompts (~35 tokens per Banking77 example, ~10k examples per epoch): about twice the
# expected wall time or more, which is mostly startup, model download and load, evaluation and the final save. Listed
# prompts (~18x the tokens) may need a higher max_runtime_hours.
DEFAULTS: dict[tuple[str, str], JobDefaults] = {
    # Up to 2B (Hub models such as Qwen2.5-1.5B or Llama-3.2-1B): even full fine-tuning (8 bytes/parameter in pure bf16
    # AdamW, ~15 GiB at 2B) fits one A10G at batch 8, so every approach runs on the cheapest GPU instance.
    ("2b", "qlora"): JobDefaults("ml.g5.xlarge", 1, 8, 2e-4, 2),
    ("2b", "lora"): JobDefaults("ml.g5.xlarge", 1, 8, 2e-4, 2),
    ("2b", "full"): JobDefaults("ml.g5.xlarge", 1, 8, 2e-5, 2),
    # Baselines (zero-shot evaluation, no training) need inference memory only: bf16 weights, the KV cache and prefill
    # of one evaluation batch of listed prompts (~1,024 tokens). Weights stay bf16, as every fine-tuned model but
    # QLoRA's is evaluated, so the baseline measures the base model and not a quantization of it. One process loads
    # the weights shard by shard onto its GPU(s) (a device map), so host memory holds one shard at a time. Batch size
    # and learning rate do not apply (the evaluation batch is eval_batch_size); one hour covers the download, the load
    # and 500 listed-prompt generations with a wide margin. No checkpoints: an interrupted spot baseline starts over.
    ("2b", "baseline"): JobDefaults("ml.g5.xlarge", 1, 8, None, 1),
    # 7B QLoRA: 4-bit weights (~3.9 GB) + adapters + activations fit one 24 GB A10G at batch 8 (the study's choice).
    ("7b", "qlora"): JobDefaults("ml.g5.xlarge", 1, 8, 2e-4, 2),
    # 7B baseline: ~12.6 GiB of bf16 weights + ~5 GiB of KV cache and prefill at 8 x 1,024 tokens fit one A10G (22.5
    # GiB usable); the xlarge's 16 GiB of host RAM holds one 10 GB shard at a time. The cheapest GPU instance.
    ("7b", "baseline"): JobDefaults("ml.g5.xlarge", 1, 8, None, 1),
    # 7B LoRA: bf16 weights (~13.5 GB) + activations with gradient checkpointing fit one A10G at batch 8; the
    # 2xlarge is for its 32 GiB host RAM: loading the bf16 weights needs ~17 GiB with the runtime (the xlarge has 16).
    ("7b", "lora"): JobDefaults("ml.g5.2xlarge", 1, 8, 2e-4, 2),
    # 7B full: AdamW state is 16 bytes/parameter under FSDP (accelerate upcasts the bf16 weights to fp32), ~108 GB.
    # Over the study's 4 A10Gs (ml.g5.12xlarge) that is ~27 GB per GPU before activations: it does not fit. At the
    # study's global batch of 8 (~1,250 steps per epoch) plus ~0.5 h of startup, download, load, evaluation and final
    # save, the candidates the planner accepts:
    #   g5.12xlarge, FSDP + CPU offload, $7.09/h: host ~123 of 192 GiB, but AdamW over 6.74B fp32 parameters runs on
    #     the CPU every step and the fp32 shards cross PCIe both ways: ~10 s/step -> ~4 h, ~$30, the longest spot
    #     exposure, ~100 GiB of pinned host memory;
    #   g5.48xlarge, FSDP, $20.36/h: ~16 of 22.5 GiB per A10G; all-gathers over PCIe (no NVLink): ~3-4 s/step ->
    #     ~1.7 h, ~$35;
    #   p4d.24xlarge, FSDP, $37.69/h: NVSwitch, ~0.2 s/step -> ~0.6 h, ~$23, but p4d quotas are 0 by default in most
    #     accounts, its spot capacity is scarce and the study's 20B LoRA already needs one (three p4d jobs at
    #     max_concurrency 3 would need a quota of 3);
    #   g6.48xlarge (8x L4) also fits; its catalog price is an approximation, not a published one.
    # The estimates overlap within their uncertainty, so we take the cheapest GPU-resident option with obtainable
    # capacity: g5.48xlarge, batch 1 per GPU (the study's global batch of 8).
    ("7b", "full"): JobDefaults("ml.g5.48xlarge", 1, 1, 2e-5, 3),
    # 20B QLoRA: we choose ml.g5.12xlarge over the study's p4d. NF4 weights are ~11 GiB per GPU copy, so one replica
    # plus paged 8-bit optimizer state and batch-2 activations fit each 24 GB A10G; 4 GPUs x batch 2 keeps the global
    # batch of 8. It costs ~1/5 of a p4d per hour, its spot capacity is far easier to get and its default quota is
    # rarely 0, while p4d quotas usually are.
    ("20b", "qlora"): JobDefaults("ml.g5.12xlarge", 1, 2, 1e-4, 3),
    # 20B baseline: ~38 GiB of bf16 weights fit no single catalog GPU below an 80 GB H100 (p5: $113/h). We keep bf16
    # (not 8-bit/4-bit on a g5.xlarge, which would evaluate a quantized model, not the base) and spread one process's
    # model over the g5.12xlarge's 4 A10Gs with a sequential device map: ~14 GiB per GPU with the KV cache. $7.09/h,
    # the instance the 20B QLoRA job uses (same quota); ml.g6.12xlarge (4x L4) also fits at an approximated $5.75/h
    # but its L4s have half the memory bandwidth that decoding is bound by.
    ("20b", "baseline"): JobDefaults("ml.g5.12xlarge", 1, 8, None, 1),
    # 20B LoRA: bf16 weights alone are ~38 GiB, beyond any A10G and one A100 40GB's room with activations: FSDP over
    # the p4d's 8 A100s (the study's choice), batch 1 per GPU = global 8.
    ("20b", "lora"): JobDefaults("ml.p4d.24xlarge", 1, 1, 1e-4, 2),
    # 20B full (not in the default matrix: the study skipped it for cost): ~330 GB of training state: two p4ds.
    ("20b", "full"): JobDefaults("ml.p4d.24xlarge", 2, 1, 2e-5, 4),
    # Up to 72B (Hub models with params_billion): 4-bit 70B (~37 GiB + adapters) needs an 80 GB GPU per replica (QLoRA
    # does not shard); LoRA and full fine-tuning shard over H100s.
    ("70b", "qlora"): JobDefaults("ml.p5.48xlarge", 1, 1, 1e-4, 6),
    ("70b", "lora"): JobDefaults("ml.p5.48xlarge", 2, 1, 1e-4, 6),
    ("70b", "full"): JobDefaults("ml.p5.48xlarge", 4, 1, 2e-5, 8),
    # 70B baseline: ~134 GiB of bf16 weights at 72B spread over a p4d's 8 A100s (~22 GiB per GPU with the cache).
    ("70b", "baseline"): JobDefaults("ml.p4d.24xlarge", 1, 8, None, 2),
}


def job_defaults(params_billion: float, approach: str) -> JobDefaults:
    """Default instance, count, batch size, learning rate and runtime bound for a model size and approach."""
    return DEFAULTS[(size_class(params_billion), approach)]


# Where a job may move when its instance type has no quota or no capacity (lambdas/remedies.py), per size class and
# approach, in order of preference: the default first, then the same GPU memory on other families or sizes (the
# next size up mostly adds host RAM and vCPUs), then more GPU memory. The remedy still asks the memory planner and
# the applied quota about each candidate, so a list may hold types that only fit some models of the class.
FALLBACK_INSTANCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("2b", "qlora"): ("ml.g5.xlarge", "ml.g6.xlarge", "ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g5.4xlarge"),
    ("2b", "lora"): ("ml.g5.xlarge", "ml.g6.xlarge", "ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g5.4xlarge"),
    ("2b", "full"): ("ml.g5.xlarge", "ml.g6.xlarge", "ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g5.4xlarge"),
    ("7b", "qlora"): ("ml.g5.xlarge", "ml.g6.xlarge", "ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g5.4xlarge"),
    ("7b", "lora"): ("ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g5.4xlarge", "ml.g6.4xlarge", "ml.g5.12xlarge"),
    ("7b", "full"): ("ml.g5.48xlarge", "ml.g6.48xlarge", "ml.p4d.24xlarge"),
    ("20b", "qlora"): ("ml.g5.12xlarge", "ml.g6.12xlarge", "ml.g5.24xlarge", "ml.p4d.24xlarge"),
    ("20b", "lora"): ("ml.p4d.24xlarge", "ml.p5.48xlarge"),
    ("20b", "full"): ("ml.p4d.24xlarge", "ml.p5.48xlarge"),
    ("70b", "qlora"): ("ml.p5.48xlarge",),
    ("70b", "lora"): ("ml.p5.48xlarge",),
    ("70b", "full"): ("ml.p5.48xlarge",),
}


def fallback_instances(params_billion: float, approach: str) -> tuple[str, ...]:
    """The fallback list for a model size and approach (empty for approaches without one, e.g. no training)."""
    return FALLBACK_INSTANCES.get((size_class(params_billion), approach), ())


# The Banking77 study: 3 models x 3 approaches, minus GPT-NeoX-20B full (skipped for cost) = 8 jobs. Baselines are
# not in it by default: the execution input's `baselines: true` adds one per model (see `with_baselines`), at most
# 2 x $1.41 + $7.09 = $9.91 more at catalog on-demand prices for the study's three models (their 1-hour bounds).
STUDY_MODELS: tuple[str, ...] = ("llama2-7b", "mistral-7b", "gpt-neox-20b")
STUDY_MATRIX: tuple[tuple[str, str], ...] = tuple(
    (model, approach)
    for model in STUDY_MODELS
    for approach in TRAINING_APPROACHES
    if (model, approach) != ("gpt-neox-20b", "full")
)

# Spot jobs may wait for capacity: allow as long again as the runtime bound (waiting is not billed).
SPOT_MAX_WAIT_FACTOR = 2
MAX_RUNTIME_HOURS_LIMIT = 672  # SageMaker's own ceiling: 28 days
# Per job (or attempt) besides its SageMaker bound: Launch, the last poll's delay and Record. Plan's execution-limit
# check and Remedy's "could this attempt outlast the execution?" both count it.
JOB_OVERHEAD_SECONDS = 10 * 60


def spot_max_wait_seconds(runtime_seconds: int) -> int:
    """A spot job's MaxWaitTimeInSeconds for its MaxRuntime: SPOT_MAX_WAIT_FACTOR x the runtime (time to wait for
    capacity and interruptions), never below the runtime (SageMaker's rule) nor above SageMaker's ceiling."""
    return max(runtime_seconds, min(runtime_seconds * SPOT_MAX_WAIT_FACTOR, MAX_RUNTIME_HOURS_LIMIT * 3600))


CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TRAINING_ENTRY_POINT = "train.py"


# --------------------------------------------------------------------------------------------------------------------
# Hyperparameters: the one table behind the input schema's defaults, Plan's resolution, job names and Launch
# --------------------------------------------------------------------------------------------------------------------
class Source(StrEnum):
    """Where a job's value for a hyperparameter comes from."""

    EXPERIMENT = "experiment"  # `experiments[].<name>` in the execution input, else the default
    RUN = "run"  # a top-level input field: the same for every job of the run
    PLAN = "plan"  # decided by Plan (the resolved model, the memory planner)
    FIXED = "fixed"  # the same for every job; not an input, but recorded in the JobSpec so the job describes itself
    DEPLOYMENT = "deployment"  # Launch's environment; never in the JobSpec


# Default of the settings that depend on the model's size class and approach (`DEFAULTS`).
BY_SIZE_CLASS = "by-size-class"


@dataclass(frozen=True)
class Hyperparameter:
    """One setting of a job: its JobSpec key (and input field), type, default, and where it goes."""

    name: str
    source: Source
    json_type: tuple[str, ...]  # JSON Schema types of the value ("string" with `choices`: an enum)
    default: Any  # BY_SIZE_CLASS: from DEFAULTS; None: no default (required, or decided by Plan)
    description: str
    training_name: str | None = None  # the `--name` train.py takes; None: not sent to training
    in_job_name: bool = False  # hashed into the job name: two jobs of a run that differ here get two names
    choices: tuple[str, ...] = ()


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter(
        "approach",
        Source.EXPERIMENT,
        ("string",),
        None,
        "full, lora, qlora, or baseline (zero-shot evaluation, no training)",
        "approach",
        choices=APPROACHES,
    ),
    Hyperparameter("model_id", Source.PLAN, ("string",), None, "Hub id of the resolved model", "model_id"),
    Hyperparameter(
        "instance_type",
        Source.EXPERIMENT,
        ("string",),
        BY_SIZE_CLASS,
        "SageMaker training instance type",
        in_job_name=True,
    ),
    Hyperparameter(
        "instance_count", Source.EXPERIMENT, ("integer",), BY_SIZE_CLASS, "number of instances", in_job_name=True
    ),
    # One epoch over Banking77's ~10k short queries reaches the study's accuracy; more mostly costs.
    Hyperparameter("epochs", Source.EXPERIMENT, ("number",), 1, "training epochs", "epochs", True),
    Hyperparameter(
        "batch_size",
        Source.EXPERIMENT,
        ("integer",),
        BY_SIZE_CLASS,
        "per-device batch size",
        "per_device_batch_size",
        True,
    ),
    # null: the training code picks by approach and size.
    Hyperparameter(
        "learning_rate",
        Source.EXPERIMENT,
        ("number", "null"),
        BY_SIZE_CLASS,
        "peak learning rate",
        "learning_rate",
        True,
    ),
    # Rank 16 on all linear layers: the usual LoRA/QLoRA setting for 7B-20B classification-like SFT.
    Hyperparameter("lora_r", Source.EXPERIMENT, ("integer",), 16, "LoRA rank", "lora_r", True),
    # alpha = 2r keeps the adapter's update scale constant if r changes.
    Hyperparameter("lora_alpha", Source.EXPERIMENT, ("integer",), 32, "LoRA alpha", "lora_alpha", True),
    # The QLoRA paper's dropout for models up to 13B.
    Hyperparameter("lora_dropout", Source.EXPERIMENT, ("number",), 0.05, "LoRA dropout", "lora_dropout", True),
    # auto: the longest tokenized example plus generation room, measured by the training code on the real data.
    Hyperparameter(
        "max_seq_length",
        Source.EXPERIMENT,
        ("integer", "string"),
        "auto",
        "tokens per example, or auto",
        "max_seq_length",
        True,
        choices=("auto",),
    ),
    # compact: the model learns the label set; listing 77 labels costs ~600 tokens per example (zero-shot baselines).
    Hyperparameter(
        "prompt_style",
        Source.EXPERIMENT,
        ("string",),
        "compact",
        "whether the prompt lists the labels",
        "prompt_style",
        True,
        choices=PROMPT_STYLES,
    ),
    # Keep the small adapter as the artifact; merging writes a full-size model.
    Hyperparameter(
        "merge_adapter",
        Source.EXPERIMENT,
        ("boolean",),
        False,
        "merge the adapter before saving",
        "merge_adapter",
        True,
    ),
    Hyperparameter(
        "max_steps", Source.EXPERIMENT, ("integer",), -1, "optimizer steps; -1: epochs decide", "max_steps", True
    ),
    # The study's evaluation size (+-2.2 points 95% CI on accuracy); "all": the whole test split (paired tests then
    # compare jobs on every sample).
    Hyperparameter(
        "eval_samples",
        Source.RUN,
        ("integer", "string"),
        500,
        "test samples evaluated, or all",
        "eval_samples",
        True,
        choices=(ALL_SAMPLES,),
    ),
    # What the dataset's rows are; the training code reads and scores them accordingly (training_code/sft.py). Not
    # hashed into job names: the dataset, which decides it, already is.
    Hyperparameter("task", Source.RUN, ("string",), CLASSIFICATION, "task type", "task", choices=TASKS),
    # None: the task's default (`primary_metric`); Plan fills it in, so every job spec names the metric it is ranked by.
    Hyperparameter(
        "primary_metric",
        Source.RUN,
        ("string",),
        None,
        "metric the report ranks by and prices points of",
        choices=QUALITY_METRICS,
    ),
    # Managed spot: up to ~70-90% cheaper; checkpoints make interruptions resumable.
    Hyperparameter("spot", Source.RUN, ("boolean",), True, "managed spot training", in_job_name=True),
    Hyperparameter("fsdp", Source.PLAN, ("string",), "", "FSDP mode chosen by the memory planner", "fsdp"),
    Hyperparameter(
        "save_interval_seconds",
        Source.PLAN,
        ("integer",),
        None,
        "checkpoint interval sized by the memory planner",
        "save_interval_seconds",
    ),
    # 1: every optimizer step sees one per-device batch. The out-of-memory remedy halves the batch and doubles this,
    # so the effective batch (and the learning-rate schedule it was tuned for) stays the same.
    Hyperparameter(
        "gradient_accumulation_steps",
        Source.FIXED,
        ("integer",),
        1,
        "micro-batches per optimizer step",
        "gradient_accumulation_steps",
    ),
    Hyperparameter("seed", Source.FIXED, ("integer",), 42, "random seed", "seed"),
    # 3% linear warmup: the usual SFT recipe; it keeps the first full-rate steps from wrecking a pretrained model.
    Hyperparameter("warmup_ratio", Source.FIXED, ("number",), 0.03, "share of steps warming up", "warmup_ratio"),
    # One evaluation batch size for every approach, so inference seconds compare like for like.
    Hyperparameter("eval_batch_size", Source.FIXED, ("integer",), 8, "generation batch size", "eval_batch_size"),
    # Greedy decoding restricted to the label set: every output parses as exactly one label.
    Hyperparameter(
        "decoding",
        Source.FIXED,
        ("string",),
        "constrained",
        "decoding of the label",
        "decoding",
        choices=("constrained", "free"),
    ),
    Hyperparameter(
        "checkpoint_dir",
        Source.FIXED,
        ("string",),
        CHECKPOINT_LOCAL_PATH,
        "where SageMaker syncs checkpoints from",
        "checkpoint_dir",
    ),
    Hyperparameter(
        "hf_token_secret_arn",
        Source.DEPLOYMENT,
        ("string",),
        None,
        "ARN of the Hugging Face token secret (never the token)",
        "hf_token_secret_arn",
    ),
)
_BY_NAME = {h.name: h for h in HYPERPARAMETERS}


def hyperparameter(name: str) -> Hyperparameter:
    """The table's entry for `name` (`KeyError` when there is none)."""
    return _BY_NAME[name]


def default(name: str) -> Any:
    """The fixed default of a hyperparameter (not for BY_SIZE_CLASS ones: see `job_defaults`)."""
    value = _BY_NAME[name].default
    if value == BY_SIZE_CLASS:
        raise ValueError(f"{name}'s default depends on the size class and approach: use job_defaults()")
    return value


# Settings that shape training only. A baseline trains nothing: Plan keeps their defaults in its JobSpec (whatever
# the input says, so every consumer of a JobSpec sees the usual keys and types) and Launch does not send them.
TRAINING_ONLY_HYPERPARAMETERS: frozenset[str] = frozenset(
    {
        "epochs",
        "batch_size",
        "learning_rate",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "merge_adapter",
        "max_steps",
        "fsdp",
        "save_interval_seconds",
        "warmup_ratio",
        "checkpoint_dir",
    }
)


def applies(name: str, approach: str) -> bool:
    """Whether hyperparameter `name` means anything for a job of `approach` (a baseline has no training settings)."""
    return approach != BASELINE or name not in TRAINING_ONLY_HYPERPARAMETERS


# The JobSpec fields hashed into the job name, in table order.
JOB_NAME_FIELDS: tuple[str, ...] = tuple(h.name for h in HYPERPARAMETERS if h.in_job_name)
