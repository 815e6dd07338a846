"""The one catalog of models, approaches, instances, prices and metric definitions.

Imported by the stacks, the Lambda handlers, the CLI and the report. Training code never imports it:
it receives what it needs as hyperparameters, and prints metrics in the form `METRIC_DEFINITIONS` parses.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from lambdas import approaches

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
    # The time split of a job, one line per phase at its end (lambdas/estimate.PARTS are priced from the same phases;
    # lambdas/calibration compares them).
    MetricDefinition("time_download_seconds", "seconds downloading the Hub snapshot"),
    MetricDefinition("time_load_seconds", "seconds loading (and quantizing) the model onto the device"),
    MetricDefinition("time_train_seconds", "seconds in the training loop, checkpoint saves excluded"),
    MetricDefinition("time_checkpoint_seconds", "seconds of all checkpoint saves together (this process, incl. waits)"),
    MetricDefinition("time_evaluate_seconds", "seconds of evaluation, including any reload"),
    MetricDefinition("time_save_seconds", "seconds saving the final model or adapter"),
    MetricDefinition("checkpoint_saves", "checkpoints written"),
    MetricDefinition("checkpoint_bytes", "bytes of the last checkpoint written on this node"),
    # What the job actually trained with (training_code/telemetry.RESOLVED_METRICS), printed once when decided:
    # `learning_rate: null` becomes a number here; Record keeps them as the ledger row's `resolved` map.
    MetricDefinition("resolved_learning_rate", "learning rate used (the automatic rule's value when not given)"),
    MetricDefinition(
        "resolved_effective_batch_size", "samples per optimizer step: per-device batch x accumulation x ranks"
    ),
    MetricDefinition("resolved_max_seq_length", "the sequence length limit used (what max_seq_length=auto became)"),
    MetricDefinition("resolved_world_size", "processes that trained together (data-parallel ranks for ddp/fsdp)"),
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
class ModelConfigError(ValueError):
    """A model's config.json (or an input's `architecture`) the planner cannot size; `key` names the culprit."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer: what the memory planner needs besides the parameter count.

    Dense and mixture-of-experts alike: with `experts` > 0 each decoder layer's MLP is `experts` routed SwiGLU experts
    of `expert_intermediate_size`, `experts_per_token` of them used per token, plus (`intermediate_size` > 0) one
    always-on shared expert of that width (Qwen2-MoE). `parameters()` counts every expert (what memory holds),
    `active_parameters()` what one token passes through (what compute costs)."""

    hidden_size: int
    layers: int
    heads: int
    kv_heads: int  # < heads: grouped-query attention (smaller K/V projections and KV cache)
    intermediate_size: int  # the dense MLP's width; for an MoE model its shared expert's (0: none)
    vocab_size: int
    gated_mlp: bool = True  # SwiGLU / GeGLU (gate, up, down: Llama, Mistral, Gemma); False: up, down (GPT-NeoX)
    linear_bias: bool = False  # GPT-NeoX has biases on every linear layer and LayerNorm; Llama/Mistral none
    fused_qkv: bool = False  # GPT-NeoX projects Q, K and V with one linear layer (`query_key_value`)
    tied_embeddings: bool = False  # one matrix is both the token embeddings and the output projection
    # config.json's `head_dim` where it is not hidden_size / heads: Qwen3-4B has 32 heads of 128 on a 2560-wide
    # model, so its Q projection (32 x 128 = 4096) is wider than the hidden state. None: hidden_size // heads.
    explicit_head_dim: int | None = None
    qk_norm: bool = False  # Qwen3 and Gemma 3 RMS-normalise Q and K per head: two head_dim-wide weights per layer
    qkv_bias: bool = False  # Qwen2 (and Qwen2-MoE) have biases on the Q, K and V projections only
    norms_per_layer: int = 2  # Gemma 2 and 3 normalise before and after both blocks: 4
    experts: int = 0  # routed experts per layer (mixture of experts); 0: a dense model
    experts_per_token: int = 0  # how many of them each token is routed to
    expert_intermediate_size: int = 0  # each routed expert's SwiGLU width

    def __post_init__(self) -> None:
        """Refuse shapes no model has (an input's `architecture` arrives from anyone)."""
        if self.kv_heads > self.heads or self.heads % self.kv_heads:
            raise ModelConfigError("kv_heads", f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        if self.experts and not (1 <= self.experts_per_token <= self.experts and self.expert_intermediate_size > 0):
            raise ModelConfigError(
                "experts_per_token",
                f"a mixture of {self.experts} experts needs 1 <= experts_per_token <= experts (got "
                f"{self.experts_per_token}) and an expert_intermediate_size (got {self.expert_intermediate_size})",
            )
        if not self.experts and (self.experts_per_token or self.expert_intermediate_size or not self.intermediate_size):
            raise ModelConfigError(
                "intermediate_size",
                "a dense model (experts 0) needs an intermediate_size and no experts_per_token or "
                "expert_intermediate_size",
            )

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any]) -> Architecture:
        """The architecture a Hugging Face `config.json` describes (see `_HF_FAMILIES` for the model types read).

        Keys the file omits take the transformers config class's defaults, as `from_pretrained` would (Gemma 3's
        multimodal configs omit most of their `text_config`); the language model of a multimodal config is sized
        (its vision tower is not). `ModelConfigError` naming the key for an unsupported model type, a missing or
        malformed value, or a layout the planner cannot count (Qwen MoE's dense-only layers)."""
        model_type = config.get("model_type")
        text = config
        if model_type in _HF_TEXT_CONFIG_WRAPPERS:
            text = config.get("text_config") or {}
            model_type = text.get("model_type", _HF_TEXT_CONFIG_WRAPPERS[model_type])
        family = _HF_FAMILIES.get(model_type) if isinstance(model_type, str) else None
        if family is None:
            raise ModelConfigError(
                "model_type",
                f"config.json model_type {model_type!r} is not one the planner can size; supported: "
                f"{', '.join(sorted(_HF_FAMILIES))}",
            )

        def value(key: str) -> Any:
            found = text.get(key, family.defaults.get(key, _MISSING))
            if found is _MISSING:
                raise ModelConfigError(key, f"config.json ({model_type}) has no {key!r}")
            return found

        def number(key: str) -> int:
            found = value(key)
            if isinstance(found, bool) or not isinstance(found, int) or found <= 0:
                raise ModelConfigError(key, f"config.json ({model_type}) {key!r} must be a positive integer: {found!r}")
            return found

        hidden, heads = number("hidden_size"), number("num_attention_heads")
        kv_heads = number("num_key_value_heads") if value("num_key_value_heads") is not None else heads
        head_dim = number("head_dim") if value("head_dim") is not None else hidden // heads
        # Qwen MoE configs can make some layers dense (`mlp_only_layers`, or sparse every n-th layer only).
        if family.experts_key and (text.get("mlp_only_layers") or text.get("decoder_sparse_step", 1) != 1):
            raise ModelConfigError(
                "mlp_only_layers",
                f"config.json ({model_type}) mixes dense and sparse layers (mlp_only_layers, decoder_sparse_step); "
                "the planner counts all-sparse models only",
            )
        experts = number(family.experts_key) if family.experts_key else 0
        intermediate = 0 if family.dense_mlp_key is None else number(family.dense_mlp_key)
        return cls(
            hidden_size=hidden,
            layers=number("num_hidden_layers"),
            heads=heads,
            kv_heads=kv_heads,
            intermediate_size=intermediate,
            vocab_size=number("vocab_size"),
            gated_mlp=family.gated_mlp,
            linear_bias=family.linear_bias,
            fused_qkv=family.fused_qkv,
            tied_embeddings=bool(value("tie_word_embeddings")),
            explicit_head_dim=head_dim if head_dim != hidden // heads else None,
            qk_norm=family.qk_norm,
            # Qwen2 always biases Q, K and V; Llama-style `attention_bias` also biases O (hidden_size more per layer,
            # not counted).
            qkv_bias=family.qkv_bias or (bool(text.get("attention_bias", False)) and not family.linear_bias),
            norms_per_layer=family.norms_per_layer,
            experts=experts,
            experts_per_token=number("num_experts_per_tok") if experts else 0,
            expert_intermediate_size=number(family.expert_mlp_key) if family.expert_mlp_key else 0,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON (the execution input's `architecture`, the job spec's)."""
        return dataclasses.asdict(self)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.explicit_head_dim or self.hidden_size // self.heads

    @property
    def q_dim(self) -> int:
        """Width of the Q projection (and of the attention output that o_proj maps back to hidden_size)."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the K (and of the V) projection."""
        return self.kv_heads * self.head_dim

    @property
    def active_intermediate_size(self) -> int:
        """The MLP width one token passes through: its routed experts' and the shared expert's, or the dense MLP's
        (what activation memory and compute per token scale with)."""
        return self.experts_per_token * self.expert_intermediate_size + self.intermediate_size

    def layer_linears(self) -> tuple[tuple[int, int], ...]:
        """(in, out) features of every linear layer of one decoder layer: what LoRA's `all-linear` targets and
        what bitsandbytes quantizes to 4 bits (embeddings and the output projection stay 16-bit).

        Routed experts are not linear layers: transformers 5 keeps each MoE layer's experts as 3-D parameters
        (`MixtralExperts.gate_up_proj`), so `all-linear` adapts attention and the shared expert (with its 1-wide
        gate) only; the experts are counted in `layer_parameters`."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.q_dim, self.kv_dim
        qkv = ((h, q + 2 * kv),) if self.fused_qkv else ((h, q), (h, kv), (h, kv))
        mlp = (((h, i), (h, i), (i, h)) if self.gated_mlp else ((h, i), (i, h))) if i else ()
        shared_gate = ((h, 1),) if self.experts and i else ()
        return (*qkv, (q, h), *mlp, *shared_gate)

    def _expert_parameters(self) -> int:
        """One routed expert's SwiGLU (gate, up, down)."""
        return 3 * self.hidden_size * self.expert_intermediate_size

    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: its linear layers, routed experts and router, norms (and biases where the
        model has them)."""
        linears = self.layer_linears()
        weights = sum(fan_in * fan_out for fan_in, fan_out in linears)
        if self.linear_bias:
            biases = sum(fan_out for _, fan_out in linears)
        else:
            biases = self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0
        # LayerNorm has a bias, RMSNorm does not
        norms = self.norms_per_layer * self.hidden_size * (2 if self.linear_bias else 1)
        qk_norms = 2 * self.head_dim if self.qk_norm else 0  # one weight per head width, shared by the heads
        moe = self.experts * (self._expert_parameters() + self.hidden_size)  # each expert and its router row
        return weights + biases + norms + qk_norms + moe

    def embedding_parameters(self) -> int:
        """Token embeddings plus the output projection (once when tied) and the final norm."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return embeddings + self.hidden_size * (2 if self.linear_bias else 1)

    def parameters(self) -> int:
        """Total parameters, every expert included (exact for the catalog's models: it matches their published
        counts)."""
        return self.layers * self.layer_parameters() + self.embedding_parameters()

    def routed_expert_parameters(self) -> int:
        """Every routed expert's weights (0 for a dense model). transformers 5 stores them as 3-D parameters, not
        `nn.Linear` layers, and bitsandbytes quantizes `nn.Linear` (and `Conv1D`) only
        (`transformers.integrations.bitsandbytes.replace_with_bnb_linear`), so under QLoRA they stay 16-bit."""
        return self.layers * self.experts * self._expert_parameters()

    def active_parameters(self) -> int:
        """Parameters one token passes through (the routed experts it is not sent to left out); == `parameters()`
        for a dense model. Compute (FLOPs per token) scales with this, memory with `parameters()`."""
        idle = (self.experts - self.experts_per_token) * self._expert_parameters()
        return self.parameters() - self.layers * idle

    def lora_parameters(self, rank: int) -> int:
        """Trainable parameters of a rank-`rank` LoRA on every linear layer (PEFT's `all-linear`: A is r x in,
        B is out x r, the output projection excluded)."""
        return self.layers * rank * sum(fan_in + fan_out for fan_in, fan_out in self.layer_linears())


_MISSING = object()


@dataclass(frozen=True)
class _HfFamily:
    """How one config.json `model_type` maps onto Architecture: its fixed traits, and the defaults of the keys its
    config.json may omit (transformers 5.3's config class defaults, checked by tests/lambdas against the library)."""

    defaults: Mapping[str, Any]
    gated_mlp: bool = True
    linear_bias: bool = False
    fused_qkv: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    dense_mlp_key: str | None = "intermediate_size"  # the dense (or shared-expert) MLP's width; None: no such MLP
    experts_key: str | None = None  # mixture of experts: the key counting the routed experts
    expert_mlp_key: str | None = None  # and the one giving each expert's width


def _defaults(vocab: int, kv_heads: int | None, head_dim: int | None, *, tied: bool, **more: Any) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "tie_word_embeddings": tied,
        **more,
    }


