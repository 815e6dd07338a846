"""Deterministic names: run ids and training job names."""

from __future__ import annotations

import pytest

from lambdas import naming


@pytest.mark.parametrize(
    ("run_id", "model"),
    [
        ("r1", "llama2-7b"),
        ("a" * 80, "mistral-7b"),
        ("study-2026-11-25", "mistralai/Mistral-7B-Instruct-v0.2-with-a-very-long-repository-name"),
        ("x" * 80, "org/" + "m" * 90),
    ],
)
def test_job_names_are_valid_sagemaker_names(run_id: str, model: str) -> None:
    for approach in ("full", "lora", "qlora"):
        name = naming.training_job_name("ft", run_id, model, approach)
        assert len(name) <= naming.JOB_NAME_MAX
        assert naming.JOB_NAME_PATTERN.match(name), name
        assert name.startswith("ft-") and approach in name


def test_same_input_gives_the_same_name_and_any_difference_a_new_one() -> None:
    # Given the same job twice, and jobs differing in one part each
    first = naming.training_job_name("ft", "run-1", "llama2-7b", "lora", "v")
    again = naming.training_job_name("ft", "run-1", "llama2-7b", "lora", "v")
    others = {
        naming.training_job_name("ft", "run-2", "llama2-7b", "lora", "v"),
        naming.training_job_name("ft", "run-1", "mistral-7b", "lora", "v"),
        naming.training_job_name("ft", "run-1", "llama2-7b", "qlora", "v"),
        naming.training_job_name("ft", "run-1", "llama2-7b", "lora", "w"),
    }
    # Then the name is stable and every difference changes it
    assert first == again
    assert first not in others and len(others) == 4


def test_shortened_names_stay_distinct() -> None:
    # Given two long run ids that only differ beyond the room left in a name
    a = naming.training_job_name("ft", "r" * 70 + "a", "llama2-7b", "lora")
    b = naming.training_job_name("ft", "r" * 70 + "b", "llama2-7b", "lora")
    assert a != b and len(a) == len(b) == naming.JOB_NAME_MAX


def test_run_id_keeps_safe_execution_names_and_hashes_changed_ones() -> None:
    assert naming.run_id_from_execution_name("study-2026-11-25") == "study-2026-11-25"
    changed = naming.run_id_from_execution_name("study_2026.11")
    assert changed.startswith("study-2026-11-") and changed != naming.run_id_from_execution_name("study-2026-11")
    assert naming.run_id_from_execution_name("___").startswith("run-")


def test_s3_layout_follows_the_contract() -> None:
    assert naming.dataset_uris("b", "banking77") == (
        "s3://b/datasets/banking77/train/",
        "s3://b/datasets/banking77/test/",
    )
    assert naming.checkpoint_uri("b", "run-1", "job") == "s3://b/checkpoints/run-1/job/"
    assert naming.output_uri("b", "org/Some.Model", "qlora") == "s3://b/models/some-model-qlora/"
    assert naming.report_keys("run-1") == ("reports/run-1/report.json", "reports/run-1/report.md")
