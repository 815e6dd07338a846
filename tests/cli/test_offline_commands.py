"""`finetune validate` and `finetune estimate` run Plan's own checks with no AWS call and no credentials at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambdas import catalog, estimate
from tests.support.cli import finetune

pytestmark = pytest.mark.usefixtures("no_credentials")


def test_a_valid_input_is_accepted_offline() -> None:
    result = finetune(None, "validate", "examples/smoke.json")

    assert result.exit_code == 0, result.output
    assert "valid: 1 job(s)" in result.stdout


def test_an_invalid_input_names_the_bad_field_and_what_is_allowed_and_exits_2(tmp_path: Path) -> None:
    # Given an input with an approach the schema does not know
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experiments": [{"model": "mistral-7b", "approach": "prefix-tuning"}]}))

    # When it is validated
    result = finetune(None, "validate", str(bad))

    # Then the refusal names the field and what is allowed, and nothing else happens
    assert result.exit_code == 2
    assert "invalid input (nothing was started)" in result.stderr
    assert (
        "experiments[0].approach: must be one of: full, lora, qlora, dora, baseline (got 'prefix-tuning')"
        in result.stderr
    )


def test_an_unreadable_file_is_invalid_input(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")

    result = finetune(None, "estimate", str(broken))

    assert result.exit_code == 2
    assert "cannot read it as JSON" in result.stderr


def test_a_job_that_cannot_fit_its_instance_is_refused_with_the_planner_numbers(tmp_path: Path) -> None:
    too_small = tmp_path / "too-small.json"
    too_small.write_text(
        json.dumps({"experiments": [{"model": "gpt-neox-20b", "approach": "full", "instance_type": "ml.g5.xlarge"}]})
    )

    result = finetune(None, "estimate", str(too_small))

    assert result.exit_code == 2
    assert "InfeasibleJob" in result.stderr and "does not fit" in result.stderr


def test_the_study_estimate_shows_each_job_price_source_fit_and_the_total_against_the_budget() -> None:
    result = finetune(None, "estimate", "--matrix", "study")

    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "(catalog)" in line]
    assert len(lines) == len(catalog.STUDY_MATRIX) == 8
    for (model, approach), line in zip(catalog.STUDY_MATRIX, lines, strict=True):
        assert model in line and f" {approach} " in line
        assert " of " in line  # the planner's per-GPU GiB of the usable memory
    # The named matrix carries the budget its maximum needs (examples/study-matrix.json), within it
    assert "maximum for 8 jobs; budget $250.00 (within)" in result.stdout
    assert "total expected: $" in result.stdout


JOB_FIELDS = {
    "model",
    "approach",
    "instance_type",
    "instance_count",
    "gpus_per_instance",
    "strategy",
    "parameters",
    "active_parameters",
    "sized_from",
    "epochs",
    "train_rows",
    "tokens_per_example",
    "global_batch_size",
    "seconds",
    "expected_usd",
    "low_usd",
    "high_usd",
    "max_usd",
}


def test_the_estimate_as_json_has_each_jobs_plan_parts_and_dollars_and_the_totals() -> None:
    # When the study is estimated for a machine
    result = finetune(None, "estimate", "--matrix", "study", "--format", "json")

    # Then stdout is one JSON object with exactly the documented fields
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert set(found) == {"jobs", "expected_usd", "low_usd", "high_usd", "max_usd", "budget_usd"}
    assert len(found["jobs"]) == 8 and all(set(job) == JOB_FIELDS for job in found["jobs"])
    first = found["jobs"][0]
    assert set(first["seconds"]) == {*estimate.PARTS, "total"}
    assert (first["model"], first["approach"], first["train_rows"], first["epochs"]) == ("llama2-7b", "full", 10003, 1)
    assert first["global_batch_size"] == 8 and first["tokens_per_example"] == 34.3
    # and the totals are the jobs' sums, the study's expected spot cost within $10
    assert found["expected_usd"] == pytest.approx(sum(job["expected_usd"] for job in found["jobs"]), abs=1e-3)
    assert found["low_usd"] <= found["expected_usd"] <= found["high_usd"] and found["expected_usd"] <= 10
    assert found["budget_usd"] == 250


def test_the_estimate_is_never_cut_when_stdout_is_a_pipe() -> None:
    # Given the CLI run as CI runs it: stdout a pipe, COLUMNS=80 (Rich's width for non-terminals)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(root)}
    env.pop("FORCE_COLOR", None)
    command = [sys.executable, "-c", "from finetune.cli import app; app()", "estimate", "--matrix", "study"]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)

    # Then every model name, instance type and strategy is printed whole (no "llam…")
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for model in catalog.STUDY_MODELS:
        assert f" {model} " in result.stdout
    assert "ml.g6e.2xlarge" in result.stdout and " lean " in result.stdout