# The model types the planner sizes from config.json. A None default: derived (kv heads = heads, head_dim = hidden /
# heads). Phi-3 fuses gate and up into one `gate_up_proj` too; LoRA's count treats them as two (the same weights,
# rank x hidden more adapter parameters). Gemma's GeGLU has SwiGLU's three projections.
_HF_FAMILIES: dict[str, _HfFamily] = {
    "llama": _HfFamily(_defaults(32000, None, None, tied=False)),
    "mistral": _HfFamily(_defaults(32000, 8, None, tied=False)),
    "qwen2": _HfFamily(_defaults(151936, 32, None, tied=False), qkv_bias=True),
    "qwen3": _HfFamily(_defaults(151936, 32, 128, tied=False), qk_norm=True),
    "gemma": _HfFamily(_defaults(256000, 16, 256, tied=True)),
    "gemma2": _HfFamily(_defaults(256000, 4, 256, tied=True), norms_per_layer=4),
    "gemma3_text": _HfFamily(
        _defaults(262208, 4, 256, tied=True, num_attention_heads=8), qk_norm=True, norms_per_layer=4
    ),
    "gpt_neox": _HfFamily(_defaults(50432, None, None, tied=False), gated_mlp=False, linear_bias=True, fused_qkv=True),
    "phi3": _HfFamily(_defaults(32064, None, None, tied=False), fused_qkv=True),
    "mixtral": _HfFamily(
        _defaults(32000, 8, None, tied=False, num_local_experts=8, num_experts_per_tok=2),
        dense_mlp_key=None,
        experts_key="num_local_experts",
        expert_mlp_key="intermediate_size",
    ),
    "qwen2_moe": _HfFamily(
        _defaults(151936, 16, None, tied=False, num_experts=60, num_experts_per_tok=4),
        qkv_bias=True,
        dense_mlp_key="shared_expert_intermediate_size",
        experts_key="num_experts",
        expert_mlp_key="moe_intermediate_size",
    ),
    "qwen3_moe": _HfFamily(
        _defaults(151936, 4, None, tied=False, num_experts=128, num_experts_per_tok=8),
        qk_norm=True,
        dense_mlp_key=None,
        experts_key="num_experts",
        expert_mlp_key="moe_intermediate_size",
    ),
}
# Multimodal configs whose language model is described under `text_config` (and that model's default type).
_HF_TEXT_CONFIG_WRAPPERS: dict[str, str] = {"gemma3": "gemma3_text"}


