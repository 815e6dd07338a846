"""The one catalog of models, approaches, instances, prices and metric definitions.

Imported by the stacks, the Lambda handlers, the CLI and the report. Training code never imports it:
it receives what it needs as hyperparameters, and prints metrics in the form `METRIC_DEFINITIONS` parses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    MetricDefinition("train_loss", "training loss (logged periodically; the last value is final)"),
    MetricDefinition("train_step", "optimizer step reached (progress)"),
    MetricDefinition("train_tokens_per_second", "non-padding tokens trained per second"),
    MetricDefinition("train_padding_fraction", "fraction of batch tokens that are padding"),
    MetricDefinition("train_runtime_seconds", "wall seconds spent in the training loop"),
    MetricDefinition("peak_memory_gb", "peak accelerator (or host) memory in GiB"),
    MetricDefinition("eval_intent_accuracy", "fraction of test samples whose predicted intent is right"),
    MetricDefinition("eval_parse_rate", "fraction of outputs that are exactly one known label"),
    MetricDefinition("eval_rouge1", "ROUGE-1 F1 of output vs reference label"),
    MetricDefinition("eval_rouge2", "ROUGE-2 F1"),
    MetricDefinition("eval_rougeL", "ROUGE-L F1"),
    MetricDefinition("eval_bertscore_f1", "BERTScore F1"),
    MetricDefinition("eval_inference_seconds", "total generation seconds over the evaluated samples"),
    MetricDefinition("eval_seconds_per_sample", "generation seconds per evaluated sample"),
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
class Model:
    """A causal language model the workflow can fine-tune."""

    key: str
    hf_id: str
    architecture: str
    params_billion: float
    gated: bool


MODELS: dict[str, Model] = {
    m.key: m
    for m in (
        # Gated on the Hub: training needs the HF token (passed as a Secrets Manager ARN, never the value).
        Model("llama2-7b", "meta-llama/Llama-2-7b-hf", "llama", 6.74, gated=True),
        Model("mistral-7b", "mistralai/Mistral-7B-v0.1", "mistral", 7.24, gated=False),
        Model("gpt-neox-20b", "EleutherAI/gpt-neox-20b", "gpt_neox", 20.6, gated=False),
    )
}

# Any other Hugging Face causal LM can be named by its Hub id (`org/name`); the Hub's own rules for those names.
HF_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# A Hub id says nothing about size: assume the study's smallest class unless the input says `params_billion`.
DEFAULT_PARAMS_BILLION = 7.0


def is_hf_id(value: str) -> bool:
    """True when `value` looks like a Hugging Face Hub model id (`org/name`)."""
    return bool(HF_ID_PATTERN.match(value))


def resolve_model(model: str, params_billion: float | None = None) -> Model:
    """The catalog model for a key, or an ad-hoc entry for a Hub id; `KeyError` when it is neither.

    `params_billion` overrides the size of a Hub id (it selects the default instance and batch size);
    for catalog keys the catalog's own size wins, so the study defaults stay what they are.
    """
    if model in MODELS:
        return MODELS[model]
    if is_hf_id(model):
        size = float(params_billion) if params_billion is not None else DEFAULT_PARAMS_BILLION
        return Model(key=model, hf_id=model, architecture="causal-lm", params_billion=size, gated=False)
    raise KeyError(model)


# --------------------------------------------------------------------------------------------------------------------
# Approaches
# --------------------------------------------------------------------------------------------------------------------
APPROACHES: tuple[str, ...] = ("full", "lora", "qlora")
# Approaches that need a GPU: bitsandbytes 4-bit kernels are what make QLoRA worth running.
GPU_ONLY_APPROACHES: frozenset[str] = frozenset({"qlora"})


# --------------------------------------------------------------------------------------------------------------------
# Instance types
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InstanceType:
    """A SageMaker training instance type: accelerators and an on-demand price fallback."""

    name: str
    gpus: int
    gpu_memory_gib: int  # per GPU
    accelerator: str
    hourly_price_usd: float  # us-east-1 on-demand training price; the Pricing API is asked first

    @property
    def has_gpu(self) -> bool:
        """True for accelerated instances (QLoRA needs one)."""
        return self.gpus > 0

    @property
    def volume_size_gb(self) -> int:
        """EBS volume for a training job on this type."""
        # The EBS volume holds the Hub download, checkpoints (full FT of 7B with optimizer state ~ 80 GB per save)
        # and the final model. Multi-GPU types host the big jobs. Cost is tiny next to the GPU price.
        if not self.has_gpu:
            return 30
        return 500 if self.gpus >= 4 else 200


# Prices: us-east-1 SageMaker *training* on-demand USD/hour (price_source "catalog"), as last seen on the public price
# list; g6 ones are approximations (EC2 price x 1.25, SageMaker's usual markup on G instances). Prices move: the Plan
# step asks the Pricing API first, and these only keep estimates meaningful when it cannot be reached.
INSTANCES: dict[str, InstanceType] = {
    i.name: i
    for i in (
        InstanceType("ml.m5.xlarge", 0, 0, "none", 0.23),  # CPU: smoke tests only
        InstanceType("ml.m5.2xlarge", 0, 0, "none", 0.461),
        InstanceType("ml.g5.xlarge", 1, 24, "A10G", 1.408),
        InstanceType("ml.g5.2xlarge", 1, 24, "A10G", 1.515),
        InstanceType("ml.g5.4xlarge", 1, 24, "A10G", 2.03),
        InstanceType("ml.g5.8xlarge", 1, 24, "A10G", 3.06),
        InstanceType("ml.g5.12xlarge", 4, 24, "A10G", 7.09),
        InstanceType("ml.g5.16xlarge", 1, 24, "A10G", 5.12),
        InstanceType("ml.g5.24xlarge", 4, 24, "A10G", 10.18),
        InstanceType("ml.g5.48xlarge", 8, 24, "A10G", 20.36),
        InstanceType("ml.g6.xlarge", 1, 24, "L4", 1.006),
        InstanceType("ml.g6.2xlarge", 1, 24, "L4", 1.222),
        InstanceType("ml.g6.4xlarge", 1, 24, "L4", 1.654),
        InstanceType("ml.g6.8xlarge", 1, 24, "L4", 2.518),
        InstanceType("ml.g6.12xlarge", 4, 24, "L4", 5.752),
        InstanceType("ml.g6.24xlarge", 4, 24, "L4", 8.344),
        InstanceType("ml.g6.48xlarge", 8, 24, "L4", 16.688),
        InstanceType("ml.p3.2xlarge", 1, 16, "V100", 3.825),
        InstanceType("ml.p4d.24xlarge", 8, 40, "A100", 37.688),
        InstanceType("ml.p5.48xlarge", 8, 80, "H100", 113.068),
    )
}
# The region the fallback prices are for (recorded next to every estimate so nobody mistakes them for local prices).
CATALOG_PRICE_REGION = "us-east-1"


def training_quota_name(instance_type: str, spot: bool) -> str:
    """The Service Quotas name (service code `sagemaker`) that caps concurrent instances of a type for training."""
    kind = "spot training job usage" if spot else "training job usage"
    return f"{instance_type} for {kind}"


# --------------------------------------------------------------------------------------------------------------------
# Defaults per (model size class, approach)
# --------------------------------------------------------------------------------------------------------------------
def size_class(params_billion: float) -> str:
    """The defaults bucket for a model size: the study's 7B and 20B classes, plus one above for bigger Hub models."""
    if params_billion <= 13:
        return "7b"
    if params_billion <= 40:
        return "20b"
    return "70b"


