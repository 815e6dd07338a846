"""Calibration across runs in one emulated account: the first run's recorded jobs correct the second run's
estimates (Plan reads them from the ledger's calibration index), and both reports say what was in force."""

from __future__ import annotations

import json
from typing import Any

from finetune.local.backends import ScriptedOutcome
from finetune.local.demo import estimate_error, estimate_table, run_rows
from tests.support.workflow import GOOD_METRICS

RUN = {"experiments": [{"model": "mistral-7b", "approach": "lora"}], "budget_usd": 50}
# What the job really takes on SageMaker, by phase (longer than today's time model says, as issue 18 found): 6 min
# for instances and image, and in the container a 90 s requirements install before the phases the code prints.
PHASES = {
    "time_download_seconds": 200.0,
    "time_load_seconds": 40.0,
    "time_train_seconds": 2400.0,
    "time_checkpoint_seconds": 30.0,
    "time_evaluate_seconds": 120.0,
    "time_save_seconds": 10.0,
}
INSTALL_SECONDS = 90.0
TIME_SPLIT = {
    "waiting": 360.0,
    "downloading": 60.0,
    "training": INSTALL_SECONDS + sum(PHASES.values()),
    "uploading": 20.0,
}


def _measured_job(_request: dict[str, Any]) -> ScriptedOutcome:
    billed = int(sum(TIME_SPLIT.values()) - TIME_SPLIT["waiting"])
    return ScriptedOutcome(
        training_seconds=billed,
        billable_seconds=billed,
        metrics={**GOOD_METRICS, **PHASES},
        time_split=TIME_SPLIT,
    )


def test_second_run_is_estimated_closer_to_what_the_first_runs_jobs_took(account_with) -> None:
    # Given an account whose jobs take longer than the time model's table says
    account = account_with(_measured_job)
    # When the same input runs twice
    first = account.execute(RUN, "calibration-1")
    second = account.execute(RUN, "calibration-2")
    assert first.status == second.status == "SUCCEEDED", (first.cause, second.cause)
    first_rows, second_rows = run_rows(first), run_rows(second)
    # Then the first run's job was recorded with every part of its time, as the contract splits it
    [recorded] = first_rows
    assert recorded["actual_seconds"] == {
        "startup": 420,
        "install": INSTALL_SECONDS,
        "download": 240,
        "train": 2400,
        "checkpoint": 30,
        "evaluate": 120,
        "upload": 30,
        "total": sum(TIME_SPLIT.values()),
    }
    assert recorded["calibration"]["samples"] == 0  # nothing recorded before it: the table's values
    # And the second run was planned with that job's calibration, and is closer to what its job took
    [calibrated] = second_rows
    assert calibrated["calibration"]["samples"] == 1 and calibrated["calibration_key"] == "g6#lora#single"
    assert calibrated["estimated_seconds"]["train"] > recorded["estimated_seconds"]["train"]
    assert 1.0 < estimate_error(second_rows) < estimate_error(first_rows)
    # And Plan's output and the second report name the calibration in force
    report = json.loads(second.reports[f"reports/{second.run_id}/report.json"])
    [in_force] = report["calibration"]
    assert in_force["key"] == "g6#lora#single" and in_force["samples"] == 1 and in_force["factors"]["train"] > 1
    assert "## Calibration in force" in second.reports[f"reports/{second.run_id}/report.md"].decode()
    assert "| lora | g6#lora#single | 1 |" in estimate_table(second_rows)