# A Hub id without a readable config.json gives no shape, so the planner guesses one from the size: Llama-shaped
# (SwiGLU, width = 128 x depth as in Llama-2-7B/13B), full multi-head attention and a 128,256-token vocabulary (Llama
# 3's). Every guess errs towards more memory: no grouped-query saving on the KV cache, a big vocabulary for the logits.
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


class SizedFrom(StrEnum):
    """Where a model's shape came from (Plan logs it; the job spec carries it)."""

    CATALOG = "catalog"  # the catalog's own entry
    INPUT = "input"  # the execution input's `architecture` (the CLI reads config.json)
    HUB = "hub"  # config.json fetched from the Hub by Plan
    PARAMS_BILLION = "params_billion"  # a guessed Llama shape of the input's size (or the default 7B)


@dataclass(frozen=True)
class Model:
    """A causal language model the workflow can fine-tune."""

    key: str
    hf_id: str
    architecture: Architecture
    parameters: int  # exact from the architecture, except a guessed shape's: the input's size
    gated: bool
    sized_from: SizedFrom = SizedFrom.CATALOG

    @property
    def params_billion(self) -> float:
        """Size in billions of parameters (selects the defaults bucket)."""
        return self.parameters / 1e9

    @property
    def active_parameters(self) -> int:
        """Parameters one token passes through (an MoE model's routed experts it is not sent to left out): what
        FLOPs scale with. `parameters` for a dense model."""
        return self.parameters - (self.architecture.parameters() - self.architecture.active_parameters())

    @property
    def embedding_parameters(self) -> int:
        """Parameters outside the decoder layers (token embeddings, output projection): 16-bit even under QLoRA.
        For a Hub id's guessed shape at most half the model, so a small model's guess cannot be all embeddings."""
        return min(self.architecture.embedding_parameters(), self.parameters // 2)

    @property
    def unquantized_parameters(self) -> int:
        """What a 4-bit load leaves 16-bit: the embeddings and output projection, and an MoE model's routed experts
        (not linear layers, so bitsandbytes does not quantize them)."""
        return self.embedding_parameters + self.architecture.routed_expert_parameters()


def _catalog_model(key: str, hf_id: str, architecture: Architecture, *, gated: bool) -> Model:
    return Model(key, hf_id, architecture, architecture.parameters(), gated)


MODELS: dict[str, Model] = {
    m.key: m
    for m in (
        # Shapes from each model's config.json on the Hub. Gated on the Hub: training needs the HF token (passed as
        # a Secrets Manager ARN, never the value), and Plan refuses the run when the token secret has no value.
        _catalog_model(
            "llama2-7b", "meta-llama/Llama-2-7b-hf", Architecture(4096, 32, 32, 32, 11008, 32000), gated=True
        ),
        _catalog_model(
            "mistral-7b",
            "mistralai/Mistral-7B-v0.1",
            Architecture(4096, 32, 32, 8, 14336, 32000),
            # Gated since 2024 (its Hub page asks to accept the licence; e.g. mosaicml/llm-foundry#1117).
            gated=True,
        ),
        _catalog_model(
            "gpt-neox-20b",
            "EleutherAI/gpt-neox-20b",
            Architecture(6144, 44, 64, 64, 24576, 50432, gated_mlp=False, linear_bias=True, fused_qkv=True),
            gated=False,
        ),
        # ---- Today's models (examples/study-2026.json). Values are config.json's hidden_size, num_hidden_layers,
        # num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, tie_word_embeddings (and head_dim
        # where it is not hidden / heads), as copied in the sources cited per model.
        _catalog_model(
            "llama3.1-8b",
            "meta-llama/Llama-3.1-8B",
            # config.json as quoted in citsjtu2020/LLM-Prof sglang/Model_Config.md ("Llama-3.1-8B"):
            # 4096, 32, 32, 8, 14336, 128256, tie_word_embeddings false.
            Architecture(4096, 32, 32, 8, 14336, 128_256),
            gated=True,  # Llama 3.1 Community License: the Hub asks to accept it
        ),
        _catalog_model(
            "llama3.2-3b",
            "meta-llama/Llama-3.2-3B",
            # Same source ("Llama-3.2-3B"): 3072, 28, 24, 8, 8192, 128256, head_dim 128 (= 3072 / 24),
            # tie_word_embeddings true.
            Architecture(3072, 28, 24, 8, 8192, 128_256, tied_embeddings=True),
            gated=True,  # Llama 3.2 Community License
        ),
        _catalog_model(
            "mistral-7b-v0.3",
            "mistralai/Mistral-7B-v0.3",
            # Mistral-7B-v0.1's shape with the vocabulary "extended to 32768" (the v0.3 model card); its linear
            # shapes (q 4096x4096, k/v 1024x4096, gate/up 14336x4096) as listed for "Mistral-7B-v0.3" in the code
            # corpus; tie_word_embeddings false.
            Architecture(4096, 32, 32, 8, 14336, 32_768),
            gated=True,  # its Hub page asks to agree to share contact details (extra_gated_description)
        ),
        _catalog_model(
            "qwen3-8b",
            "Qwen/Qwen3-8B",
            # config.json as copied in Chen-Oliver/qwen3-8b-base config.json: 4096, 36, 32, 8, 12288, 151936,
            # head_dim 128 (= 4096 / 32, so not explicit), tie_word_embeddings false; Qwen3 normalises Q and K (no
            # QKV bias, unlike Qwen2).
            Architecture(4096, 36, 32, 8, 12288, 151_936, qk_norm=True),
            gated=False,  # Apache 2.0, ungated
        ),
        _catalog_model(
            "qwen3-4b",
            "Qwen/Qwen3-4B",
            # config.json as copied in akougkas/warpio-cli warpio-docs/ai-docs/model_cards/qwen3:4b.md: 2560, 36, 32,
            # 8, 9728, 151936, head_dim 128 (32 x 128 = 4096 > 2560), tie_word_embeddings true.
            Architecture(2560, 36, 32, 8, 9728, 151_936, tied_embeddings=True, explicit_head_dim=128, qk_norm=True),
            gated=False,
        ),
    )
}

# Any other Hugging Face causal LM can be named by its Hub id (`org/name`); the Hub's own rules for those names.
HF_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# A Hub id whose config.json could not be read: assume the study's smallest class unless the input says
# `params_billion`.
DEFAULT_PARAMS_BILLION = 7.0


def is_hf_id(value: str) -> bool:
    """True when `value` looks like a Hugging Face Hub model id (`org/name`)."""
    return bool(HF_ID_PATTERN.fullmatch(value))


def resolve_model(
    model: str,
    params_billion: float | None = None,
    architecture: Architecture | Mapping[str, Any] | None = None,
    *,
    sized_from: SizedFrom = SizedFrom.INPUT,
) -> Model:
    """The catalog model for a key, or an ad-hoc entry for a Hub id; `KeyError` when it is neither.

    A Hub id is sized from `architecture` (an Architecture or its fields, e.g. a job spec's; `sized_from` says where
    it came from), else from `params_billion` with a guessed Llama shape (the last fallback: the size selects the
    default instance and batch size). For catalog keys the catalog's own shape wins, so the study defaults stay what
    they are. `ModelConfigError` for architecture fields that describe no model.
    """
    if model in MODELS:
        return MODELS[model]
    if not is_hf_id(model):
        raise KeyError(model)
    if architecture is not None:
        if not isinstance(architecture, Architecture):
            architecture = Architecture(**architecture)
        return Model(model, model, architecture, architecture.parameters(), gated=False, sized_from=sized_from)
    parameters = round((params_billion if params_billion is not None else DEFAULT_PARAMS_BILLION) * 1e9)
    return Model(
        model, model, estimate_architecture(parameters), parameters, gated=False, sized_from=SizedFrom.PARAMS_BILLION
    )


def model_of_job(job: Mapping[str, Any]) -> Model:
    """The Model a job spec (or a resolved experiment) was planned with: its `architecture`, or for a guessed shape its
    `params_billion`, so that every later step (a remedy's re-plan) sizes the model Plan sized."""
    if job.get("architecture_source") == SizedFrom.PARAMS_BILLION or not job.get("architecture"):
        return resolve_model(job["model_key"], job.get("params_billion"))
    return resolve_model(
        job["model_key"], architecture=job["architecture"], sized_from=SizedFrom(job["architecture_source"])
    )


def job_model_fields(model: Model) -> dict[str, Any]:
    """What a job spec carries of its model so `model_of_job` rebuilds it: the shape, where it came from, the size."""
    return {
        "architecture": model.architecture.to_dict(),
        "architecture_source": model.sized_from.value,
        "params_billion": model.params_billion,
    }


# --------------------------------------------------------------------------------------------------------------------
# Approaches
# --------------------------------------------------------------------------------------------------------------------
# What each approach is lives in lambdas/approaches.py (one row each); these names are read from that table. The
# fine-tuning approaches, and `baseline`: the base model evaluated zero-shot on the same samples, without any training
# (listed-labels prompt, constrained decoding), so a report shows what fine-tuning bought.
TRAINING_APPROACHES: tuple[str, ...] = tuple(a.name for a in approaches.APPROACH_LIST if a.trains)
BASELINE = "baseline"
APPROACHES: tuple[str, ...] = tuple(approaches.APPROACHES)
# Approaches that need a GPU (QLoRA: bitsandbytes' 4-bit kernels are what make it worth running).
GPU_ONLY_APPROACHES: frozenset[str] = frozenset(a.name for a in approaches.APPROACH_LIST if a.gpu_only)
PROMPT_STYLES: tuple[str, ...] = ("compact", "listed")
# How a training job spreads over its GPUs (the `strategy` hyperparameter; lambdas/memory.Strategy names them):
#   single        one process on one GPU (or on the CPU);
#   ddp           one process per GPU under torchrun, a full replica on each;
#   fsdp          FSDP full shard under torchrun;
#   fsdp_offload  FSDP full shard with the shards kept in host memory (CPU offload) under torchrun;
#   split         ONE process, the model spread over the node's GPUs by a device map (naive model parallelism: one GPU
#                 works at a time, nothing but activations crosses between them);
#   lean          one GPU, full fine-tuning: bf16 weights, 8-bit optimizer states, the optimizer step fused into
#                 backward (no whole-model gradient), Kahan-compensated bf16 updates.
STRATEGIES: tuple[str, ...] = ("single", "ddp", "fsdp", "fsdp_offload", "split", "lean")
# The strategies that run one process per GPU under torchrun (Launch's `sagemaker_torch_distributed_enabled`).
TORCHRUN_STRATEGIES: frozenset[str] = frozenset({"ddp", "fsdp", "fsdp_offload"})
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
# eval_samples "all": the whole test split. Its rows are the catalog's count for a known dataset (DATASET_TEST_ROWS),
# else the test channel's bytes / the mean bytes per row when Plan can list it, else ASSUMED_TEST_ROWS.
ALL_SAMPLES = "all"


# Planning task sft without seeing its tokens. Instruction/chat rows vary far more than Banking77's ~34-token queries
# (Alpaca-style single turns are a few hundred tokens, multi-turn chats over a thousand), and Plan cannot tokenize the
# user's data, so it plans with these stated assumptions (docs/architecture.md, "Planning task sft"); the training
# code measures the real lengths and `max_seq_length` set in the input overrides the planning length:
# - a training example (chat template, prompt and answer) is SFT_TOKENS_PER_EXAMPLE tokens on average;
# - memory is sized for sequences of SFT_PLANNING_SEQ_LENGTH tokens (the longest padded batch, ~4x the mean);
# - each evaluated answer decodes SFT_DECODE_TOKENS_PER_SAMPLE tokens (a sentence or a short paragraph);
# - the train channel holds SFT_BYTES_PER_TOKEN bytes of JSON Lines per token (English BPE text is ~4 characters a
#   token; the JSON keys roughly offset the chat template's tokens), so when Plan can list the channel its rows are
#   its bytes / (SFT_TOKENS_PER_EXAMPLE x SFT_BYTES_PER_TOKEN): the training tokens are then measured from the data's
#   size rather than assumed.
SFT_TOKENS_PER_EXAMPLE = 512.0
SFT_PLANNING_SEQ_LENGTH = 2048
SFT_DECODE_TOKENS_PER_SAMPLE = 128
SFT_BYTES_PER_TOKEN = 4.0


def is_sft(task: str | None) -> bool:
    """Whether a job's task is instruction/chat fine-tuning (None: classification, the default)."""
    return task == SFT


def primary_metric(task: str | None, requested: str | None = None) -> str:
    """The run's primary metric: the requested one, else the task's default (classification when unset)."""
    return requested or TASK_QUALITY_METRICS[task or CLASSIFICATION][0]


def planned_eval_samples(eval_samples: int | str, test_rows: float | None = None) -> int:
    """The samples a job will evaluate, for estimates: the test split's rows (`test_rows`, else ASSUMED_TEST_ROWS)
    for `all`; a number, capped at the test rows when they are known (evaluation draws at most every row)."""
    if eval_samples == ALL_SAMPLES:
        return max(1, round(test_rows if test_rows else ASSUMED_TEST_ROWS))
    return int(eval_samples) if not test_rows else min(int(eval_samples), max(1, round(test_rows)))


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


# Peak dense tensor TFLOP/s (the sparsity figures are 2x and no training step reaches them): A10G 70 bf16 - the one
# figure the project uses (the estimate, the planner and bench/ read `Accelerator.peak_tflops`): AWS's A10G is not the
# A10 (whose datasheet says 125 bf16); Baseten's spec comparison "NVIDIA A10 vs A10G for ML model inference"
# (baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference) lists 70 TFLOP/s bf16/fp16 tensor for the A10G ("the
# A10 prioritizes tensor compute, while the A10G has a higher CUDA core performance"), same 600 GB/s. L40S 362 bf16
# with fp32 accumulate, 864 GB/s, 48 GB GDDR6 (NVIDIA L40S datasheet: 733 with sparsity); L4 121 (datasheet: 242
# with sparsity), V100 SXM2 125 fp16, A100 312 bf16, H100 SXM 989 bf16 (NVIDIA
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
        # nvidia-smi reports 46,068 MiB on an L40S (g6e); ECC on.
        Accelerator("L40S", 48, 46068 / 1024, bf16=True, peak_tflops=362, memory_gb_per_s=864),
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
    def family(self) -> str:
        """`g5` for ml.g5.xlarge: the key of the time model's per-family rows and of calibration."""
        return self.name.split(".")[1]

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
        # g6e (L40S 48 GB, PCIe, no NVLink): EC2 us-east-1 on-demand x 1.25 like the g6 rows (EC2: xlarge $1.861,
        # 2xlarge $2.242, 4xlarge $3.004, 8xlarge $4.529, 12xlarge $10.493, 24xlarge $15.066, 48xlarge $30.131);
        # host RAM from EC2's g6e table. Valid training types (FIELD_NOTES, botocore's TrainingInstanceType).
        InstanceType("ml.g6e.xlarge", 1, ACCELERATORS["L40S"], 32, 2.326),
        InstanceType("ml.g6e.2xlarge", 1, ACCELERATORS["L40S"], 64, 2.803),
        InstanceType("ml.g6e.4xlarge", 1, ACCELERATORS["L40S"], 128, 3.755),
        InstanceType("ml.g6e.8xlarge", 1, ACCELERATORS["L40S"], 256, 5.661),
        InstanceType("ml.g6e.12xlarge", 4, ACCELERATORS["L40S"], 384, 13.116),
        InstanceType("ml.g6e.24xlarge", 4, ACCELERATORS["L40S"], 768, 18.832),
        InstanceType("ml.g6e.48xlarge", 8, ACCELERATORS["L40S"], 1536, 37.664),
        InstanceType("ml.p3.2xlarge", 1, ACCELERATORS["V100"], 61, 3.825),
        InstanceType("ml.p4d.24xlarge", 8, ACCELERATORS["A100"], 1152, 37.688),
        InstanceType("ml.p5.48xlarge", 8, ACCELERATORS["H100"], 2048, 113.068),
    )
}
# The region the fallback prices are for (recorded next to every estimate so nobody mistakes them for local prices).
CATALOG_PRICE_REGION = "us-east-1"

