"""Intent-classification data: JSONL channels → prompt/completion examples, sequence lengths, batch statistics.

Rows are `{"text": ..., "label": ...}`. The label set is the sorted set of labels seen in train. Two prompt styles:

* `compact` (default): the prompt holds the message only; the model learns the label set from training. With
  Banking77 and Mistral-7B's tokenizer an example is 31 tokens instead of 613 (measured, see docs/training.md),
  so ~95% less compute is spent on a label list repeated in every example.
* `listed`: the prompt also lists every label in the sorted order, for zero-shot baselines where the model has
  never seen the labels.

The completion is ` <label>` + EOS: the loss covers the label and the stop token only (TRL's completion-only loss on
prompt/completion datasets), and EOS teaches the model to stop so outputs parse as exactly one label. The label list
and the prompt format travel with the model (`labels.json`), so whoever serves it prompts it the same way.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_STYLES = ("compact", "listed")
_INSTRUCTION = "Classify the customer message into exactly one intent.\n"
PROMPT_TEMPLATES = {
    "compact": _INSTRUCTION + "Message: {text}\nIntent:",
    "listed": _INSTRUCTION + "Intents: {labels}\nMessage: {text}\nIntent:",
}
COMPLETION_TEMPLATE = " {label}{eos}"
# Tokens a free (unconstrained) answer may take beyond the longest label before generation is cut off: enough to
# see that it is wrong, not enough to waste time on a runaway answer.
FREE_ANSWER_SLACK_TOKENS = 2
# Automatic max_seq_length is rounded up to a multiple of this: tensor-core friendly and stable across small data
# changes (a 31-token Banking77 example with generation room → 64).
SEQUENCE_LENGTH_MULTIPLE = 16


class DataError(ValueError):
    """The dataset is unusable as given (bad rows, no labels, examples that do not fit max_seq_length)."""


@dataclass(frozen=True)
class Example:
    """One labelled customer message."""

    text: str
    label: str


def jsonl_rows(directory: Path) -> Iterator[tuple[str, Any]]:
    """(`path:line`, decoded JSON value) of every non-blank line of the `*.jsonl` files under `directory`, sorted by
    path so the order is reproducible; a line that is not UTF-8 or not JSON is a `DataError` naming it."""
    for path in sorted(p for p in Path(directory).rglob("*.jsonl") if p.is_file()):
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                # Decoded line by line, so a file that is not UTF-8 is refused naming the line, not with a traceback.
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}:{number}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{number}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                except RecursionError:  # e.g. [[[[...]]]] nested deeper than the decoder's recursion limit
                    raise DataError(f"{path}:{number}: not a row (JSON nested too deeply)") from None


def read_jsonl_dir(directory: Path) -> list[Example]:
    """All rows of the `*.jsonl` files under `directory` (sorted by path, so the order is reproducible)."""
    examples: list[Example] = []
    for where, row in jsonl_rows(directory):
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with text and label")
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: missing or empty 'text'")
        # bool is an int to Python, but `true` is no label; an int is (some datasets number their classes).
        if isinstance(label, bool) or not isinstance(label, str | int) or not str(label).strip():
            raise DataError(f"{where}: missing or empty 'label'")
        if not is_unicode(text) or not is_unicode(str(label)):
            # A lone surrogate (`"\ud800"` in the JSON) is not text: tokenizers and UTF-8 writers fail on it.
            raise DataError(f"{where}: 'text' or 'label' holds an unpaired surrogate (invalid Unicode)")
        examples.append(Example(text=" ".join(text.split()), label=str(label).strip()))
    return examples


def is_unicode(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (a lone surrogate from a `\\ud800` JSON escape does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def label_set(train: Iterable[Example]) -> list[str]:
    """The labels seen in train, sorted: the stable order used in every prompt."""
    labels = sorted({example.label for example in train})
    if len(labels) < 2:
        raise DataError(f"the train channel needs at least 2 distinct labels, found {labels}")
    return labels


@dataclass(frozen=True)
class PromptFormat:
    """How an example is written for the model: the prompt style and the label set (listed or learned)."""

    style: str
    labels: tuple[str, ...]

    @property
    def template(self) -> str:
        """The prompt template (`{text}`, and `{labels}` for the listed style)."""
        return PROMPT_TEMPLATES[self.style]

    def prompt(self, text: str) -> str:
        """The prompt for one message; it ends right before the label so generation starts with the label."""
        return self.template.format(labels=", ".join(self.labels), text=text)

    def completion(self, label: str, eos_token: str) -> str:
        """The supervised part: a space, the label, and EOS."""
        return COMPLETION_TEMPLATE.format(label=label, eos=eos_token)

    def describe(self, eos_token: str) -> dict[str, Any]:
        """What a server needs to prompt the trained model and parse its answer (written as labels.json)."""
        return {
            "labels": list(self.labels),
            "prompt_style": self.style,
            "prompt_template": self.template,
            "completion_template": COMPLETION_TEMPLATE.format(label="{label}", eos=eos_token),
        }


def prompt_format(style: str, labels: Sequence[str]) -> PromptFormat:
    """A `PromptFormat` for `style` (compact | listed) and the train label set."""
    if style not in PROMPT_TEMPLATES:
        raise DataError(f"prompt style {style!r} is not one of: {', '.join(PROMPT_STYLES)}")
    return PromptFormat(style=style, labels=tuple(labels))


def to_prompt_completion(examples: Sequence[Example], fmt: PromptFormat, eos_token: str):  # -> datasets.Dataset
    """A `datasets.Dataset` with `prompt` and `completion` columns, the format TRL trains completion-only."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [fmt.prompt(example.text) for example in examples],
            "completion": [fmt.completion(example.label, eos_token) for example in examples],
        }
    )


