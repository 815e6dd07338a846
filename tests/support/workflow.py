"""Workflow test helpers: an emulated account whose training jobs end as scripted (the `account_with` fixture in
tests/conftest.py opens one per call), the metrics of a good job, and what a CreateTrainingJob request asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finetune.local.backends import ScriptedOutcome, ScriptedTrainingBackend
from finetune.local.runner import LocalAccount, SynthesizedWorkflow

DATASET = Path(__file__).resolve().parents[2] / "examples" / "datasets" / "banking77-mini"
GOOD_METRICS = {"eval_intent_accuracy": 0.9, "eval_parse_rate": 1.0, "eval_rougeL": 0.92, "eval_bertscore_f1": 0.95}


@contextmanager
def running_account(
    workflow: SynthesizedWorkflow, outcome_for: Callable[[dict[str, Any]], ScriptedOutcome]
) -> Iterator[LocalAccount]:
    """An emulated account whose training jobs end as scripted, with the banking77 dataset uploaded and a token in
    the secret (as after the README's deploy steps), so the gated Llama-2 passes Plan's token check."""
    account = LocalAccount(workflow, ScriptedTrainingBackend(outcome_for))
    with account.running():
        account.upload_dataset("banking77", DATASET / "train.jsonl", DATASET / "test.jsonl")
        account.put_hf_token("hf_offline_test_token")
        yield account


def approach_of(request: dict[str, Any]) -> str:
    """The approach hyperparameter of a CreateTrainingJob request (values are JSON-encoded)."""
    return request["HyperParameters"]["approach"].strip('"')
