"""`finetune compare`: the same model × approach side by side across runs, from the ledger's job rows."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import boto3

from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import REGION, TABLE_NAME
from lambdas import ledger
from tests.support.cli import finetune
from tests.support.workflow import GOOD_METRICS


def _row(run_id: str, model: str, approach: str, status: str, accuracy: str | None, cost: str) -> dict[str, Any]:
    job = f"{run_id}-{model}-{approach}"
    return {
        "pk": ledger.run_pk(run_id),
        "sk": ledger.job_sk(job),
        "run_id": run_id,
        "job_name": job,
        "model": model,
        "approach": approach,
        "instance_type": "ml.g5.xlarge",
        "instance_count": 1,
        "spot": True,
        "status": status,
        "cost_usd": Decimal(cost),
        "metrics": {} if accuracy is None else {"eval_intent_accuracy": Decimal(accuracy), "eval_parse_rate": 1},
        "ended_at": "2026-11-26T00:00:00Z",
    }


def test_compare_lines_up_each_model_and_approach_across_runs_in_every_format(account_with) -> None:
    # Given two runs in the ledger: both trained Mistral LoRA; only the second had QLoRA, which failed
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for row in (
        _row("run-a", "mistral-7b", "lora", "Completed", "0.91", "1.50"),
        _row("run-b", "mistral-7b", "lora", "Completed", "0.93", "1.20"),
        _row("run-b", "mistral-7b", "qlora", "Failed", None, "0.30"),
    ):
        ledger.put_row(dynamodb, TABLE_NAME, row)

    # When the user compares them as JSON
    as_json = finetune(account, "compare", "run-a", "run-b", "--format", "json")

    # Then each combination holds each run's figures (None where a run did not have it), agreeing with the ledger
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["runs"] == ["run-a", "run-b"]
    by_job = {(job["model"], job["approach"]): job["runs"] for job in document["jobs"]}
    lora, qlora = by_job[("mistral-7b", "lora")], by_job[("mistral-7b", "qlora")]
    assert (lora["run-a"]["accuracy"], lora["run-b"]["accuracy"]) == (0.91, 0.93)
    assert (lora["run-a"]["cost_usd"], lora["run-b"]["cost_usd"]) == (1.5, 1.2)
    assert qlora["run-a"] is None and qlora["run-b"]["status"] == "Failed"

    # And the table and the Markdown show the same, "-" for what a run lacks
    table = finetune(account, "compare", "run-a", "run-b")
    assert table.exit_code == 0, table.output
    [lora_line] = [line for line in table.stdout.splitlines() if " lora " in line]
    assert "0.910" in lora_line and "0.930" in lora_line and "1.50" in lora_line and "1.20" in lora_line
    markdown = finetune(account, "compare", "run-a", "run-b", "--format", "md")
    assert "| mistral-7b | qlora | - | - | - | - | - | Failed | - | - | 0.30 | - |" in markdown.stdout


def test_compare_of_an_unknown_run_exits_1(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))

    result = finetune(account, "compare", "no-such-run", "other")

    assert result.exit_code == 1 and "no run no-such-run" in result.stderr