# Instance families the training image cannot run, with the reason. The one home of the rule: Plan, the deployment's
# quota requests and the planner's alternative search accept only `trainable_instances()`; the families' hardware
# stays in INSTANCES so that figures about it (the planner's fp16 path) keep their source.
_V100 = (
    "V100 GPUs (compute capability 7.0): the training image's PyTorch is a CUDA 13 (cu130) build, which ships no "
    "kernels for them (pytorch#172352); choose a g5, g6, p4d or p5 instance"
)
# The Hugging Face PyTorch training DLC (2.9.0 / transformers 5.3.0) is published for GPUs only (cu130): a CPU
# instance has no image to run (the offline demo trains on the local CPU instead, whatever the planned instance).
_NO_CPU_IMAGE = (
    "a CPU instance: the Hugging Face PyTorch training image (transformers 5.3.0) has GPU builds only; the cheapest "
    "GPU instance, ml.g6.xlarge, runs small models (examples/smoke.json)"
)
UNSUPPORTED_FAMILIES: dict[str, str] = {
    "ml.p3": _V100,
    "ml.p3dn": _V100,
    "ml.m5": _NO_CPU_IMAGE,
}


def unsupported_reason(instance_type: str) -> str | None:
    """Why the training image cannot run on `instance_type` (`ml.<family>.<size>`), or None when it can."""
    family = instance_type.rsplit(".", 1)[0]
    return UNSUPPORTED_FAMILIES.get(family)


