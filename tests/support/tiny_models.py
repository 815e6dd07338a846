"""Tiny models only tests build (the ones the demo uses too are in finetune/local/tiny_model.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from finetune.local.tiny_model import HIDDEN_SIZE, NUM_HEADS, NUM_LAYERS, VOCAB_SIZE

# roberta-large's shape where bert-score depends on it: 514 position embeddings from padding_idx 1 (512 tokens).
ROBERTA_MAX_POSITIONS = 514
ROBERTA_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0-4, as in roberta-large's vocab.json


def build_roberta_encoder(out_dir: Path, corpus: Iterable[str], *, tokenizer_config: bool) -> Path:
    """A tiny RoBERTa encoder saved with the files roberta-large has on the Hub (config, model weights, vocab.json,
    merges.txt, tokenizer.json) and, like it, no `model_max_length` anywhere.

    roberta-large has no tokenizer_config.json at all (`tokenizer_config=False`); `tokenizer_config=True` writes
    one without `model_max_length`, as a re-saved copy of it would have. Random weights: BERTScore's value means
    nothing here, only that it is computed.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(corpus), vocab_size=VOCAB_SIZE, special_tokens=list(ROBERTA_SPECIAL_TOKENS))
    bpe.save_model(str(out_dir))  # vocab.json and merges.txt
    tokenizer = RobertaTokenizer(vocab=str(out_dir / "vocab.json"), merges=str(out_dir / "merges.txt"))
    tokenizer.save_pretrained(out_dir)
    written = out_dir / "tokenizer_config.json"
    if tokenizer_config:
        settings = json.loads(written.read_text())
        settings.pop("model_max_length", None)
        written.write_text(json.dumps(settings, indent=2) + "\n")
    else:
        written.unlink()
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        intermediate_size=4 * HIDDEN_SIZE,
        max_position_embeddings=ROBERTA_MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    RobertaModel(config).save_pretrained(out_dir)
    return out_dir
