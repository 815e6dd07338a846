"""Dataset reading, prompt formatting, length checks, supervision checks and the bundled dataset itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.training import DATASET_DIR, dataset_rows, run_main
from training_code import data
from training_code.banking77 import LABELS as BANKING77_LABELS


def test_banking77_has_77_distinct_intent_names() -> None:
    assert len(BANKING77_LABELS) == 77
    assert len(set(BANKING77_LABELS)) == 77


def test_bundled_dataset_has_held_out_phrasings_of_banking77_intents() -> None:
    train, test = dataset_rows("train"), dataset_rows("test")

    labels = {row["label"] for row in train}
    assert len(labels) >= 5
    assert labels <= set(BANKING77_LABELS)
    assert {row["label"] for row in test} == labels
    assert len(train) + len(test) >= 300
    assert not {row["text"] for row in test} & {row["text"] for row in train}


def test_the_compact_prompt_holds_the_message_only_and_ends_before_the_label() -> None:
    labels = data.label_set(data.read_jsonl_dir(DATASET_DIR))
    fmt = data.prompt_format("compact", labels)

    prompt = fmt.prompt("Where is my card?")

    assert not any(label in prompt for label in labels)
    assert prompt == "Classify the customer message into exactly one intent.\nMessage: Where is my card?\nIntent:"
    assert fmt.completion("card_arrival", "</s>") == " card_arrival</s>"


def test_the_listed_prompt_lists_the_labels_in_one_stable_order() -> None:
    labels = data.label_set(data.read_jsonl_dir(DATASET_DIR))

    prompt = data.prompt_format("listed", labels).prompt("Where is my card?")

    assert labels == sorted(labels)
    assert f"Intents: {', '.join(labels)}\n" in prompt
    assert prompt.endswith("Message: Where is my card?\nIntent:")


def test_the_prompt_format_travels_as_a_description_a_server_can_use() -> None:
    fmt = data.prompt_format("compact", ["b", "a"])

    described = fmt.describe("</s>")

    assert described == {
        "labels": ["b", "a"],
        "prompt_style": "compact",
        "prompt_template": "Classify the customer message into exactly one intent.\nMessage: {text}\nIntent:",
        "completion_template": " {label}</s>",
    }
    assert described["prompt_template"].format(text="hi") == fmt.prompt("hi")


def test_bad_rows_are_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "hi", "label": "x"}\n{"text": "", "label": "y"}\n')

    with pytest.raises(data.DataError, match=r"a.jsonl:2: missing or empty 'text'"):
        data.read_jsonl_dir(tmp_path)


def lengths(train: list[int], evaluation: list[int], generation_tokens: int = 4) -> data.LengthReport:
    return data.LengthReport(train=tuple(train), evaluation=tuple(evaluation), generation_tokens=generation_tokens)


def test_auto_max_seq_length_is_the_longest_train_or_evaluation_sequence_rounded_up() -> None:
    assert data.resolve_max_seq_length(None, lengths([20, 31], [25])) == 32
    assert data.resolve_max_seq_length(None, lengths([20, 31], [33])) == 48  # an evaluation prompt + its answer room
    assert data.resolve_max_seq_length(None, lengths([613], [])) == 624
    assert data.resolve_max_seq_length(None, lengths([1001], []), model_limit=1004) == 1004  # not past the model


def test_an_explicit_max_seq_length_that_fits_is_kept() -> None:
    assert data.resolve_max_seq_length(512, lengths([31], [35])) == 512


def test_an_explicit_max_seq_length_that_is_too_small_names_the_value_needed() -> None:
    with pytest.raises(data.DataError) as raised:
        data.resolve_max_seq_length(30, lengths([20, 31, 32], [29, 40]))

    assert str(raised.value) == (
        "2 of 3 training examples and 1 of 2 evaluation prompts (with 4 tokens of answer room) are longer than "
        "max_seq_length=30 tokens (longest 40); truncation would remove their label tokens. "
        "Set max_seq_length to at least 40, or to auto."
    )


def test_sequences_longer_than_the_model_supports_are_an_error() -> None:
    with pytest.raises(
        data.DataError, match="the longest sequence has 640 tokens but the model's positions end at 512"
    ):
        data.resolve_max_seq_length(None, lengths([613], [640]), model_limit=512)


def test_lengths_count_the_tokens_the_model_sees(tiny_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    examples = data.read_jsonl_dir(DATASET_DIR)
    fmt = data.prompt_format("compact", data.label_set(examples))
    dataset = data.to_prompt_completion(examples[:3], fmt, tokenizer.eos_token)

    report = data.measure_lengths(tokenizer, dataset, [fmt.prompt(examples[0].text)], generation_tokens=5)

    joined = dataset["prompt"][0] + dataset["completion"][0]
    assert report.train[0] == len(tokenizer(joined)["input_ids"])  # BOS included
    assert report.evaluation == (len(tokenizer(fmt.prompt(examples[0].text))["input_ids"]) + 5,)


def test_a_run_whose_examples_do_not_fit_fails_before_training(tiny_models: dict[str, Path], make_job) -> None:
    job = make_job()

    result = run_main(job, job.argv(tiny_models["llama"], max_seq_length=16))

    assert result.exit_code == 1
    failure = job.failure()
    assert failure.startswith("DataError: ")
    assert "truncation would remove their label tokens. Set max_seq_length to at least " in failure
    assert not job.model_dir.exists()


def test_prepared_rows_without_supervised_tokens_or_final_eos_are_rejected() -> None:
    eos = 2
    data.assert_completions_supervised({"labels": [[-100, -100, 7, eos]]}, eos)

    with pytest.raises(data.DataError, match="no unmasked label tokens"):
        data.assert_completions_supervised({"labels": [[-100, -100]]}, eos)
    with pytest.raises(data.DataError, match="does not end with an unmasked EOS"):
        data.assert_completions_supervised({"labels": [[-100, 7, 8]]}, eos)


def test_padding_counter_measures_the_padding_of_built_batches() -> None:
    import torch

    def pad_to_longest(examples: list[dict]) -> dict:
        longest = max(len(example["input_ids"]) for example in examples)
        return {"input_ids": torch.zeros(len(examples), longest)}

    counter = data.PaddingCounter(pad_to_longest)
    counter([{"input_ids": [1, 2, 3, 4]}, {"input_ids": [1, 2]}])  # 6 real of 8

    assert counter.padding_fraction == pytest.approx(0.25)


def test_eval_selection_is_seeded_and_capped() -> None:
    examples = [data.Example(text=str(i), label="a") for i in range(10)]

    assert data.select_eval_examples(examples, 3, seed=1) == data.select_eval_examples(examples, 3, seed=1)
    assert data.select_eval_examples(examples, 500, seed=1) == examples


def test_write_jsonl_produces_contract_rows(tmp_path: Path) -> None:
    path = tmp_path / "out" / "train.jsonl"

    data.write_jsonl(path, [data.Example(text="Où est ma carte ?", label="card_arrival")])

    assert json.loads(path.read_text()) == {"text": "Où est ma carte ?", "label": "card_arrival"}