def trainable_instances() -> dict[str, InstanceType]:
    """The catalog's instance types a training job may run on (INSTANCES without the unsupported families)."""
    return {name: spec for name, spec in INSTANCES.items() if unsupported_reason(name) is None}


# --------------------------------------------------------------------------------------------------------------------
# The time model (lambdas/estimate.py): every constant it uses, with the band it may be off by and its source.
# Calibration (lambdas/calibration.py) multiplies each part by what recorded jobs of the same instance family, approach
# and strategy really took, so these are the prior, not the last word.
# --------------------------------------------------------------------------------------------------------------------
# Mean tokens per training example (prompt + label) by prompt style, measured on Banking77's train split with
# Mistral-7B-v0.1's tokenizer: the compact prompt 34.3, the prompt that lists the 77 labels 616.3.
TOKENS_PER_EXAMPLE: dict[str, float] = {"compact": 34.3, "listed": 616.3}
# Train rows of the named datasets whose size is known (PolyAI/banking77's train split).
DATASET_TRAIN_ROWS: dict[str, int] = {"banking77": 10_003}
# Test rows of the same datasets (PolyAI/banking77's test split): what eval_samples "all" evaluates.
DATASET_TEST_ROWS: dict[str, int] = {"banking77": 3_080}
# Other datasets: a channel's bytes / this (a JSON Lines row of a short query and its label, Banking77-like);
# when even the size is unknown, a Banking77-sized dataset.
MEAN_BYTES_PER_ROW = 110
DEFAULT_TRAIN_ROWS = DATASET_TRAIN_ROWS["banking77"]
ASSUMED_TEST_ROWS = DATASET_TEST_ROWS["banking77"]
# Training FLOPs per parameter per token (lambdas/approaches.py, `flops_per_parameter`): forward 2N + backward 4N for
# full fine-tuning; with frozen base weights (LoRA, QLoRA, DoRA) backward needs only the activation gradients, ~2N.
# Gradient checkpointing recomputes the forward: +2N.
TRAINING_FLOPS_PER_PARAMETER: dict[str, int] = {
    a.name: a.flops_per_parameter for a in approaches.APPROACH_LIST if a.trains
}
RECOMPUTE_FLOPS_PER_PARAMETER = 2
# CPU instances (smoke tests only): a few vCPUs of AVX-512 fp32, order of magnitude.
CPU_PEAK_TFLOPS = 0.2
CPU_MEMORY_GB_PER_S = 20.0
# Evaluation: constrained greedy decoding of the label, ~8 tokens per sample (a Banking77 label is 3-7 tokens plus the
# end token).
DECODE_TOKENS_PER_SAMPLE = 8
# Bytes per parameter of the weights downloaded and read while decoding: the Hub's bf16/fp16 safetensors; the final
# artifact of full fine-tuning (and of a merged adapter) is saved in bf16 too.
WEIGHT_BYTES_PER_PARAMETER = 2
# Collectives between the GPUs of one instance go over this link, by family: PCIe (g5, g6, g6e: no NVLink between
# their GPUs) or NVLink through NVSwitch (p4d, p4de, p5).
GPU_LINK: dict[str, str] = {"g5": "pcie", "g6": "pcie", "g6e": "pcie", "p3": "pcie", "p4d": "nvswitch-a100"}
GPU_LINK_DEFAULT = "nvswitch-h100"  # p5
# The physical ceiling of each link per GPU and direction (no estimate may move bytes faster): PCIe Gen4 x16 31.5 GB/s
# (PCI-SIG); NVLink 3 on A100 300 GB/s per direction (600 bidirectional, NVIDIA A100 datasheet); NVLink 4 on H100 SXM
# 450 GB/s per direction (900 bidirectional, H100 datasheet). Between instances: the EFA/ENA bandwidth per instance
# (EC2 instance specs: g5.48xlarge and g6e.48xlarge 100-400 Gbps, p4d 400 Gbps, p5 3,200 Gbps); 12.5 GB/s is the
# g-family floor we assume.
LINK_PEAK_GB_PER_S: dict[str, float] = {"pcie": 31.5, "nvswitch-a100": 300.0, "nvswitch-h100": 450.0}
NETWORK_PEAK_GB_PER_S: dict[str, float] = {"p4d": 50.0, "p5": 400.0}
NETWORK_PEAK_DEFAULT_GB_PER_S = 12.5


@dataclass(frozen=True)
class TimeConstant:
    """One figure of the time model: the value behind the expected estimate, the ends of its band (`best` makes the
    job faster and cheaper, `worst` slower and dearer), its unit and where it comes from."""

    name: str
    expected: float
    best: float
    worst: float
    unit: str
    source: str

    def at(self, band: str) -> float:
        """The value for an estimate band: low -> best, expected, high -> worst."""
        return {"low": self.best, "expected": self.expected, "high": self.worst}[band]


