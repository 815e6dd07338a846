"""Workflow fixtures: the app synthesized once (fast poll/retry settings), a fresh emulated account per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune.local.backends import ScriptedOutcome, ScriptedTrainingBackend
from finetune.local.runner import LocalAccount, SynthesizedWorkflow, synthesize

DATASET = Path(__file__).resolve().parents[2] / "examples" / "datasets" / "banking77-mini"
GOOD_METRICS = {"eval_intent_accuracy": 0.9, "eval_parse_rate": 1.0, "eval_rougeL": 0.92, "eval_bertscore_f1": 0.95}


@pytest.fixture(scope="session")
def workflow() -> SynthesizedWorkflow:
    return synthesize()


@pytest.fixture
def account_with(workflow: SynthesizedWorkflow) -> Iterator[Callable[..., LocalAccount]]:
    """`account_with(outcome_for)` → a running emulated account whose training jobs end as scripted."""
    stack = []

    def start(outcome_for: Callable[[dict[str, Any]], ScriptedOutcome]) -> LocalAccount:
        account = LocalAccount(workflow, ScriptedTrainingBackend(outcome_for))
        context = account.running()
        context.__enter__()
        stack.append(context)
        account.upload_dataset("banking77", DATASET / "train.jsonl", DATASET / "test.jsonl")
        return account

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def approach_of(request: dict[str, Any]) -> str:
    """The approach hyperparameter of a CreateTrainingJob request (values are JSON-encoded)."""
    return request["HyperParameters"]["approach"].strip('"')
