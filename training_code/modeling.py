"""Devices, dtypes, model/tokenizer loading, LoRA/QLoRA configuration and adapter merging.

Full, LoRA and QLoRA differ only here: QLoRA adds a 4-bit quantization config, LoRA/QLoRA add a PEFT config that
TRL's SFTTrainer applies. Everything else (data, trainer, evaluation) is shared.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_code.config import TrainConfig

LOG = logging.getLogger(__name__)

# Above this size activations dominate GPU memory at batch 8 x ~600 tokens, so recomputing them pays off.
GRADIENT_CHECKPOINTING_MIN_PARAMETERS = 1_000_000_000
# FlashAttention 2 kernels need an Ampere or newer GPU (A100, A10G, L4, H100: 8.0+); T4 (7.5) and V100 (7.0) get
# SDPA, which the flash_attn package would refuse at the first forward pass.
FLASH_ATTENTION_MIN_CAPABILITY = (8, 0)
# Left free on every GPU when a model is dispatched for evaluation, beyond the KV cache: the CUDA context,
# allocator fragmentation and the last-token logits.
INFERENCE_HEADROOM_BYTES = 2 * 2**30
# Left free on every GPU when strategy=split spreads a model for training: the activations of the layers a GPU
# holds (batch 8 x ~35-token Banking77 sequences: tens of MB per layer), the adapter's gradients and Adam states,
# the CUDA context and allocator slack. The GPU bench measures what a 7B/20B split actually peaks at.
SPLIT_TRAINING_HEADROOM_BYTES = 4 * 2**30


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


def choose_attention(capability: tuple[int, int] | None, flash_attn_installed: bool) -> str:
    """FlashAttention 2 on a GPU of compute capability 8.0+ with flash_attn installed; SDPA everywhere else."""
    if capability is not None and capability >= FLASH_ATTENTION_MIN_CAPABILITY and flash_attn_installed:
        return "flash_attention_2"
    return "sdpa"


def flash_attention_importable() -> bool:
    """Whether the flash_attn package imports here. Being installed is not enough: a wheel built for another torch
    or CUDA is found by the import system and then fails to load its kernels (an ImportError or OSError on an
    undefined symbol), and transformers would only find out at the first forward pass."""
    try:
        import flash_attn  # noqa: F401
    except Exception as exc:  # ImportError, OSError (undefined symbol), RuntimeError from its CUDA checks
        if importlib.util.find_spec("flash_attn") is not None:
            LOG.warning("flash_attn is installed but does not import (%s: %s): using SDPA", type(exc).__name__, exc)
        return False
    return True


def detect_runtime(local_rank: int) -> Runtime:
    """CUDA with bf16 where the GPU has it (fp16 on older GPUs), fp32 on CPU; FlashAttention 2 where it runs."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        bf16 = torch.cuda.is_bf16_supported()
        attn = choose_attention(torch.cuda.get_device_capability(local_rank), flash_attention_importable())
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
    max_positions: int | None = None
    """The longest sequence the model's position embeddings cover (None: not stated by its config)."""
    kv_values_per_token: int = 0
    """Keys and values cached per token over all layers (2 x layers x key/value heads x head size)."""


def inspect_model(model_id: str, token: str | None) -> ModelInfo:
    """Parameter count, layer classes and shape, from the model instantiated on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(model_id, token=token)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    heads = model_config.num_attention_heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return ModelInfo(
        num_parameters=sum(parameter.numel() for parameter in model.parameters()),
        layer_classes=list(getattr(model, "_no_split_modules", None) or []),
        max_positions=getattr(model_config, "max_position_embeddings", None),
        kv_values_per_token=2 * model_config.num_hidden_layers * kv_heads * head_dim,
    )


def use_gradient_checkpointing(config: TrainConfig, runtime: Runtime, num_parameters: int) -> bool:
    """The `gradient_checkpointing` hyperparameter, with `auto` = always for approaches whose row says so (QLoRA:
    the memory it saves is the point of QLoRA), else GPU models of 1B+ parameters. The planner's mirror is
    lambdas/memory.gradient_checkpointing_rule (a contract test compares them over a grid)."""
    if config.gradient_checkpointing != "auto":
        return config.gradient_checkpointing == "true"
    if config.kind.always_checkpoints:
        return True
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
    """LoRA on every linear layer by default (all-linear covers Llama, Mistral and GPT-NeoX names); DoRA when the
    approach's row says so (PEFT's `use_dora`: each adapted weight split into a learned magnitude per output feature
    and a LoRA-updated direction, Liu et al. 2024, arXiv:2402.09353)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=config.modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
        use_dora=config.kind.dora,
    )