TIME_MODEL: dict[str, TimeConstant] = {
    c.name: c
    for c in (
        # Startup: SageMaker's Starting + Downloading phases (provisioning, the ~20 GB DLC image pull, the toolkit's
        # setup). Larger instances take longer to provision and the p families are scarce.
        TimeConstant("startup_1gpu", 240, 150, 420, "s", "issue 18: a few minutes on single-GPU g types; calibrate"),
        TimeConstant("startup_multi_gpu", 360, 300, 420, "s", "issue 18: 5-7 min on the large (multi-GPU) instances"),
        TimeConstant("startup_p", 420, 300, 600, "s", "assumed: p4d/p5 provisioning (scarce capacity); calibrate"),
        TimeConstant("startup_cpu", 120, 60, 240, "s", "assumed: CPU smoke tests pull the same image faster"),
        TimeConstant(
            "install", 90, 60, 120, "s", "issue 18: `pip install -r requirements.txt` at the start takes 1-2 min"
        ),
        TimeConstant(
            "download_bytes_per_s",
            150e6,
            400e6,
            75e6,
            "B/s",
            "assumed Hub (CDN/Xet) to us-east-1 rate per job; the old catalog's 100 MB/s was its conservative end",
        ),
        TimeConstant(
            "load_bytes_per_s", 1.0e9, 2.0e9, 0.5e9, "B/s", "assumed: safetensors from local NVMe/EBS to the GPU"
        ),
        TimeConstant(
            "quantize_s_per_billion", 3.0, 2.0, 6.0, "s/B params", "assumed: bitsandbytes NF4 quantization at load"
        ),
        # Model FLOPs utilization of the training step, counting recomputation, at the study's ~35-token sequences.
        # Published Llama-2-7B LoRA on one A100: plain HF + PEFT ~21% (FIELD_NOTES); short sequences lower it (small
        # matmuls); QLoRA >= 25% slower than LoRA (dequantization); full fine-tuning under FSDP 44-55% on NVSwitch
        # nodes (FIELD_NOTES), its communication priced separately here; `lean` does the 8-bit optimizer step inside
        # backward. bench/ (docs/benchmarks.md) measures step times; calibration corrects the rest.
        TimeConstant("utilization_lora", 0.20, 0.30, 0.12, "MFU", "FIELD_NOTES: plain HF + PEFT ~21% MFU"),
        TimeConstant("utilization_qlora", 0.15, 0.22, 0.09, "MFU", "LoRA's / 1.25+: QLoRA >= 25% slower"),
        TimeConstant("utilization_full", 0.30, 0.40, 0.20, "MFU", "FIELD_NOTES: full FT 44-55% on NVSwitch nodes"),
        TimeConstant("utilization_lean", 0.25, 0.35, 0.15, "MFU", "full FT less the fused 8-bit step's time"),
        TimeConstant("memory_efficiency", 0.7, 0.8, 0.5, "of peak", "assumed share of peak DRAM bandwidth a step gets"),
        TimeConstant(
            "step_overhead_s",
            0.05,
            0.02,
            0.15,
            "s/step",
            "assumed: kernel launches, data loader, optimizer bookkeeping per optimizer step",
        ),
        # Bus bandwidth NCCL reaches per GPU in a ring (all-gather, reduce-scatter, all-reduce), by link.
        TimeConstant(
            "collective_pcie_gb_per_s",
            12.0,
            20.0,
            8.0,
            "GB/s",
            "PCIe Gen4 x16 peak 31.5 GB/s; NCCL rings across PCIe switches/sockets reach ~1/3 of it (issue 18: "
            "2.5-6 s per 7B FSDP step on g5.48xlarge)",
        ),
        TimeConstant(
            "collective_nvswitch-a100_gb_per_s", 230.0, 260.0, 150.0, "GB/s", "nccl-tests busbw on 8x A100 SXM"
        ),
        TimeConstant(
            "collective_nvswitch-h100_gb_per_s", 360.0, 420.0, 250.0, "GB/s", "nccl-tests busbw on 8x H100 SXM"
        ),
        TimeConstant(
            "host_link_gb_per_s", 12.0, 20.0, 6.0, "GB/s", "FSDP CPU offload: pinned host <-> GPU copies over PCIe"
        ),
        TimeConstant(
            "cpu_adam_bytes_per_s", 20e9, 40e9, 10e9, "B/s", "assumed: torch CPU AdamW streams its fp32 state"
        ),
        TimeConstant(
            "checkpoint_write_bytes_per_s",
            1.0e9,
            2.0e9,
            0.4e9,
            "B/s",
            "assumed: torch.save/safetensors to local NVMe, incl. gathering a FULL_STATE_DICT on rank 0",
        ),
        TimeConstant(
            "s3_upload_bytes_per_s",
            200e6,
            400e6,
            100e6,
            "B/s",
            "SageMaker's checkpoint sync and output upload; memory.CHECKPOINT_THROUGHPUT (100 MB/s) is its low end",
        ),
        TimeConstant("upload_fixed_s", 30, 15, 60, "s", "assumed: SageMaker's Uploading phase for a small artifact"),
        TimeConstant(
            "eval_utilization", 0.3, 0.4, 0.15, "MFU", "assumed: prefill of short prompts at evaluation batch size"
        ),
        TimeConstant("decode_bandwidth_efficiency", 0.6, 0.75, 0.4, "of peak", "decoding reads every weight per token"),
        TimeConstant(
            "decode_step_overhead_s",
            0.02,
            0.01,
            0.05,
            "s/token",
            "assumed: constrained decoding's logits processor and Python per generated token",
        ),
        # Managed spot: AWS says managed spot training saves "up to 90%"; g5/g6 spot prices in us-east-1 mostly sit
        # at 30-50% of on-demand. The expected fraction errs to the dear side; the report's spot_savings_pct
        # (billable / training time) recalibrates it.
        TimeConstant(
            "spot_price_fraction",
            0.4,
            0.3,
            0.5,
            "x on-demand",
            "AWS: managed spot saves up to 90%; us-east-1 g-family spot mostly 0.3-0.5 x on-demand",
        ),
    )
}


def startup_constant(instance: InstanceType) -> TimeConstant:
    """The startup row for an instance type: CPU, one GPU, several GPUs, or a p family."""
    if not instance.has_gpu:
        return TIME_MODEL["startup_cpu"]
    if instance.family.startswith("p"):
        return TIME_MODEL["startup_p"]
    return TIME_MODEL["startup_1gpu" if instance.gpus == 1 else "startup_multi_gpu"]


def gpu_link(instance: InstanceType) -> str:
    """The link an instance's GPUs exchange collectives over (`GPU_LINK`)."""
    return GPU_LINK.get(instance.family, GPU_LINK_DEFAULT)


# Families the planner may choose without being asked (an explicit instance_type is always honoured): their spot
# quotas are requested by the deployment's quota stack for the types the study plans use (cdk.json quota_requests).
# p4d/p5 are left out: their spot quotas are 0 by default in new accounts and spot capacity is scarce (FIELD_NOTES),
# so a plan on them may wait until MaxWait.
PLANNABLE_FAMILIES: frozenset[str] = frozenset({"g5", "g6", "g6e"})


# The usages SageMaker names its training instance quotas after: "<instance type> for <usage> usage".
TRAINING_QUOTA_USAGE = {True: "spot training job", False: "training job"}
_TRAINING_QUOTA_NAME = re.compile(r"(?P<instance_type>ml\.[\w.-]+) for (?P<spot>spot )?training job usage")


def training_quota_name(instance_type: str, spot: bool) -> str:
    """The Service Quotas name (service code `sagemaker`) that caps concurrent instances of a type for training."""
    return f"{instance_type} for {TRAINING_QUOTA_USAGE[spot]} usage"