@dataclass(frozen=True)
class LengthReport:
    """Token lengths of every sequence the job processes: training prompt+completion, evaluation prompt+answer."""

    train: tuple[int, ...]
    evaluation: tuple[int, ...]
    """Each evaluation prompt plus the generation room (the longest label, EOS and the free-answer slack)."""
    generation_tokens: int

    @property
    def longest(self) -> int:
        """The longest sequence of the job: what max_seq_length must at least be."""
        return max((*self.train, *self.evaluation))

    @property
    def mean_train(self) -> float:
        """Mean training sequence length (what training compute scales with)."""
        return sum(self.train) / len(self.train)


def measure_lengths(
    tokenizer: Any, train_dataset: Any, eval_prompts: Sequence[str], generation_tokens: int
) -> LengthReport:
    """Tokenize every training prompt+completion and evaluation prompt (with BOS, as the model sees them)."""
    joined = [p + c for p, c in zip(train_dataset["prompt"], train_dataset["completion"], strict=True)]
    train = tuple(len(ids) for ids in tokenizer(joined, add_special_tokens=True)["input_ids"])
    evaluation: tuple[int, ...] = ()
    if eval_prompts:
        prompt_ids = tokenizer(list(eval_prompts), add_special_tokens=True)["input_ids"]
        evaluation = tuple(len(ids) + generation_tokens for ids in prompt_ids)
    return LengthReport(train=train, evaluation=evaluation, generation_tokens=generation_tokens)


def round_up(value: int, multiple: int) -> int:
    """`value` rounded up to a multiple of `multiple`."""
    return -(-value // multiple) * multiple


def resolve_max_seq_length(requested: int | None, lengths: LengthReport, model_limit: int | None = None) -> int:
    """The job's max_seq_length: `auto` (None) = the longest sequence rounded up; an explicit value must fit all.

    Truncation would cut the end of a training sequence, i.e. the label and EOS that carry the whole training
    signal, and would cut an evaluation answer short; so an explicit value that is too small is an error that says
    which value is needed, raised before any model is loaded. `model_limit` is the model's position limit
    (max_position_embeddings): a sequence longer than it cannot be trained at all.
    """
    needed = lengths.longest
    if model_limit is not None and needed > model_limit:
        raise DataError(
            f"the longest sequence has {needed} tokens but the model's positions end at {model_limit}; shorten the "
            "examples (prompt_style=compact keeps prompts short)"
        )
    if requested is None:
        rounded = round_up(needed, SEQUENCE_LENGTH_MULTIPLE)
        return min(rounded, model_limit) if model_limit is not None else rounded
    if requested < needed:
        too_long_train = sum(length > requested for length in lengths.train)
        too_long_eval = sum(length > requested for length in lengths.evaluation)
        raise DataError(
            f"{too_long_train} of {len(lengths.train)} training examples and {too_long_eval} of "
            f"{len(lengths.evaluation)} evaluation prompts (with {lengths.generation_tokens} tokens of answer room) "
            f"are longer than max_seq_length={requested} tokens (longest {needed}); truncation would remove their "
            f"label tokens. Set max_seq_length to at least {needed}, or to auto."
        )
    return requested


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


def select_eval_indices(total: int, count: int, seed: int) -> list[int]:
    """Positions of `count` of `total` test rows drawn with `seed` (all, in file order, when there are fewer).

    Two jobs with the same test split, count and seed evaluate the same rows: their answers pair up (the report's
    McNemar test, lambdas/paired.py)."""
    if count >= total:
        return list(range(total))
    # Sampling positions draws exactly what sampling the rows themselves would (random.sample picks by position).
    return random.Random(seed).sample(range(total), count)


def select_eval_examples(test: Sequence[Example], count: int, seed: int) -> list[Example]:
    """`count` test rows drawn with `seed` (all rows, in file order, when there are fewer)."""
    return [test[index] for index in select_eval_indices(len(test), count, seed)]


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
