"""`finetune validate` and `finetune estimate` run Plan's own checks with no AWS call and no credentials at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdas import catalog
from tests.cli.conftest import finetune

pytestmark = pytest.mark.usefixtures("no_credentials")


def test_a_valid_input_is_accepted_offline() -> None:
    result = finetune(None, "validate", "examples/smoke.json")

    assert result.exit_code == 0, result.output
    assert "valid: 1 job(s)" in result.stdout


def test_an_invalid_input_names_the_bad_field_and_what_is_allowed_and_exits_2(tmp_path: Path) -> None:
    # Given an input with an approach the schema does not know
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experiments": [{"model": "mistral-7b", "approach": "dora"}]}))

    # When it is validated
    result = finetune(None, "validate", str(bad))

    # Then the refusal names the field and what is allowed, and nothing else happens
    assert result.exit_code == 2
    assert "invalid input (nothing was started)" in result.stderr
    assert "experiments[0].approach: must be one of: full, lora, qlora, baseline (got 'dora')" in result.stderr


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