@dataclass(frozen=True)
class JobDefaults:
    """What a job gets when the input does not say: where it runs and how hard it trains."""

    instance_type: str
    instance_count: int
    batch_size: int  # per device
    learning_rate: float
    max_runtime_hours: float  # bounds the bill: the estimate and the budget check use it


DEFAULTS: dict[tuple[str, str], JobDefaults] = {
    # 7B QLoRA: 4-bit weights (~4 GB) + adapters + activations fit one 24 GiB A10G at batch 8 (the study's choice).
    # 2e-4 is the QLoRA paper's rate for models up to 13B.
    ("7b", "qlora"): JobDefaults("ml.g5.xlarge", 1, 8, 2e-4, 3),
    # 7B LoRA: bf16 weights (~13.5 GB) + activations with gradient checkpointing fit one A10G at batch 8; the
    # 2xlarge is for its 32 GiB host RAM, which loading the bf16 shards needs (the xlarge has 16 GiB).
    ("7b", "lora"): JobDefaults("ml.g5.2xlarge", 1, 8, 2e-4, 3),
    # 7B full: weights + grads + Adam state (~112 GB) must be sharded over 4 A10Gs (the study's ml.g5.12xlarge);
    # batch 2 per GPU keeps the study's global batch of 8. 2e-5: full fine-tuning needs a 10x smaller rate than LoRA.
    ("7b", "full"): JobDefaults("ml.g5.12xlarge", 1, 2, 2e-5, 4),
    # 20B QLoRA: we choose ml.g5.12xlarge over the study's p4d. NF4 weights are ~11 GiB per GPU copy, so one replica
    # plus paged 8-bit optimizer state and batch-2 activations (seq <= 512, checkpointed) fit each 24 GiB A10G; 4 GPUs x
    # batch 2 keeps the global batch of 8. It costs ~1/5 of a p4d per hour, its spot capacity is far easier to get
    # and its default quota is rarely 0, while p4d quotas usually are. 1e-4: the QLoRA paper's rate above 13B.
    ("20b", "qlora"): JobDefaults("ml.g5.12xlarge", 1, 2, 1e-4, 5),
    # 20B LoRA: bf16 weights alone are ~41 GB, beyond any A10G; the study ran it on ml.p4d.24xlarge at batch 1.
    ("20b", "lora"): JobDefaults("ml.p4d.24xlarge", 1, 1, 1e-4, 3),
    # 20B full (not in the default matrix: the study skipped it for cost): ~330 GB of training state needs two p4ds.
    ("20b", "full"): JobDefaults("ml.p4d.24xlarge", 2, 1, 1e-5, 6),
    # Above 40B (Hub models with params_billion): 4-bit 70B (~38 GB) needs 80 GiB GPUs or sharding over A100s.
    ("70b", "qlora"): JobDefaults("ml.p4d.24xlarge", 1, 1, 1e-4, 6),
    ("70b", "lora"): JobDefaults("ml.p5.48xlarge", 1, 1, 1e-4, 6),
    ("70b", "full"): JobDefaults("ml.p5.48xlarge", 2, 1, 1e-5, 8),
}


