"""Dataset reading, prompt formatting, length checks, supervision checks and the bundled dataset itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import DATASET_DIR, dataset_rows, run_main
from training_code import data

# A few of the 77 Banking77 intent names (PolyAI/banking77).
BANKING77_NAMES = {
    "card_arrival",
    "lost_or_stolen_card",
    "exchange_rate",
    "top_up_failed",
    "balance_not_updated_after_bank_transfer",
    "pin_blocked",
    "card_payment_fee_charged",
    "declined_card_payment",
}


def test_bundled_dataset_has_held_out_phrasings_of_banking77_intents() -> None:
    train, test = dataset_rows("train"), dataset_rows("test")

    labels = {row["label"] for row in train}
    assert len(labels) >= 5
    assert labels <= BANKING77_NAMES
    assert {row["label"] for row in test} == labels
    assert len(train) + len(test) >= 300
    assert not {row["text"] for row in test} & {row["text"] for row in train}


def test_prompt_lists_the_labels_in_one_stable_order_and_ends_before_the_label() -> None:
    examples = data.read_jsonl_dir(DATASET_DIR)
    labels = data.label_set(examples)

    prompt = data.build_prompt("Where is my card?", labels)

    assert labels == sorted(labels)
    assert f"Intents: {', '.join(labels)}\n" in prompt
    assert prompt.endswith("Message: Where is my card?\nIntent:")
    assert data.completion_for("card_arrival", "</s>") == " card_arrival</s>"


def test_bad_rows_are_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "hi", "label": "x"}\n{"text": "", "label": "y"}\n')

    with pytest.raises(data.DataError, match=r"a.jsonl:2: missing or empty 'text'"):
        data.read_jsonl_dir(tmp_path)


def test_examples_longer_than_max_seq_length_are_an_error_not_a_silent_cut(tiny_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    examples = data.read_jsonl_dir(DATASET_DIR)
    dataset = data.to_prompt_completion(examples, data.label_set(examples), tokenizer.eos_token)
    fits = data.check_sequence_lengths(tokenizer, dataset, max_seq_length=1024)

    with pytest.raises(data.DataError, match=rf"Set max_seq_length to at least {fits.longest}"):
        data.check_sequence_lengths(tokenizer, dataset, max_seq_length=fits.longest - 1)


def test_a_run_whose_examples_do_not_fit_fails_before_training(tiny_models: dict[str, Path], make_job) -> None:
    job = make_job()

    result = run_main(job, job.argv(tiny_models["llama"], max_seq_length=40))

    assert result.exit_code == 1
    assert "truncation would remove their label tokens" in (job.output_dir / "failure").read_text()


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
