"""Instruction and chat fine-tuning data (task=sft): rows → token ids with loss on the answers, evaluation prompts.

Two row formats, one per line of the `*.jsonl` channels (a dataset may mix them):

* `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`, a chat that ends with an assistant
  turn. It is written with the tokenizer's chat template (the model's own when it has one; else
  `FALLBACK_CHAT_TEMPLATE`, which is then saved with the tokenizer so a server prompts the model the same way).
  Loss is on the assistant turns only (their text and the template's end-of-turn tokens).
* `{"prompt": "...", "completion": "..."}`: plain text, no template; loss on the completion and EOS (the same
  completion-only loss as the classification task's prompt/completion rows).

Each row is tokenized here, segment by segment, into `input_ids` and a `completion_mask` (1 on supervised tokens):
TRL's SFTTrainer takes such a pre-tokenized dataset as is and builds its labels from the mask. Rendering the chat one
turn at a time (`render(messages[:i], add_generation_prompt=True)` is a prefix of `render(messages[:i+1])`) finds
where each assistant answer starts and ends in the template's own text, whatever the template.

Evaluation asks for the last assistant turn (or the completion): the prompt is everything before it, the reference is
its text, and greedy generation answers; exact match (whitespace-normalised) is the accuracy, with ROUGE and
BERTScore of the answer (evaluation.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_code.data import FREE_ANSWER_SLACK_TOKENS, DataError, LengthReport, is_unicode, jsonl_rows

ROLES = ("system", "user", "assistant")
ASSISTANT = "assistant"
MESSAGES_FORMAT = "messages"
PROMPT_COMPLETION_FORMAT = "prompt_completion"
# A template for tokenizers without one (base models, the tiny test models): `Role: content` lines, each assistant
# turn closed by EOS so the model learns to stop and generation ends there.
FALLBACK_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}"
    # The newline as an expression: transformers renders templates with trim_blocks, which eats one after a tag.
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# Generation room beyond the longest answer: an answer that runs on is cut here (and is wrong), a right one fits.
ANSWER_SLACK_TOKENS = FREE_ANSWER_SLACK_TOKENS


@dataclass(frozen=True)
class SftExample:
    """One instruction/chat row. `messages` for chats; `prompt`/`completion` for plain rows (messages empty)."""

    messages: tuple[dict[str, str], ...] = ()
    prompt: str = ""
    completion: str = ""

    @property
    def format(self) -> str:
        """messages | prompt_completion."""
        return MESSAGES_FORMAT if self.messages else PROMPT_COMPLETION_FORMAT

    @property
    def label(self) -> str:
        """The reference answer: the last assistant turn, or the completion (named like a classification label, so
        evaluation reads references from either task's examples alike)."""
        return self.messages[-1]["content"] if self.messages else self.completion

    @property
    def text(self) -> str:
        """What the answer responds to, for logs: the last user turn, or the prompt."""
        if not self.messages:
            return self.prompt
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


def _string(value: Any, where: str, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field {field!r} is empty")
    if not is_unicode(value):
        raise DataError(f"{where}: field {field!r} holds an unpaired surrogate (invalid Unicode)")
    return value


def _parse_prompt_completion(row: dict[str, Any], where: str) -> SftExample:
    for field in ("prompt", "completion"):
        if field not in row:
            raise DataError(f"{where}: field {field!r} is missing")
    # A prompt may be empty (pure continuation); an empty completion would teach nothing.
    return SftExample(
        prompt=_string(row["prompt"], where, "prompt", allow_empty=True),
        completion=_string(row["completion"], where, "completion"),
    )


def _parse_message(message: Any, where: str, field: str) -> dict[str, str]:
    if not isinstance(message, dict):
        raise DataError(f"{where}: field {field!r} must be an object with 'role' and 'content'")
    role = message.get("role")
    if role not in ROLES:
        raise DataError(f"{where}: field '{field}.role' is {role!r}; allowed: {', '.join(ROLES)}")
    return {
        "role": role,
        "content": _string(message.get("content"), where, f"{field}.content", allow_empty=role != ASSISTANT),
    }


def _parse_messages(messages: Any, where: str) -> SftExample:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} objects")
    parsed = [_parse_message(message, where, f"messages[{index}]") for index, message in enumerate(messages)]
    if parsed[-1]["role"] != ASSISTANT:
        raise DataError(
            f"{where}: field 'messages[{len(parsed) - 1}].role' is {parsed[-1]['role']!r}; the last message must be "
            "the assistant's answer (what is trained and evaluated)"
        )
    return SftExample(messages=tuple(parsed))


def parse_row(row: Any, where: str) -> SftExample:
    """One JSON row as an `SftExample`; `DataError` naming the line (`where`) and the field at fault."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with 'messages', or with 'prompt' and 'completion'")
    has_messages = "messages" in row
    has_plain = "prompt" in row or "completion" in row
    if has_messages == has_plain:
        raise DataError(
            f"{where}: a row has either 'messages' or 'prompt' and 'completion' (found: {', '.join(sorted(row))})"
        )
    return _parse_prompt_completion(row, where) if has_plain else _parse_messages(row["messages"], where)


def read_sft_dir(directory: Path) -> list[SftExample]:
    """Every row of the `*.jsonl` files under `directory`, validated (sorted by path: a reproducible order)."""
    return [parse_row(row, where) for where, row in jsonl_rows(directory)]


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give a tokenizer without a chat template `FALLBACK_CHAT_TEMPLATE`; True when it had its own."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return False


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def _adds_bos(tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a")["input_ids"]
    return bos is not None and bool(ids) and ids[0] == bos


def segments(tokenizer: Any, example: SftExample) -> list[tuple[str, bool]]:
    """The row's text as (segment, supervised) pairs, in order; supervised segments are the answers.

    Plain rows: the prompt (with BOS when the tokenizer prepends one), then the completion. Chats: the template's
    text up to each assistant turn's start, then that turn up to where the next prompt starts."""
    if not example.messages:
        bos = tokenizer.bos_token if _adds_bos(tokenizer) else ""
        return [(bos + example.prompt, False), (example.completion, True)]
    parts: list[tuple[str, bool]] = []
    consumed = 0
    for index, message in enumerate(example.messages):
        if message["role"] != ASSISTANT:
            continue
        prompt = _render(tokenizer, example.messages[:index], add_generation_prompt=True)
        full = _render(tokenizer, example.messages[: index + 1], add_generation_prompt=False)
        if not full.startswith(prompt) or not prompt.startswith(_rendered_so_far(parts)):
            raise DataError(
                f"the chat template does not render turn {index} as a continuation of the turns before it, so the "
                "assistant's tokens cannot be located; use prompt/completion rows for this model"
            )
        # The answer up to its end-of-turn text is trained; whitespace the template writes after it is not (it is
        # the next prompt's start, or nothing generation would ever need).
        answer = full[len(prompt) :].rstrip()
        parts += [(prompt[consumed:], False), (answer, True)]
        consumed = len(prompt) + len(answer)
    return parts


def _rendered_so_far(parts: Sequence[tuple[str, bool]]) -> str:
    return "".join(text for text, _ in parts)


def tokenize(tokenizer: Any, example: SftExample) -> dict[str, list[int]]:
    """`input_ids` and `completion_mask` (1 = trained on) of one row, segment by segment.

    A plain row's completion is closed by EOS (so the model learns to stop); a chat's answers end with the
    template's own end-of-turn text."""
    input_ids: list[int] = []
    mask: list[int] = []
    for text, supervised in segments(tokenizer, example):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        input_ids += ids
        mask += [int(supervised)] * len(ids)
    if not example.messages:
        input_ids.append(tokenizer.eos_token_id)
        mask.append(1)
    return {"input_ids": input_ids, "completion_mask": mask}


def eval_prompt(tokenizer: Any, example: SftExample) -> str:
    """The text before the evaluated answer (tokenized without special tokens: it already holds them)."""
    if not example.messages:
        return _rendered_so_far(segments(tokenizer, example)[:1])
    return _render(tokenizer, example.messages[:-1], add_generation_prompt=True)


def stop_token_ids(tokenizer: Any, examples: Sequence[SftExample]) -> list[int]:
    """Tokens that end an answer: EOS, and a chat template's end-of-turn token when it is another special token
    (ChatML's `<|im_end|>`, Llama 3's `<|eot_id|>`): generation must stop where the trained answers stopped."""
    stops = [tokenizer.eos_token_id]
    chat = next((example for example in examples if example.messages), None)
    if chat is not None:
        answer = segments(tokenizer, chat)[-1][0]
        tail = answer.split(chat.label, 1)[-1]  # what the template writes after the answer's text
        ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
        special = set(getattr(tokenizer, "all_special_ids", []) or []) | set(
            getattr(tokenizer, "added_tokens_decoder", {}) or {}
        )
        if ids and ids[0] in special and ids[0] not in stops:
            stops.append(ids[0])
    return stops


@dataclass(frozen=True)
class PreparedSft:
    """What training and evaluation need from the rows, computed before any model is loaded."""

    train_dataset: Any  # datasets.Dataset with input_ids and completion_mask
    eval_prompts: list[str]
    max_new_tokens: int
    lengths: LengthReport
    stop_token_ids: list[int]
    model_card: dict[str, Any]


def prepare(tokenizer: Any, train: Sequence[SftExample], evaluation: Sequence[SftExample]) -> PreparedSft:
    """Tokenize the training rows, write the evaluation prompts and size the generation room (the longest answer
    of either split plus slack)."""
    from datasets import Dataset

    own_template = ensure_chat_template(tokenizer)
    tokenized = [tokenize(tokenizer, example) for example in train]
    for index, row in enumerate(tokenized):
        if 1 not in row["completion_mask"]:
            raise DataError(f"training example {index} has no answer tokens to train on")
    answers = [example.label for example in (*train, *evaluation)]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    # +1: the end-of-answer token; the slack lets a wrong, longer answer show that it is wrong.
    max_new_tokens = max(len(ids) for ids in answer_ids) + 1 + ANSWER_SLACK_TOKENS
    prompts = [eval_prompt(tokenizer, example) for example in evaluation]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    lengths = LengthReport(
        train=tuple(len(row["input_ids"]) for row in tokenized),
        evaluation=tuple(len(ids) + max_new_tokens for ids in prompt_ids),
        generation_tokens=max_new_tokens,
    )
    formats = sorted({example.format for example in train})
    model_card = {
        "task": "sft",
        "formats": formats,
        "chat_template": "the model's own" if own_template else "fallback (saved with the tokenizer)",
        "note": "messages rows: prompt with tokenizer.apply_chat_template(messages, add_generation_prompt=True); "
        "prompt/completion rows: the prompt as is. Greedy decoding; the answer ends at EOS or the end-of-turn token.",
    }
    return PreparedSft(
        train_dataset=Dataset.from_dict(
            {
                "input_ids": [row["input_ids"] for row in tokenized],
                "completion_mask": [row["completion_mask"] for row in tokenized],
            }
        ),
        eval_prompts=prompts,
        max_new_tokens=max_new_tokens,
        lengths=lengths,
        stop_token_ids=stop_token_ids(tokenizer, train),
        model_card=model_card,
    )


def assert_answers_supervised(prepared: Any) -> None:
    """Every row TRL prepared keeps unmasked answer tokens (its labels are built from our completion_mask)."""
    for index, labels in enumerate(prepared["labels"]):
        if all(token == -100 for token in labels):
            raise DataError(f"training example {index} has no unmasked answer tokens after preparation")
