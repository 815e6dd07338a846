"""Prompt lengths and a training run with a real tokenizer: Mistral-7B-v0.1's SentencePiece model, offline.

The tiny test models' own BPE tokenizers say nothing about real sequence lengths; Banking77's 77 label names
listed in every prompt cost ~580 Mistral tokens per example, which is what made every study job fail its length
check. These tests pin the real numbers and run `train.py` end to end on a tiny model with that tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.training import dataset_rows, run_main
from training_code import data, evaluation
from training_code.banking77 import LABELS as BANKING77_LABELS

# Banking77's first training example (label card_arrival).
MESSAGE = "I am still waiting on my card?"


@pytest.fixture(scope="module")
def mistral_tokenizer(mistral_tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(mistral_tiny_model)


def tokens(tokenizer, fmt: data.PromptFormat, text: str, label: str) -> int:
    """Tokens of one training sequence (prompt + completion, with BOS) as the model sees it."""
    return len(tokenizer(fmt.prompt(text) + fmt.completion(label, tokenizer.eos_token))["input_ids"])


def test_a_banking77_example_is_31_tokens_compact_and_613_with_the_labels_listed(mistral_tokenizer) -> None:
    labels = sorted(BANKING77_LABELS)

    compact = tokens(mistral_tokenizer, data.prompt_format("compact", labels), MESSAGE, "card_arrival")
    listed = tokens(mistral_tokenizer, data.prompt_format("listed", labels), MESSAGE, "card_arrival")

    # The figures quoted in issue 8 (measured there with mistral-tokenizer-js): 613 listed, ~31 without the list.
    assert (compact, listed) == (31, 613)


def test_compact_prompts_cut_the_tokens_per_example_about_twentyfold(mistral_tokenizer) -> None:
    labels = sorted(BANKING77_LABELS)
    rows = dataset_rows("train")

    def mean(style: str) -> float:
        fmt = data.prompt_format(style, labels)
        return sum(tokens(mistral_tokenizer, fmt, row["text"], row["label"]) for row in rows) / len(rows)

    # Measured on the bundled banking77-mini messages (384 train rows): 34.3 compact, 616.3 listed; 94% of every
    # listed example is the label list.
    assert mean("compact") == pytest.approx(34.29, abs=0.01)
    assert mean("listed") == pytest.approx(616.29, abs=0.01)


def test_the_longest_banking77_label_is_20_tokens_of_answer(mistral_tokenizer) -> None:
    prompt = data.prompt_format("compact", BANKING77_LABELS).prompt(MESSAGE)

    sequences = evaluation.label_token_sequences(mistral_tokenizer, prompt, BANKING77_LABELS, "</s>")

    # balance_not_updated_after_cheque_or_cash_deposit; the generation room is this plus the free-answer slack.
    assert max(len(sequence) for sequence in sequences) == 20


def test_a_compact_prompt_run_on_the_real_tokenizer_sizes_its_sequences_and_reaches_metrics(
    mistral_tiny_model: Path, mistral_tokenizer, make_job
) -> None:
    job = make_job("mistral")

    result = run_main(
        job, job.argv(mistral_tiny_model, approach="full", max_steps=10, eval_samples=8, bertscore_model="none")
    )

    assert result.exit_code == 0, result.stdout
    metrics = job.metrics()
    assert metrics["eval_samples"] == 8
    assert metrics["eval_parse_rate"] == 1.0  # constrained decoding: every answer is a label
    assert "eval_intent_accuracy" in metrics and "train_loss" in metrics
    # auto max_seq_length: the longest training sequence or evaluation prompt + answer room, rounded up to 16
    config = job.training_config()
    resolved = config["resolved"]
    fmt = data.prompt_format("compact", config["labels"])
    longest_train = max(tokens(mistral_tokenizer, fmt, row["text"], row["label"]) for row in dataset_rows("train"))
    assert resolved["longest_sequence"] >= longest_train
    assert resolved["max_seq_length"] == data.round_up(resolved["longest_sequence"], 16)
    assert resolved["max_seq_length"] <= 64  # vs 1024 before: the label list is gone
