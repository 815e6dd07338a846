"""Intent-classification data: JSONL channels → prompt/completion examples, length checks and batch statistics.

Rows are `{"text": ..., "label": ...}`. The label set is the sorted set of labels seen in train, listed in every
prompt in that stable order, so the model picks among the same names in the same order at train and test time.
The completion is ` <label>` + EOS: the loss covers the label and the stop token only (TRL's completion-only loss on
prompt/completion datasets), and EOS teaches the model to stop so outputs parse as exactly one label.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_TEMPLATE = "Classify the customer message into exactly one intent.\nIntents: {labels}\nMessage: {text}\nIntent:"


class DataError(ValueError):
    """The dataset is unusable as given (bad rows, no labels, examples that do not fit max_seq_length)."""


@dataclass(frozen=True)
class Example:
    """One labelled customer message."""

    text: str
    label: str


def read_jsonl_dir(directory: Path) -> list[Example]:
    """All rows of the `*.jsonl` files under `directory` (sorted by path, so the order is reproducible)."""
    examples: list[Example] = []
    for path in sorted(p for p in Path(directory).rglob("*.jsonl") if p.is_file()):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: expected an object with text and label")
                text, label = row.get("text"), row.get("label")
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"{path}:{number}: missing or empty 'text'")
                if not isinstance(label, str | int) or not str(label).strip():
                    raise DataError(f"{path}:{number}: missing or empty 'label'")
                examples.append(Example(text=" ".join(text.split()), label=str(label).strip()))
    return examples


def label_set(train: Iterable[Example]) -> list[str]:
    """The labels seen in train, sorted: the stable order used in every prompt."""
    labels = sorted({example.label for example in train})
    if len(labels) < 2:
        raise DataError(f"the train channel needs at least 2 distinct labels, found {labels}")
    return labels


def build_prompt(text: str, labels: Sequence[str]) -> str:
    """The prompt for one message; it ends right before the label so generation starts with the label."""
    return PROMPT_TEMPLATE.format(labels=", ".join(labels), text=text)


def completion_for(label: str, eos_token: str) -> str:
    """The supervised part: a space, the label, and EOS."""
    return f" {label}{eos_token}"


def to_prompt_completion(examples: Sequence[Example], labels: Sequence[str], eos_token: str):  # -> datasets.Dataset
    """A `datasets.Dataset` with `prompt` and `completion` columns, the format TRL trains completion-only."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [build_prompt(example.text, labels) for example in examples],
            "completion": [completion_for(example.label, eos_token) for example in examples],
        }
    )


@dataclass(frozen=True)
class LengthReport:
    """Token lengths of prompt+completion over a dataset."""

    count: int
    longest: int
    mean: float


def check_sequence_lengths(tokenizer: Any, dataset: Any, max_seq_length: int) -> LengthReport:
    """Fail when any prompt+completion is longer than `max_seq_length`, before a model is loaded.

    Truncation would cut the end of the sequence, i.e. the label and EOS that carry the whole training signal,
    so an example that does not fit is an error that says how long max_seq_length must be.
    """
    lengths = [
        len(ids)
        for ids in tokenizer(
            [p + c for p, c in zip(dataset["prompt"], dataset["completion"], strict=True)], add_special_tokens=True
        )["input_ids"]
    ]
    longest = max(lengths)
    too_long = sum(length > max_seq_length for length in lengths)
    if too_long:
        raise DataError(
            f"{too_long} of {len(lengths)} training examples are longer than max_seq_length={max_seq_length} "
            f"tokens (longest {longest}); truncation would remove their label tokens. "
            f"Set max_seq_length to at least {longest}."
        )
    return LengthReport(count=len(lengths), longest=longest, mean=sum(lengths) / len(lengths))


def assert_completions_supervised(prepared: Any, eos_token_id: int) -> None:
    """Every prepared training row must have unmasked label tokens, the last of them being EOS.

    `prepared` is the tokenized dataset the trainer will iterate (`input_ids`, `labels` with -100 on the prompt).
    """
    for index, labels in enumerate(prepared["labels"]):
        supervised = [token for token in labels if token != -100]
        if not supervised:
            raise DataError(f"training example {index} has no unmasked label tokens (prompt-only after preparation)")
        if supervised[-1] != eos_token_id:
            raise DataError(f"training example {index} does not end with an unmasked EOS token; it would never stop")


def select_eval_examples(test: Sequence[Example], count: int, seed: int) -> list[Example]:
    """`count` test rows drawn with `seed` (all rows, in file order, when there are fewer)."""
    if count >= len(test):
        return list(test)
    return random.Random(seed).sample(list(test), count)


class PaddingCounter:
    """Wraps a data collator to count real and padded tokens of every training batch it builds.

    The padding fraction is 1 - real/batch tokens; with padding-free batches it is 0 by construction, with
    length-grouped batches it measures what the grouping leaves.
    """

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.collator = collator
        self.real_tokens = 0
        self.batch_tokens = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        self.real_tokens += sum(len(example["input_ids"]) for example in examples)
        self.batch_tokens += int(batch["input_ids"].numel())
        return batch

    @property
    def padding_fraction(self) -> float:
        """Fraction of the batch tokens built so far that are padding (0.0 before any batch)."""
        return 1.0 - self.real_tokens / self.batch_tokens if self.batch_tokens else 0.0


def write_jsonl(path: Path, examples: Iterable[Example]) -> int:
    """Write examples as dataset-contract rows; return the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps({"text": example.text, "label": example.label}, ensure_ascii=False) + "\n")
            count += 1
    return count