def training_dtype(config: TrainConfig, runtime: Runtime):  # -> torch.dtype
    """The dtype the trained weights are loaded in: bf16 always for strategy=lean (its optimizer compensates the
    rounding), fp32 for full fine-tuning under fp16 autocast, `runtime.dtype` otherwise."""
    import torch

    if config.strategy == "lean":
        return torch.bfloat16
    if not config.kind.adapter and runtime.fp16:  # all weights train (full fine-tuning)
        # fp16 autocast needs fp32 master weights: the grad scaler cannot unscale fp16 gradients.
        return torch.float32
    return runtime.dtype


def saved_dtype(config: TrainConfig, runtime: Runtime):  # -> torch.dtype
    """The precision a full fine-tune is saved in: the one it computed in. lean's weights are bf16 even on a CPU;
    otherwise `runtime.dtype` (fp16 runs keep fp32 master weights for the optimizer only, FSDP upcasts trainable flat
    parameters to fp32 for the same reason: neither is model precision)."""
    import torch

    return torch.bfloat16 if config.strategy == "lean" else runtime.dtype


def split_max_memory(free_bytes: Sequence[int], headroom_bytes: int = SPLIT_TRAINING_HEADROOM_BYTES) -> dict[int, int]:
    """Per-GPU weight budget for strategy=split: each GPU's free memory less the training headroom."""
    return {index: max(free - headroom_bytes, 0) for index, free in enumerate(free_bytes)}


def balanced_device_map(model: Any, max_memory: dict[int | str, int], dtype: Any) -> dict[str, int | str]:
    """A device map of `model` (on the meta device) that gives each GPU of `max_memory` an equal share of the
    weights, decoder layers never split across two GPUs.

    Each GPU but the last is capped at 1/N of the model plus half its largest layer, then accelerate's
    `infer_auto_device_map` fills them in order: every GPU overshoots its share by at most half a layer. Not
    accelerate's `get_balanced_memory`: its cap adds a whole largest layer plus a buffer to the first GPUs, which on
    a 16-layer model over 4 GPUs gave 4/5/5/2 layers (measured, accelerate 1.15), leaving one GPU's memory idle.
    """
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes

    no_split = list(getattr(model, "_no_split_modules", None) or [])
    sizes = compute_module_sizes(model, dtype=dtype)
    gpus = [device for device, budget in max_memory.items() if device not in ("cpu", "disk") and budget > 0]
    budgets = dict(max_memory)
    if len(gpus) > 1:
        layers = [sizes[name] for name, module in model.named_modules() if type(module).__name__ in no_split]
        largest = max(layers, default=0)
        share = sizes[""] // len(gpus) + largest // 2
        for device in gpus[:-1]:
            # accelerate keeps the largest layer's size free on the first GPU (its "main device", for offload
            # buffers): add it there, or that GPU would get a layer less than the others.
            budgets[device] = min(max_memory[device], share + (largest if device == gpus[0] else 0))
    return infer_auto_device_map(model, max_memory=budgets, no_split_module_classes=no_split, dtype=dtype)


