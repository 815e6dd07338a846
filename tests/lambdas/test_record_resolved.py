"""Record keeps the hyperparameters a job actually used (its `resolved_*` metrics) as the row's `resolved` map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lambdas import catalog, ledger
from lambdas.handlers import record as record_handler
from tests.lambdas.test_lambda_record import priced_job, status, stored_items
from training_code.config import SageMakerEnv, TrainConfig, effective_strategy

# What SageMaker's FinalMetricDataList hands back for a job that printed `resolved_learning_rate=0.0002;`
REPORTED = {
    "resolved_learning_rate": 0.00019999999494757503,
    "resolved_effective_batch_size": 32.0,
    "resolved_max_seq_length": 64.0,
    "resolved_world_size": 1.0,
    "eval_intent_accuracy": 0.9,
}


def test_a_job_with_an_automatic_learning_rate_is_recorded_with_the_rate_it_used(
    moto_aws: None, lambda_context: Any
) -> None:
    # Given a LoRA job launched with learning_rate null (auto) that reported the values it resolved
    job = {**priced_job(count=1), "learning_rate": None}
    assert job["strategy"] == "single"
    # When Record writes its row
    row = record_handler.handler({"job": job, "status": status(metrics=REPORTED)}, lambda_context)
    # Then the row's `resolved` map holds them as printed (6 significant digits), with the strategy it trained with
    assert row["resolved"] == {
        "learning_rate": 0.0002,
        "effective_batch_size": 32,
        "max_seq_length": 64,
        "strategy": "single",
    }
    [item] = stored_items()
    assert item["resolved"] == {
        "M": {
            "learning_rate": {"N": "0.0002"},
            "effective_batch_size": {"N": "32"},
            "max_seq_length": {"N": "64"},
            "strategy": {"S": "single"},
        }
    }
    assert row["hyperparameters"]["learning_rate"] is None  # what was asked stays apart from what was used


def test_a_job_that_never_reached_training_has_no_resolved_values(moto_aws: None, lambda_context: Any) -> None:
    # Given a job that failed before the training code decided anything (no resolved_* metric)
    final = status("Failed", training=0, billable=0, failure_reason="CapacityError")
    # When recorded
    row = record_handler.handler({"job": priced_job(), "status": final}, lambda_context)
    # Then `resolved` is null: nothing is guessed for it
    assert row["resolved"] is None
    [item] = stored_items()
    assert item["resolved"] == {"NULL": True}


def test_a_baseline_reports_no_learning_rate_or_batch() -> None:
    # Given a zero-shot baseline: it resolves a sequence length but trains nothing
    job = {**priced_job(), "approach": catalog.BASELINE}
    metrics = {"resolved_max_seq_length": 128.0, "resolved_world_size": 1.0}
    # When its row is built, Then only what it reported is there
    assert ledger.job_row(job, status(metrics=metrics))["resolved"] == {"max_seq_length": 128, "strategy": "single"}


@pytest.mark.parametrize("strategy", catalog.STRATEGIES)
@pytest.mark.parametrize("world_size", [1, 2])
def test_the_recorded_strategy_is_the_one_the_training_code_trained_with(strategy: str, world_size: int) -> None:
    # Given a job of each strategy that reported how many processes trained together
    job = {**priced_job(), "strategy": strategy}
    metrics = {**REPORTED, "resolved_world_size": float(world_size)}
    # When its row is built
    recorded = ledger.job_row(job, status(metrics=metrics))["resolved"]["strategy"]
    # Then the strategy is the training code's own decision for that world size (training_code/config.py)
    env = SageMakerEnv(None, None, Path("model"), Path("data"), Path("out"), world_size=world_size)
    assert recorded == effective_strategy(TrainConfig(model_id="m", strategy=strategy), env)
