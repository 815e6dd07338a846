"""Evaluation metrics on hand-made predictions, and the stdout lines SageMaker and the local runner parse."""

from __future__ import annotations

import io

import pytest

from lambdas.catalog import METRICS, parse_metric_lines
from training_code import evaluation, phases, telemetry

LABELS = ["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"]
REFERENCES = ["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"]
# right | not a label (a space for the underscore) | a wrong label | a truncated label
PREDICTIONS = [" card_arrival", "exchange rate", "card_arrival\n", "top_up"]


def test_accuracy_counts_exact_labels_and_parse_rate_counts_known_ones() -> None:
    metrics = evaluation.intent_metrics(PREDICTIONS, REFERENCES, LABELS)

    assert metrics == {"eval_intent_accuracy": 0.25, "eval_parse_rate": 0.5}


def test_rouge_scores_equal_hand_computed_values() -> None:
    metrics = evaluation.rouge_metrics(PREDICTIONS, REFERENCES)

    # Per pair (rouge-score splits on "_"): 1, 1, 0 and "top up" vs "top up failed":
    # ROUGE-1 F1 = 2PR/(P+R) with P=1, R=2/3 → 0.8; ROUGE-2: P=1, R=1/2 → 2/3; ROUGE-L as ROUGE-1 → 0.8.
    assert metrics["eval_rouge1"] == pytest.approx((1 + 1 + 0 + 0.8) / 4)
    assert metrics["eval_rouge2"] == pytest.approx((1 + 1 + 0 + 2 / 3) / 4)
    assert metrics["eval_rougeL"] == pytest.approx((1 + 1 + 0 + 0.8) / 4)


def test_bertscore_runs_offline_with_a_local_encoder(bertscore_model: str) -> None:
    encoder = evaluation.prepare_bertscore(bertscore_model, token=None)

    same = evaluation.bertscore_f1(REFERENCES, REFERENCES, encoder, "cpu")
    different = evaluation.bertscore_f1(["", "pin_blocked", "x", "card_arrival"], REFERENCES, encoder, "cpu")

    assert encoder.num_layers == 6  # the local MiniLM's last layer
    assert same == pytest.approx(1.0, abs=1e-4)
    assert different < same


def test_an_encoder_that_cannot_be_fetched_fails_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as a job without Hub access

    with pytest.raises(evaluation.EvaluationSetupError, match=r"bertscore_model='roberta-large' cannot be fetched"):
        evaluation.prepare_bertscore("roberta-large", token=None)


def test_bertscore_none_is_skipped_and_recorded_as_missing() -> None:
    assert evaluation.prepare_bertscore("none", token=None) is None

    scores = evaluation.score(PREDICTIONS, REFERENCES, LABELS, 2.0, bertscore=None, device="cpu")

    assert scores.metrics["eval_inference_seconds"] == 2.0
    assert scores.metrics["eval_seconds_per_sample"] == 0.5
    assert scores.metrics["eval_samples"] == 4
    assert scores.metrics["eval_intent_accuracy"] == 0.25
    assert "eval_bertscore_f1" not in scores.metrics
    assert scores.missing == {"eval_bertscore_f1": "skipped: bertscore_model=none"}


