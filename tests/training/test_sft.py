"""Instruction/chat fine-tuning (task=sft): row validation, answer-only loss masks, chat templates, and a whole run
with generative metrics and per-sample predictions, on a tiny model built offline from the shipped chat dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.training import REPO_ROOT, Job, run_main
from training_code import data, sft

CHAT_DIR = REPO_ROOT / "examples" / "datasets" / "store-help-mini"
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_rows(folder: Path, rows: list[object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "hi", "label": "x"}, "either 'messages' or 'prompt' and 'completion'"),
        ({"messages": [], "prompt": "a", "completion": "b"}, "either 'messages'"),
        ({"prompt": "a"}, "field 'completion' is missing"),
        ({"prompt": "a", "completion": " "}, "field 'completion' is empty"),
        ({"messages": "hello"}, "field 'messages' must be a non-empty list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "field 'messages[0].role' is 'bot'"),
        ({"messages": [{"role": "user", "content": 3}]}, "field 'messages[0].content' must be a string"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "field 'messages[0].role' is 'user'; the last message"),
        ([1, 2], "expected an object"),
    ],
)
def test_a_bad_row_is_refused_naming_its_line_and_field(tmp_path: Path, row: object, message: str) -> None:
    # Given a valid first row and a bad second one
    good = {"prompt": "Q:", "completion": " A"}
    folder = write_rows(tmp_path / "train", [good, row])
    # When the channel is read, Then the error names the file, line 2 and the field at fault
    with pytest.raises(data.DataError, match=r"rows\.jsonl:2: ") as error:
        sft.read_sft_dir(folder)
    assert message in str(error.value)


@pytest.fixture(scope="module")
def chat_channels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped chat dataset's splits, each in a channel folder of its own (readers take a folder)."""
    root = tmp_path_factory.mktemp("chat-channels")
    channels = {}
    for split in ("train", "test"):
        channels[split] = root / split
        channels[split].mkdir()
        shutil.copy(CHAT_DIR / f"{split}.jsonl", channels[split] / f"{split}.jsonl")
    return channels


def test_the_shipped_chat_dataset_reads_in_both_formats(chat_channels: dict[str, Path]) -> None:
    train = sft.read_sft_dir(chat_channels["train"])
    assert len(train) == 40
    assert {example.format for example in train} == {sft.MESSAGES_FORMAT, sft.PROMPT_COMPLETION_FORMAT}
    assert all(example.label for example in train)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory, chat_channels: dict[str, Path]) -> Path:
    """A tiny Llama whose tokenizer knows the chat dataset's words (no chat template of its own)."""
    from finetune.local.tiny_model import build_tiny_model

    corpus = ["System:", "User:", "Assistant:"]
    for channel in chat_channels.values():
        for example in sft.read_sft_dir(channel):
            corpus += [m["content"] for m in example.messages] + [example.prompt, example.completion]
    return build_tiny_model("llama", tmp_path_factory.mktemp("chat-tiny"), [text for text in corpus if text])


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_loss_covers_the_assistant_turns_only_with_the_fallback_template(chat_model: Path) -> None:
    # Given a two-turn chat and a tokenizer without a chat template
    tokenizer = _tokenizer(chat_model)
    chat = sft.SftExample(
        messages=(
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "When are you open?"},
            {"role": "assistant", "content": "We are open 9am to 6pm, Monday to Saturday."},
        )
    )
    # When it is tokenized
    assert not sft.ensure_chat_template(tokenizer)
    row = sft.tokenize(tokenizer, chat)
    supervised = [i for i, bit in zip(row["input_ids"], row["completion_mask"], strict=True) if bit]
    # Then exactly the two answers and their EOS carry loss, and the prompt for the last answer ends before it
    assert tokenizer.decode(supervised) == " Hello! How can I help?</s> We are open 9am to 6pm, Monday to Saturday.</s>"
    assert sft.eval_prompt(tokenizer, chat).endswith("User: When are you open?\nAssistant:")
    assert sft.stop_token_ids(tokenizer, [chat]) == [tokenizer.eos_token_id]


def test_a_prompt_completion_row_trains_on_the_completion_and_eos(chat_model: Path) -> None:
    tokenizer = _tokenizer(chat_model)
    row = sft.tokenize(tokenizer, sft.SftExample(prompt="Customer: Where is my order?\nAgent:", completion=" Soon."))
    supervised = [i for i, bit in zip(row["input_ids"], row["completion_mask"], strict=True) if bit]
    assert tokenizer.decode(supervised) == " Soon.</s>"
    assert row["input_ids"][0] == tokenizer.bos_token_id  # the tokenizer prepends BOS, as when it encodes a prompt


def test_the_models_own_chat_template_is_used_and_its_end_of_turn_stops_generation(chat_model: Path) -> None:
    # Given a tokenizer with a ChatML template whose end of turn is a special token other than EOS
    tokenizer = _tokenizer(chat_model)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML_TEMPLATE
    chat = sft.SftExample(messages=({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}))
    # When the row is tokenized
    assert sft.ensure_chat_template(tokenizer)
    row = sft.tokenize(tokenizer, chat)
    supervised = [i for i, bit in zip(row["input_ids"], row["completion_mask"], strict=True) if bit]
    # Then the answer and its end-of-turn token are trained, and generation stops at that token too
    assert tokenizer.decode(supervised) == "Hello<|im_end|>"
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert sft.stop_token_ids(tokenizer, [chat]) == [tokenizer.eos_token_id, end_of_turn]
    assert sft.eval_prompt(tokenizer, chat) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_an_sft_job_trains_and_reports_generative_metrics_and_per_sample_predictions(
    chat_model: Path, tmp_path: Path, bertscore_model: str
) -> None:
    # Given a job whose channels hold the shipped chat dataset, evaluating the whole test split
    job = Job(tmp_path / "job")
    for split in ("train", "test"):
        channel = job.root / "input" / split
        channel.mkdir(parents=True)
        shutil.copy(CHAT_DIR / f"{split}.jsonl", channel / f"{split}.jsonl")
    argv = job.argv(
        chat_model,
        task="sft",
        approach="full",
        max_steps=6,
        eval_samples="all",
        per_device_batch_size=8,
        bertscore_model=bertscore_model,
    )
    # When it runs
    result = run_main(job, argv)
    # Then it succeeds with the sft metrics (no intent accuracy, no parse rate: there is no label set)
    assert result.exit_code == 0, (job.output_dir / "failure").read_text() if result.exit_code else ""
    metrics = job.metrics()
    for name in ("eval_exact_match", "eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bertscore_f1"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["eval_samples"] == 16 and metrics["eval_inference_seconds"] > 0
    assert "eval_intent_accuracy" not in metrics and "eval_parse_rate" not in metrics
    assert "eval_exact_match=" in result.stdout
    # And every test row has its answer in predictions.jsonl, in the output data (what the report reads)
    rows = [json.loads(line) for line in (job.output_data_dir / "predictions.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(16))
    assert set(rows[0]) == {"index", "reference", "prediction", "correct"}
    assert sum(row["correct"] for row in rows) / 16 == pytest.approx(metrics["eval_exact_match"])
    # And the fallback chat template was saved with the tokenizer, so a server prompts the model the same way
    assert _tokenizer(job.model_dir).chat_template == sft.FALLBACK_CHAT_TEMPLATE