def split_device_map(model_id: str, token: str | None, max_memory: dict[int | str, int], dtype: Any) -> dict:
    """strategy=split's device map for `model_id`, computed on a meta instance of it (no weight read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_id, token=token))
    return balanced_device_map(model, max_memory, dtype)


def _device_map(config: TrainConfig, runtime: Runtime, token: str | None, dtype: Any, local_rank: int) -> Any:
    """Where the training weights are placed at load (None: the Trainer moves the model to this rank's device).

    split: a balanced map over every GPU of the node (on CPU the same code path with the CPU as the one device),
    so that transformers' Trainer sees an `hf_device_map` spanning several GPUs, sets `is_model_parallel`, and
    neither moves the model nor wraps it in DataParallel (transformers 5.3, Trainer.__init__).
    QLoRA: quantized weights are placed at load; under torchrun each rank holds a full copy on its own GPU.
    """
    if config.strategy == "split":
        max_memory: dict[int | str, int] = (
            {gpu: limit for gpu, limit in split_max_memory(free_gpu_bytes()).items()}
            if runtime.use_cuda
            else {"cpu": _host_memory_bytes()}
        )
        device_map = split_device_map(config.model_id, token, max_memory, dtype)
        devices = sorted(set(device_map.values()), key=str)
        LOG.info("strategy=split: %d modules over devices %s", len(device_map), devices)
        return device_map
    if config.kind.quantized:
        return {"": local_rank} if runtime.use_cuda else {"": "cpu"}
    return None


def _host_memory_bytes() -> int:
    """This machine's physical memory (the CPU's budget when strategy=split runs without GPUs)."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def load_model(config: TrainConfig, runtime: Runtime, token: str | None, local_rank: int):  # -> PreTrainedModel
    """The base model for training: 4-bit for QLoRA, `training_dtype` otherwise; spread over the GPUs for split."""
    from transformers import AutoModelForCausalLM

    dtype = training_dtype(config, runtime)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": runtime.attn_implementation}
    if config.kind.quantized:
        kwargs["quantization_config"] = quantization_config(runtime)
    device_map = _device_map(config, runtime, token, dtype, local_rank)
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(config.model_id, token=token, **kwargs)
    precision = "4-bit NF4" if config.kind.quantized else dtype
    LOG.info("loaded %s (%s, %s, strategy %s)", config.model_id, type(model).__name__, precision, config.strategy)
    return model


@dataclass(frozen=True)
class EvaluationPlan:
    """Which rank generates the evaluation answers, and whether it reloads the model it generates with."""

    evaluates: bool
    """Only global rank 0 generates: inference time is measured on one GPU for every approach."""
    reload: bool
    """Load the saved model (or base + adapter) instead of using the trained one in memory: after FSDP the trained
    weights are sharded over the ranks and freed, so rank 0 reloads what `save_model` gathered, dispatched over
    the node's GPUs (see `dispatch`)."""

    @property
    def keeps_trained_model(self) -> bool:
        """Whether this rank keeps the trained model in memory after training (to evaluate it in place)."""
        return self.evaluates and not self.reload


def dispatch(free_gpu_bytes: Sequence[int], reserve_bytes: int) -> tuple[str, dict[int | str, int]]:
    """A device map for a model that may not fit one GPU: fill GPU 0 first, then the next ones.

    `sequential` rather than `auto` (= balanced): a model that fits one GPU stays on GPU 0, so inference time is
    the time of one GPU, as for every other approach. `reserve_bytes` stay free on each GPU for the KV cache.
    """
    max_memory: dict[int | str, int] = {
        index: max(free - reserve_bytes, 0) for index, free in enumerate(free_gpu_bytes)
    }
    return "sequential", max_memory


def plan_evaluation(*, rank: int, fsdp: bool) -> EvaluationPlan:
    """Decide who evaluates and whether the trained model is evaluated in memory or reloaded.

    * Ranks other than 0 do not evaluate: they free their training state and leave.
    * Without FSDP, rank 0 holds the whole trained model (DDP replicas are whole): it evaluates it in place.
    * After FSDP, rank 0 reloads the saved model dispatched over the node's GPUs (whose memory the other ranks have
      freed), instead of every rank loading a full copy (20B in bf16 = 38 GiB per rank: more than a 40 GB A100).
    """
    return EvaluationPlan(evaluates=rank == 0, reload=rank == 0 and fsdp)


def inference_reserve_bytes(info: ModelInfo, batch_size: int, max_seq_length: int, dtype_bytes: int) -> int:
    """GPU memory to leave free per GPU for generation: a full KV cache of one batch plus fixed headroom."""
    return info.kv_values_per_token * batch_size * max_seq_length * dtype_bytes + INFERENCE_HEADROOM_BYTES