def parse_training_quota_name(name: str) -> tuple[str, bool] | None:
    """(instance type, spot) of a training instance quota's name (`training_quota_name`'s inverse); None for any
    other quota (a runtime or volume limit, an endpoint's instances)."""
    found = _TRAINING_QUOTA_NAME.fullmatch(name)
    return (found["instance_type"], found["spot"] is not None) if found else None


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
    max_runtime_hours: float  # bounds the bill: the estimate and the budget check use it
    # The approach's automatic rate for the model's size (lambdas/approaches.py; `job_defaults` fills it in): the rate
    # training_code's `learning_rate: auto` resolves to (a contract test holds the two rules equal). None: no training.
    learning_rate: float | None = None


# What the planner chooses (lambdas/estimate.cheapest_plan: the cheapest expected plan over the plannable families that
# fits by the memory planner; tests/lambdas/test_lambda_plan.py checks that each row below is its choice for the
# class's catalog model, or a Hub model at the class's bound). Plan asks the planner itself for every job without an
# instance_type; these rows are what Remedy's fallback lists start from and what the docs quote. Expected figures are
# the time model's for the Banking77 study (1 epoch, ~10k rows of ~34 tokens, 500 evaluation samples), at 0.4 x
# on-demand spot (`finetune estimate --matrix study` prints the parts).
# Learning rates are not per size class: `job_defaults` takes the approach's automatic rate for the model's size from
# lambdas/approaches.py (its reasons are there), the rule training_code's `learning_rate: auto` applies.
# Runtime bounds are floors: Plan raises a job's bound to twice its high estimate, rounded up to whole hours.
DEFAULTS: dict[tuple[str, str], JobDefaults] = {
    # Up to 2B (Hub models such as Qwen2.5-1.5B or Llama-3.2-1B): everything fits one 24 GB GPU; the L4 of ml.g6.xlarge
    # computes faster than the A10G (121 vs 70 TFLOP/s) for less per hour. Full fine-tuning runs `lean`.
    ("2b", "qlora"): JobDefaults("ml.g6.xlarge", 1, 8, 2),
    ("2b", "lora"): JobDefaults("ml.g6.xlarge", 1, 8, 2),
    # DoRA rebuilds each adapted weight (and an in x in identity) in every forward to take its norm
    # (memory.dora_forward_work): memory-bound at the study's short sequences, so the A10G's 600 GB/s beats the L4's
    # 300 GB/s. At 2B: ~15 min, ~$0.14 (LoRA ~$0.07).
    ("2b", "dora"): JobDefaults("ml.g5.xlarge", 1, 8, 2),
    ("2b", "full"): JobDefaults("ml.g6.xlarge", 1, 8, 2),
    # Baselines (zero-shot evaluation, no training) need inference memory only: bf16 weights, the KV cache and prefill
    # of one evaluation batch of listed prompts (~1,024 tokens). Weights stay bf16, as every fine-tuned model but
    # QLoRA's is evaluated, so the baseline measures the base model and not a quantization of it. One process loads
    # the weights shard by shard onto its GPU(s) (a device map), so host memory holds one shard at a time. No
    # checkpoints: an interrupted spot baseline starts over.
    ("2b", "baseline"): JobDefaults("ml.g6.xlarge", 1, 8, 1),
    # 7B QLoRA: NF4 weights (~3.9 GB) + adapters + activations fit one L4 at batch 8; g6.xlarge's 16 GiB host RAM
    # holds one 10 GB shard while quantizing. ~23 min, ~$0.15 (was ml.g5.xlarge: the A10G's lower peak, ~$0.30).
    ("7b", "qlora"): JobDefaults("ml.g6.xlarge", 1, 8, 2),
    # 7B baseline: ~12.6 GiB of bf16 weights + ~5 GiB of KV cache and prefill at 8 x 1,024 tokens fit one L4.
    ("7b", "baseline"): JobDefaults("ml.g6.xlarge", 1, 8, 1),
    # 7B LoRA: bf16 weights (~13.5 GB) + activations with gradient checkpointing fit one L4 at batch 8; the 2xlarge is
    # for its 32 GiB host RAM (loading the bf16 weights needs ~17 GiB with the runtime). ~20 min, ~$0.16.
    ("7b", "lora"): JobDefaults("ml.g6.2xlarge", 1, 8, 2),
    # 7B DoRA: LoRA's memory + ~1.3 GiB of per-layer rebuild fit one A10G; ~35 min, ~$0.35 (LoRA ~20 min, ~$0.16).
    ("7b", "dora"): JobDefaults("ml.g5.2xlarge", 1, 8, 2),
    # 7B full: `lean` on one 48 GB L40S: bf16 weights, 8-bit AdamW states and a bf16 Kahan buffer are 6 bytes/param
    # (~40 GB), the step fused into backward keeps one layer's gradient. No collectives at all: ~15 min, ~$0.23.
    # Was FSDP over ml.g5.48xlarge's 8 A10Gs at batch 1: 1,251 steps each all-gathering the bf16 model twice and
    # reduce-scattering its gradients over PCIe (~3 s/step, communication-bound), ~75 min at $20.36/h, ~$10 spot.
    ("7b", "full"): JobDefaults("ml.g6e.xlarge", 1, 8, 2),
    # 20B QLoRA: NF4 weights are ~11 GiB, so one replica with paged 8-bit optimizer state and batch-8 activations fits
    # one L4 (~15 GiB): ~55 min, ~$0.37. Was 4 DDP replicas on ml.g5.12xlarge (a full NF4 copy per GPU), ~$1.60.
    ("20b", "qlora"): JobDefaults("ml.g6.xlarge", 1, 8, 3),
    # 20B baseline: ~38 GiB of bf16 weights spread by one process's device map over ml.g6.12xlarge's 4 L4s.
    ("20b", "baseline"): JobDefaults("ml.g6.12xlarge", 1, 8, 1),
    # 20B LoRA: the frozen bf16 base (~38 GiB) + fp32 adapters + activations fit one 48 GB L40S: one process, nothing
    # to gather, ~23 min, ~$0.43. Was FSDP over ml.p4d.24xlarge ($37.69/h; spot quota 0 by default, scarce spot
    # capacity) with fp32 masters counted for the frozen layers, ~$5.80 spot.
    ("20b", "lora"): JobDefaults("ml.g6e.2xlarge", 1, 8, 2),
    # 20B DoRA: LoRA's 43 GiB on one L40S + the rebuild of a 24,576-wide layer (~3.7 GiB) overflow it; split over
    # ml.g5.12xlarge's four A10Gs: ~90 min, ~$4.30 expected.
    ("20b", "dora"): JobDefaults("ml.g5.12xlarge", 1, 8, 3),
    # 20B full (not in the default matrix: the study skipped it for cost): ~330 GB of FSDP state, offloaded to the
    # host of ml.g6.48xlarge (8 L4s, 768 GiB RAM): ~8 h and ~$40 expected; AdamW on the CPU bounds every step.
    ("20b", "full"): JobDefaults("ml.g6.48xlarge", 1, 1, 24),
    # Up to 72B (Hub models with params_billion): 4-bit 70B (~37 GiB + adapters) per replica on ml.g6e.12xlarge's four
    # 48 GB L40S (DDP at batch 2); LoRA split over the same four GPUs; full fine-tuning offloads over 3 g6e.48xlarge.
    ("70b", "qlora"): JobDefaults("ml.g6e.12xlarge", 1, 2, 6),
    ("70b", "lora"): JobDefaults("ml.g6e.12xlarge", 1, 8, 6),
    ("70b", "dora"): JobDefaults("ml.g6e.48xlarge", 1, 8, 10),
    ("70b", "full"): JobDefaults("ml.g6e.48xlarge", 3, 1, 30),
    # 70B baseline: ~134 GiB of bf16 weights at 72B spread over a g6e.12xlarge's 4 L40S (~34 GiB per GPU).
    ("70b", "baseline"): JobDefaults("ml.g6e.12xlarge", 1, 8, 2),
}


