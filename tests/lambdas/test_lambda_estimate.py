"""Expected cost: hand-computed numbers for the estimate's formula, and Plan's expected-cost fields."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas import aws, catalog, estimate, plan
from tests.lambdas.lambda_testkit import BUCKET, study_jobs

SEVEN_B = 7_000_000_000


def expected(**overrides: Any) -> estimate.Expected:
    values: dict[str, Any] = {
        "parameters": SEVEN_B,
        "approach": "lora",
        "instance_type": "ml.g5.2xlarge",
        "instance_count": 1,
        "epochs": 1,
        "max_steps": -1,
        "batch_size": 8,
        "prompt_style": "compact",
        "max_seq_length": "auto",
        "eval_samples": 500,
        "eval_batch_size": 8,
        "spot": True,
        "hourly_price_usd": 1.515,
        "rows": 10_003,
    }
    return estimate.expected_job_cost(**{**values, **overrides})


def test_lora_on_one_a10g_matches_the_hand_computed_figures() -> None:
    # Given a 7B LoRA job on one A10G over Banking77's 10,003 compact examples, spot
    result = expected()
    # Then, by hand: tokens = 10,003 x 34.3 = 343,102.9; LoRA with gradient checkpointing = (4 + 2) x 7e9 FLOPs/token
    assert result.train_tokens == pytest.approx(343_102.9)
    assert result.train_flops == pytest.approx(343_102.9 * 4.2e10)
    # training = 1.44103218e16 / (1 GPU x 70e12 x 0.25) = 823.447 s
    assert result.training_hours * 3600 == pytest.approx(823.4474, rel=1e-6)
    # evaluation = prefill 500 x 34.3 x 2 x 7e9 / 1.75e13 = 13.72 s + decoding ceil(500 / 8) x 8 = 504 steps x 14e9 B
    # / (600e9 x 0.6) = 19.6 s
    assert result.evaluation_hours * 3600 == pytest.approx(13.72 + 19.6)
    # overhead = 240 s startup + 14e9 B / 100e6 B/s = 380 s
    assert result.overhead_hours * 3600 == pytest.approx(380)
    # total 1,236.767 s = 0.343546 h; x $1.515 = $0.52047 on demand; x 0.3 = $0.15614 expected on spot
    assert result.hours == pytest.approx(1236.7674 / 3600, rel=1e-6)
    assert result.on_demand_cost_usd == pytest.approx(0.520470, rel=1e-5)
    assert result.cost_usd == pytest.approx(0.156141, rel=1e-5)
    assert result.assumptions["flops_per_token"] == "6N" and result.assumptions["gradient_checkpointing"] is True
    assert result.assumptions["spot_price_fraction"] == 0.3


def test_full_fine_tuning_on_four_gpus_counts_8n_and_uploads_the_model() -> None:
    # Given a 7B full fine-tune on a 4-GPU g5.12xlarge, on demand
    result = expected(approach="full", instance_type="ml.g5.12xlarge", spot=False, hourly_price_usd=7.09)
    # Then training = 343,102.9 x 8 x 7e9 / (4 x 70e12 x 0.35) = 196.059 s; prefill at 0.35 = 9.8 s, decoding 19.6 s;
    # overhead = 240 + (download + upload) 2 x 140 s = 520 s; total 745.459 s
    assert result.training_hours * 3600 == pytest.approx(196.0588, rel=1e-6)
    assert result.evaluation_hours * 3600 == pytest.approx(9.8 + 19.6)
    assert result.overhead_hours * 3600 == pytest.approx(520)
    assert result.on_demand_cost_usd == pytest.approx(745.4588 / 3600 * 7.09, rel=1e-6)
    assert result.cost_usd == result.on_demand_cost_usd  # on demand: no spot discount
    assert result.assumptions["flops_per_token"] == "8N"


def test_max_steps_bounds_the_tokens_and_epochs_multiply_them() -> None:
    # max_steps: 100 steps x batch 8 x 1 GPU x 34.3 tokens
    assert expected(max_steps=100).train_tokens == pytest.approx(100 * 8 * 34.3)
    assert expected(epochs=3).train_tokens == pytest.approx(3 * 343_102.9)
    # An explicit max_seq_length truncates the mean example
    assert expected(prompt_style="listed", max_seq_length=512).assumptions["tokens_per_example"] == 512


def test_small_models_on_cpu_skip_checkpointing_and_an_untrained_approach_costs_only_evaluation() -> None:
    tiny = expected(parameters=100_000, instance_type="ml.m5.xlarge", approach="lora")
    assert tiny.assumptions["gradient_checkpointing"] is False and tiny.assumptions["flops_per_token"] == "4N"
    baseline = expected(approach="baseline")
    assert baseline.train_tokens == 0 and baseline.training_hours == 0
    assert baseline.evaluation_hours > 0 and baseline.assumptions["flops_per_token"] == "0 (no training)"


def test_train_rows_come_from_the_catalog_the_channel_size_or_the_default() -> None:
    assert estimate.train_rows("banking77") == (10_003.0, "banking77 train split (catalog)")
    rows, source = estimate.train_rows("mine", 220_000)
    assert rows == 2_000 and "220,000 bytes" in source
    assert estimate.train_rows(None, None)[0] == catalog.DEFAULT_TRAIN_ROWS


def test_plan_fills_expected_fields_below_the_maximum() -> None:
    # Given the study matrix planned offline
    jobs = study_jobs()
    for job in jobs:
        # Then every job carries an expected cost that is below its upper bound, spot cheaper than on demand
        assert 0 < job["estimated_cost_usd"] < job["estimated_on_demand_cost_usd"] <= job["estimated_max_cost_usd"]
        assert 0 < job["estimated_hours"] <= job["max_runtime_seconds"] / 3600
        assert job["estimated_cost_usd"] == pytest.approx(job["estimated_on_demand_cost_usd"] * 0.3, abs=1e-4)


def test_plan_sizes_an_unknown_dataset_from_its_train_channel(moto_aws: None) -> None:
    # Given a dataset the catalog has no row count for: 2,200 bytes of train data = 20 rows at 110 bytes per row
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="datasets/mine/train/a.jsonl", Body=b"x" * 1_100)
    s3.put_object(Bucket=BUCKET, Key="datasets/mine/train/b.jsonl", Body=b"x" * 1_100)
    assert plan.train_channel_bytes(s3, f"s3://{BUCKET}/datasets/mine/train/") == 2_200
    # Then the estimate's rows follow from the size; an unlistable bucket gives None (the catalog default applies)
    assert estimate.train_rows("mine", 2_200)[0] == 20
    assert plan.train_channel_bytes(s3, "s3://no-such-bucket/datasets/x/train/") is None


def test_assumptions_table_names_every_catalog_figure() -> None:
    table = dict((name, value) for name, value, _source in estimate.assumptions_table())
    assert "A10G 70" in table["peak dense TFLOP/s per GPU"] and "H100 989" in table["peak dense TFLOP/s per GPU"]
    assert table["spot price"] == "0.3 x on-demand" and "compact 34.3" in table["tokens per example"]