def test_a_metric_that_fails_is_recorded_as_missing_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, bertscore_model: str
) -> None:
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(evaluation, "bertscore_f1", out_of_memory)
    encoder = evaluation.BertScoreEncoder(name="roberta-large", path=bertscore_model, num_layers=6)

    scores = evaluation.score(PREDICTIONS, REFERENCES, LABELS, 2.0, bertscore=encoder, device="cpu")

    assert scores.missing == {"eval_bertscore_f1": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"}
    assert scores.metrics["eval_rouge1"] > 0  # the other metrics are still there


def test_metric_lines_parse_with_the_catalog_regexes() -> None:
    metrics = {
        "dataset_train_rows": 10003,
        "dataset_test_rows": 3080,
        "train_loss": 1e-05,
        "train_tokens_per_second": 12345.678901,
        "train_padding_fraction": 0.0,
        "train_runtime_seconds": 3.5,
        "peak_memory_gb": 0.62,
        "eval_intent_accuracy": 0.9312,
        "eval_parse_rate": 1.0,
        "eval_exact_match": 0.5,
        "eval_rouge1": 0.5,
        "eval_rouge2": float("nan"),
        "eval_rougeL": 0.25,
        "eval_bertscore_f1": 0.875,
        "eval_inference_seconds": 120.0,
        "eval_seconds_per_sample": 0.24,
        "eval_samples": 500,
        "eval_inference_seconds_merged": 80.0,
        "eval_seconds_per_sample_merged": 0.16,
    }
    out = io.StringIO()

    telemetry.print_final_metrics(metrics, out)
    print(telemetry.metric_line({"train_step": 10, "train_loss": 2.5}), file=out)
    parsed = parse_metric_lines(out.getvalue())

    # The time_* / checkpoint_* metrics are printed per phase (training_code/phases.py), not with the final ones
    # nor with the resolved hyperparameters (printed once when decided: telemetry.print_resolved_metrics).
    assert set(parsed) == {metric.name for metric in METRICS} - set(phases.PHASE_METRICS) - set(
        telemetry.RESOLVED_METRICS
    )
    assert parsed["train_loss"] == 2.5  # the last occurrence wins, as in SageMaker
    assert parsed["train_tokens_per_second"] == pytest.approx(12345.7)
    assert parsed["eval_samples"] == 500
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["dataset_train_rows=10003;", "dataset_test_rows=3080;", "train_loss=1e-05;"]
    assert "eval_rouge2=nan;" in out.getvalue()
    assert "eval_inference_seconds_merged=80;" in out.getvalue().splitlines()
    assert "eval_seconds_per_sample_merged=0.16;" in out.getvalue().splitlines()


def test_metrics_json_lists_missing_metrics_with_their_reasons(tmp_path) -> None:
    import json

    telemetry.write_metrics_json({"train_loss": 0.5}, {"eval_bertscore_f1": "RuntimeError: boom"}, tmp_path)

    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "train_loss": 0.5,
        "missing": {"eval_bertscore_f1": "RuntimeError: boom"},
    }


def test_label_trie_allows_only_label_continuations_then_eos() -> None:
    eos = 0
    trie = evaluation.LabelTrie([[5, 6, eos], [5, 7, eos], [8, eos]], eos)

    assert sorted(trie.allowed([])) == [5, 8]
    assert sorted(trie.allowed([5])) == [6, 7]
    assert trie.allowed([5, 6]) == [eos]
    assert trie.allowed([9]) == [eos]  # off the trie: stop


@pytest.mark.parametrize("tokenizer_config", [False, True], ids=["no-tokenizer-config", "config-without-max-length"])
def test_bertscore_is_reported_with_an_encoder_configured_as_roberta_large(tmp_path, tokenizer_config: bool) -> None:
    # Given a RoBERTa-type encoder saved as roberta-large is: no model_max_length (transformers 5 reports 1e30,
    # which bert-score passes to the tokenizers backend as the truncation length)
    from tests.support.tiny_models import build_roberta_encoder

    corpus = [label.replace("_", " ") for label in LABELS] * 10 + ["my card has not arrived", "what is the rate"]
    encoder_dir = build_roberta_encoder(tmp_path / "roberta", corpus, tokenizer_config=tokenizer_config)

    # When it is prepared before training and scores predictions after
    encoder = evaluation.prepare_bertscore(str(encoder_dir), token=None)
    scores = evaluation.score(PREDICTIONS, REFERENCES, LABELS, 2.0, bertscore=encoder, device="cpu")

    # Then BERTScore is reported, truncating at roberta-large's 512 tokens, and the encoder's files are untouched
    assert "eval_bertscore_f1" not in scores.missing, scores.missing
    assert 0.0 < scores.metrics["eval_bertscore_f1"] <= 1.0
    print(f"eval_bertscore_f1={scores.metrics['eval_bertscore_f1']:.4f} (tokenizer_config={tokenizer_config})")
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(encoder.path).model_max_length == 512
    assert (encoder_dir / "tokenizer_config.json").is_file() == tokenizer_config