def job_defaults(params_billion: float, approach: str) -> JobDefaults:
    """Default instance, count, batch size, learning rate and runtime bound for a model size and approach (the rate
    is the approach's automatic one for this size, the same the training code's `auto` resolves to)."""
    rate = approaches.get(approach).default_learning_rate(round(params_billion * 1e9))
    return replace(DEFAULTS[(size_class(params_billion), approach)], learning_rate=rate)


# Where a job may move when its instance type has no quota or no capacity (lambdas/remedies.py), per size class and
# approach, in order of preference: the default first, then the same GPU memory on other families or sizes (the
# next size up mostly adds host RAM and vCPUs), then more GPU memory. The remedy still asks the memory planner and
# the applied quota about each candidate, so a list may hold types that only fit some models of the class.
FALLBACK_INSTANCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("2b", "qlora"): ("ml.g6.xlarge", "ml.g5.xlarge", "ml.g6.2xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge"),
    ("2b", "lora"): ("ml.g6.xlarge", "ml.g5.xlarge", "ml.g6.2xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge"),
    ("2b", "dora"): ("ml.g5.xlarge", "ml.g6.xlarge", "ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g6e.xlarge"),
    ("2b", "full"): ("ml.g6.xlarge", "ml.g5.xlarge", "ml.g6.2xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge"),
    ("7b", "qlora"): ("ml.g6.xlarge", "ml.g5.xlarge", "ml.g6.2xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge"),
    ("7b", "lora"): ("ml.g6.2xlarge", "ml.g5.2xlarge", "ml.g6.4xlarge", "ml.g5.4xlarge", "ml.g6e.xlarge"),
    ("7b", "dora"): ("ml.g5.2xlarge", "ml.g6.2xlarge", "ml.g5.4xlarge", "ml.g6.4xlarge", "ml.g6e.xlarge"),
    ("7b", "full"): ("ml.g6e.xlarge", "ml.g6e.2xlarge", "ml.g6e.4xlarge", "ml.g5.48xlarge", "ml.g6.48xlarge"),
    ("20b", "qlora"): ("ml.g6.xlarge", "ml.g5.xlarge", "ml.g6.2xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge"),
    ("20b", "lora"): ("ml.g6e.2xlarge", "ml.g6e.4xlarge", "ml.g5.12xlarge", "ml.g6.12xlarge", "ml.p4d.24xlarge"),
    ("20b", "dora"): ("ml.g5.12xlarge", "ml.g6.12xlarge", "ml.g6e.12xlarge", "ml.p4d.24xlarge"),
    ("20b", "full"): ("ml.g6.48xlarge", "ml.g5.48xlarge", "ml.g6e.48xlarge", "ml.p4d.24xlarge"),
    ("70b", "qlora"): ("ml.g6e.12xlarge", "ml.g6e.24xlarge", "ml.p5.48xlarge"),
    ("70b", "lora"): ("ml.g6e.12xlarge", "ml.g6e.24xlarge", "ml.g6e.48xlarge", "ml.p5.48xlarge"),
    ("70b", "dora"): ("ml.g6e.48xlarge", "ml.p5.48xlarge"),
    ("70b", "full"): ("ml.g6e.48xlarge", "ml.p5.48xlarge"),
}


def fallback_instances(params_billion: float, approach: str) -> tuple[str, ...]:
    """The fallback list for a model size and approach (empty for approaches without one, e.g. no training)."""
    return FALLBACK_INSTANCES.get((size_class(params_billion), approach), ())


# The Banking77 study: 3 models x 3 approaches, minus GPT-NeoX-20B full (skipped for cost) = 8 jobs. Baselines are
# not in it by default: the execution input's `baselines: true` adds one per model (see `with_baselines`), at most
# 2 x $1.01 + 2 x $5.75 = $13.52 more at catalog on-demand prices for the study's three models (their 1 h and 2 h
# bounds; a baseline takes minutes).
STUDY_MODELS: tuple[str, ...] = ("llama2-7b", "mistral-7b", "gpt-neox-20b")
STUDY_MATRIX: tuple[tuple[str, str], ...] = tuple(
    (model, approach)
    for model in STUDY_MODELS
    for approach in (a.name for a in approaches.APPROACH_LIST if a.in_study)
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
    # The numeric range the input accepts, in JSON Schema's own keywords (minimum, maximum, exclusiveMinimum,
    # exclusiveMaximum): the execution-input schema carries exactly these (tests/lambdas/test_lambda_hyperparameters.py)
    # and the training code's `RANGES` accepts at least this range (the contract test there), so a value Plan accepts
    # never fails the job after it has paid for startup.
    bounds: Mapping[str, float] = field(default_factory=dict, hash=False)


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter(
        "approach",
        Source.EXPERIMENT,
        ("string",),
        None,
        ", ".join(TRAINING_APPROACHES) + ", or baseline (zero-shot evaluation, no training)",
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
        "instance_count",
        Source.EXPERIMENT,
        ("integer",),
        BY_SIZE_CLASS,
        "number of instances",
        in_job_name=True,
        bounds={"minimum": 1, "maximum": 16},
    ),
    # One epoch over Banking77's ~10k short queries reaches the study's accuracy; more mostly costs.
    Hyperparameter(
        "epochs",
        Source.EXPERIMENT,
        ("number",),
        1,
        "training epochs",
        "epochs",
        True,
        bounds={"exclusiveMinimum": 0, "maximum": 100},
    ),
    Hyperparameter(
        "batch_size",
        Source.EXPERIMENT,
        ("integer",),
        BY_SIZE_CLASS,
        "per-device batch size",
        "per_device_batch_size",
        True,
        bounds={"minimum": 1, "maximum": 1024},
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
        # Both ends open: a rate of 1 or more diverges at once, and the training code refuses it.
        bounds={"exclusiveMinimum": 0, "exclusiveMaximum": 1},
    ),
    # Rank 16 on all linear layers: the usual LoRA/QLoRA setting for 7B-20B classification-like SFT.
    Hyperparameter(
        "lora_r",
        Source.EXPERIMENT,
        ("integer",),
        16,
        "LoRA rank",
        "lora_r",
        True,
        bounds={"minimum": 1, "maximum": 1024},
    ),
    # alpha = 2r keeps the adapter's update scale constant if r changes.
    Hyperparameter(
        "lora_alpha",
        Source.EXPERIMENT,
        ("integer",),
        32,
        "LoRA alpha",
        "lora_alpha",
        True,
        bounds={"minimum": 1, "maximum": 4096},
    ),
    # The QLoRA paper's dropout for models up to 13B.
    Hyperparameter(
        "lora_dropout",
        Source.EXPERIMENT,
        ("number",),
        0.05,
        "LoRA dropout",
        "lora_dropout",
        True,
        bounds={"minimum": 0, "exclusiveMaximum": 1},
    ),
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
        bounds={"minimum": 16, "maximum": 32768},
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
    # The schema also refuses 0 (`not`): -1 or at least one step.
    Hyperparameter(
        "max_steps",
        Source.EXPERIMENT,
        ("integer",),
        -1,
        "optimizer steps; -1: epochs decide",
        "max_steps",
        True,
        bounds={"minimum": -1, "maximum": 100_000_000},
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
        bounds={"minimum": 1, "maximum": 100000},
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
    # How the job spreads over its GPUs (memory.Strategy), chosen by the planner with the instance: the cheapest
    # expected plan that fits. Launch starts torchrun exactly for ddp/fsdp/fsdp_offload over more than one GPU.
    Hyperparameter(
        "strategy",
        Source.PLAN,
        ("string",),
        "single",
        "how training spreads over the GPUs, chosen by the planner",
        "strategy",
        choices=STRATEGIES,
    ),
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
        "strategy",
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
