"""Devices, dtypes, model/tokenizer loading, LoRA/QLoRA configuration and adapter merging.

Full, LoRA and QLoRA differ only here: QLoRA adds a 4-bit quantization config, LoRA/QLoRA add a PEFT config that
TRL's SFTTrainer applies. Everything else (data, trainer, evaluation) is shared.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_code.config import TrainConfig

LOG = logging.getLogger(__name__)

# Above this size activations dominate GPU memory at batch 8 x ~600 tokens, so recomputing them pays off.
GRADIENT_CHECKPOINTING_MIN_PARAMETERS = 1_000_000_000


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision this process trains."""

    use_cuda: bool
    device: str
    dtype: Any  # torch.dtype of the loaded (non-quantized) weights
    bf16: bool
    fp16: bool
    attn_implementation: str

    @property
    def padding_free_capable(self) -> bool:
        """Padding-free batches are cheap only with a varlen attention kernel (FlashAttention)."""
        return self.attn_implementation == "flash_attention_2"


def detect_runtime(local_rank: int) -> Runtime:
    """CUDA with bf16 where the GPU has it (fp16 on older GPUs), fp32 on CPU; FlashAttention 2 when installed."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        bf16 = torch.cuda.is_bf16_supported()
        attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "sdpa"
        return Runtime(
            use_cuda=True,
            device=f"cuda:{local_rank}",
            dtype=torch.bfloat16 if bf16 else torch.float16,
            bf16=bf16,
            fp16=not bf16,
            attn_implementation=attn,
        )
    # CPU: fp32 (bf16 matmuls are slow or emulated on most CPUs, and tiny models don't need the memory).
    return Runtime(
        use_cuda=False, device="cpu", dtype=torch.float32, bf16=False, fp16=False, attn_implementation="sdpa"
    )


def load_tokenizer(model_id: str, token: str | None):  # -> PreTrainedTokenizerBase
    """The model's tokenizer with a padding token (Llama-2, Mistral and GPT-NeoX ship none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, token=token)
    if tokenizer.pad_token is None:
        # unk rather than eos where it exists, so padding can never be mistaken for the stop token.
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise ValueError(f"the tokenizer of {model_id} has no EOS token: the model could not learn to stop")
    return tokenizer


@dataclass(frozen=True)
class ModelInfo:
    """What the config alone tells about a model, before any weight is read."""

    num_parameters: int
    layer_classes: list[str]
    """Decoder-layer class names (`_no_split_modules`): the units FSDP wraps."""


def inspect_model(model_id: str, token: str | None) -> ModelInfo:
    """Parameter count and layer classes, from the model instantiated on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(model_id, token=token)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    return ModelInfo(
        num_parameters=sum(parameter.numel() for parameter in model.parameters()),
        layer_classes=list(getattr(model, "_no_split_modules", None) or []),
    )


def use_gradient_checkpointing(config: TrainConfig, runtime: Runtime, num_parameters: int) -> bool:
    """The `gradient_checkpointing` hyperparameter, with `auto` = QLoRA always, GPU models of 1B+ parameters."""
    if config.gradient_checkpointing != "auto":
        return config.gradient_checkpointing == "true"
    if config.approach == "qlora":
        return True  # part of the QLoRA recipe: the memory it saves is the point of QLoRA
    return runtime.use_cuda and num_parameters >= GRADIENT_CHECKPOINTING_MIN_PARAMETERS


def quantization_config(runtime: Runtime):  # -> BitsAndBytesConfig
    """NF4 with double quantization (the QLoRA paper's recipe); compute in bf16 where supported."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=runtime.dtype if runtime.use_cuda else torch.float32,
    )


def lora_config(config: TrainConfig):  # -> peft.LoraConfig
    """LoRA on every linear layer by default (all-linear covers Llama, Mistral and GPT-NeoX names)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=config.modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_model(config: TrainConfig, runtime: Runtime, token: str | None, local_rank: int):  # -> PreTrainedModel
    """The base model for training: 4-bit for QLoRA, `runtime.dtype` otherwise."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = runtime.dtype
    if config.approach == "full" and runtime.fp16:
        # fp16 autocast needs fp32 master weights: the grad scaler cannot unscale fp16 gradients.
        dtype = torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": runtime.attn_implementation}
    if config.approach == "qlora":
        kwargs["quantization_config"] = quantization_config(runtime)
        # Quantized weights are placed at load time; under torchrun each rank holds a full copy on its own GPU.
        kwargs["device_map"] = {"": local_rank} if runtime.use_cuda else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(config.model_id, token=token, **kwargs)
    precision = "4-bit NF4" if config.approach == "qlora" else dtype
    LOG.info("loaded %s (%s, %s)", config.model_id, type(model).__name__, precision)
    return model


def load_for_inference(model_dir: Path, runtime: Runtime):  # -> PreTrainedModel
    """A saved full model, loaded on this rank's device for generation."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=runtime.dtype)
    return model.to(runtime.device)


def merge_adapter(
    model_id: str, adapter_dir: Path, out_dir: Path, runtime: Runtime, token: str | None, tokenizer: Any
) -> Path:
    """Merge a LoRA/QLoRA adapter into a bf16 (GPU) or fp32 (CPU) reload of the base and save it to `out_dir`.

    Never merged into 4-bit weights: rounding the merged weights back to NF4 would lose most of the adapter.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        model_id, dtype=runtime.dtype, token=token, device_map="auto" if runtime.use_cuda else None
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