def free_gpu_bytes() -> list[int]:
    """Free memory of every visible GPU, in bytes (empty on a machine without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.mem_get_info(index)[0] for index in range(torch.cuda.device_count())]


def _placement_kwargs(device_map: Any, max_memory: dict[int | str, int] | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if max_memory is not None:
        kwargs["max_memory"] = max_memory
    return kwargs


def load_for_inference(
    config: TrainConfig,
    model_dir: Path,
    runtime: Runtime,
    token: str | None,
    device_map: Any = None,
    max_memory: dict[int | str, int] | None = None,
):  # -> PreTrainedModel | PeftModel
    """The trained model from `model_dir`: the full model, or the base (with the Hub token) plus the adapter.

    The base is loaded by its model id with `token`, not through the adapter's config: a gated base needs the token
    at this load too. Without a device map the model goes to this rank's device.
    """
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": runtime.dtype, "attn_implementation": runtime.attn_implementation}
    kwargs.update(_placement_kwargs(device_map, max_memory))
    model: Any  # a PeftModel or a PreTrainedModel (two unrelated declared types; both are torch Modules)
    if config.is_peft:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(config.model_id, token=token, **kwargs)
        model = PeftModel.from_pretrained(base, str(model_dir))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    return model if device_map is not None else model.to(runtime.device)


def load_base_for_inference(
    config: TrainConfig,
    runtime: Runtime,
    token: str | None,
    device_map: Any = None,
    max_memory: dict[int | str, int] | None = None,
):  # -> PreTrainedModel
    """The untrained base model for a zero-shot baseline, in `runtime.dtype` (bf16 on GPUs: the precision every
    fine-tuned model but QLoRA's is evaluated in), in evaluation mode; dispatched by `device_map` when given."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": runtime.dtype, "attn_implementation": runtime.attn_implementation}
    kwargs.update(_placement_kwargs(device_map, max_memory))
    model = AutoModelForCausalLM.from_pretrained(config.model_id, token=token, **kwargs).eval()
    LOG.info("loaded %s for zero-shot evaluation (%s)", config.model_id, runtime.dtype)
    return model if device_map is not None else model.to(runtime.device)


def load_merged(
    config: TrainConfig,
    adapter_dir: Path,
    runtime: Runtime,
    token: str | None,
    device_map: Any = None,
    max_memory: dict[int | str, int] | None = None,
):  # -> PreTrainedModel
    """The adapter merged into a bf16 (GPU) or fp32 (CPU) reload of the base.

    Never merged into 4-bit weights: rounding the merged weights back to NF4 would lose most of the adapter.
    """
    return load_for_inference(config, adapter_dir, runtime, token, device_map, max_memory).merge_and_unload()


def save_full_model(model: Any, tokenizer: Any, state_dict: dict[str, Any], out_dir: Path, dtype: Any) -> Path:
    """Save a fully fine-tuned model's `state_dict` in `dtype` (the precision it trained in), with its tokenizer.

    The trained tensors can be fp32 although training ran in bf16/fp16: FSDP upcasts trainable flat parameters to
    fp32, and fp16 runs keep fp32 master weights. Saved as they are, a 7B model is 27 GB instead of 13.5 GB to write,
    upload and load again; the extra precision is optimizer state, not model.
    """
    cast = {
        name: tensor.to(device="cpu", dtype=dtype) if tensor.is_floating_point() else tensor
        for name, tensor in state_dict.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, state_dict=cast)
    # save_pretrained states the in-memory weights' dtype in config.json; state the saved one, which
    # from_pretrained(dtype="auto") loads. The model in memory keeps its own.
    trained_dtype = model.config.dtype
    model.config.dtype = dtype
    try:
        model.config.save_pretrained(out_dir)
    finally:
        model.config.dtype = trained_dtype
    tokenizer.save_pretrained(out_dir)
    return out_dir


def save_merged(model: Any, tokenizer: Any, out_dir: Path) -> Path:
    """Save a merged model and its tokenizer to `out_dir`; return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