def job_defaults(params_billion: float, approach: str) -> JobDefaults:
    """Default instance, count, batch size, learning rate and runtime bound for a model size and approach."""
    return DEFAULTS[(size_class(params_billion), approach)]


# The Banking77 study: 3 models x 3 approaches, minus GPT-NeoX-20B full (skipped for cost) = 9 jobs.
STUDY_MODELS: tuple[str, ...] = ("llama2-7b", "mistral-7b", "gpt-neox-20b")
STUDY_MATRIX: tuple[tuple[str, str], ...] = tuple(
    (model, approach)
    for model in STUDY_MODELS
    for approach in APPROACHES
    if (model, approach) != ("gpt-neox-20b", "full")
)

# Hyperparameter defaults shared by every job (the input may override each per experiment).
DEFAULT_EPOCHS = 1  # Banking77's ~10k short queries: one epoch reaches the study's accuracy; more mostly costs.
DEFAULT_LORA_R = 16  # rank 16 on all linear layers: the usual LoRA/QLoRA setting for 7B-20B classification-like SFT
DEFAULT_LORA_ALPHA = 32  # alpha = 2r keeps the adapter's update scale constant if r changes
DEFAULT_LORA_DROPOUT = 0.05  # QLoRA paper: 0.05 for models up to 13B
DEFAULT_MAX_SEQ_LENGTH = 512  # prompt + query + label; Banking77 queries are short, so this rarely truncates
DEFAULT_EVAL_SAMPLES = 500  # the study's evaluation size (+-2.2 points 95% CI on accuracy)
DEFAULT_SEED = 42
DEFAULT_MERGE_ADAPTER = False  # keep the small adapter as the artifact; merging writes a full-size model
DEFAULT_MAX_STEPS = -1  # -1: epochs decide
DEFAULT_SPOT = True  # managed spot: up to ~70-90% cheaper; checkpoints make interruptions resumable
# Spot jobs may wait for capacity: allow as long again as the runtime bound (waiting is not billed).
SPOT_MAX_WAIT_FACTOR = 2
MAX_RUNTIME_HOURS_LIMIT = 672  # SageMaker's own ceiling: 28 days
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"

# Bytes of GPU memory per parameter that one data-parallel replica needs, before activations: full fine-tuning keeps
# bf16 weights and gradients plus fp32 master weights and two Adam moments (2+2+4+4+4); LoRA keeps bf16 weights only.
_REPLICA_BYTES_PER_PARAM = {"full": 16, "lora": 2}
# Share of a GPU's memory a replica may take before we shard it (the rest is activations, buffers, CUDA context).
_REPLICA_MEMORY_SHARE = 0.8
FSDP_MODE = "full_shard auto_wrap"


def needs_fsdp(params_billion: float, approach: str, instance_type: str, instance_count: int) -> bool:
    """True when one model replica would not fit a GPU, so DDP (a full copy per GPU) cannot work and the job must
    shard with FSDP: 7B full on 4x A10G (~112 GB of state) or 20B LoRA on A100 40 GB (~41 GB of bf16 weights).
    QLoRA never shards (bitsandbytes 4-bit weights and FSDP don't mix in the training code)."""
    instance = INSTANCES[instance_type]
    if approach not in _REPLICA_BYTES_PER_PARAM or instance.gpus * instance_count <= 1:
        return False
    replica_gib = params_billion * 1e9 * _REPLICA_BYTES_PER_PARAM[approach] / 2**30
    return replica_gib > instance.gpu_memory_gib * _REPLICA_MEMORY_SHARE


TRAINING_ENTRY_POINT = "train.py"
