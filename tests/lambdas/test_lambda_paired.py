"""Paired comparison of two jobs' per-sample answers (lambdas/paired.py) and its use by the report's ranking.

Expected values are computed by hand: P(X <= k) for X ~ Binomial(n, 1/2) is sum_{i<=k} C(n, i) / 2^n."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas import paired, report


def answers(pattern: str) -> paired.Answers:
    """Answers from a string of 1 (right) and 0 (wrong), indexed 0..n-1."""
    return {index: bit == "1" for index, bit in enumerate(pattern)}


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (0, 1, 0.5),
        (1, 3, 4 / 8),  # (1 + 3) / 8
        (0, 10, 1 / 1024),
        (2, 10, 56 / 1024),  # (1 + 10 + 45) / 1024
        (5, 5, 1.0),
    ],
)
def test_binomial_tail_matches_hand_computed_values(successes: int, trials: int, expected: float) -> None:
    assert paired.binomial_lower_tail(successes, trials) == pytest.approx(expected, abs=1e-15)


def test_ten_discordant_pairs_all_one_way_are_significant() -> None:
    # Given two jobs that disagree on 10 samples, always in the first job's favour (b=10, c=0), and agree on 90
    first = answers("1" * 10 + "1" * 90)
    second = answers("0" * 10 + "1" * 90)
    # When they are compared
    test = paired.mcnemar_exact(first, second)
    # Then p = 2 x P(X <= 0 | n=10) = 2/1024, and the 10-point difference is significant
    assert (test.only_first, test.only_second, test.samples) == (10, 0, 100)
    assert test.p_value == pytest.approx(2 / 1024)
    assert test.significant()
    assert test.difference == pytest.approx(0.10)


def test_eight_to_two_discordant_pairs_are_not_significant() -> None:
    # Given b=8, c=2 among 50 samples
    first = answers("1" * 8 + "0" * 2 + "1" * 40)
    second = answers("0" * 8 + "1" * 2 + "1" * 40)
    # Then p = 2 x 56/1024 = 0.109375: a 6-point difference that cannot be told apart on these samples
    test = paired.mcnemar_exact(first, second)
    assert test.p_value == pytest.approx(0.109375)
    assert not test.significant()


def test_identical_answers_give_p_one() -> None:
    assert paired.mcnemar_exact(answers("1101"), answers("1101")).p_value == 1.0


def test_answers_to_different_samples_are_not_pairs() -> None:
    with pytest.raises(ValueError, match="different samples"):
        paired.mcnemar_exact({0: True, 1: True}, {0: True, 2: True})


def test_the_exact_test_agrees_with_scipy_where_it_is_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(3, 11), (20, 9), (0, 6), (40, 41)]:
        expected = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        first = answers("1" * b + "0" * c)
        second = answers("0" * b + "1" * c)
        assert paired.mcnemar_exact(first, second).p_value == pytest.approx(expected, rel=1e-9)


def test_sample_size_follows_connors_formula() -> None:
    # Given a 2-point difference with 10% discordant samples, 5% two-sided, 80% power:
    # n = (1.959964 x sqrt(0.1) + 0.841621 x sqrt(0.1 - 0.0004))^2 / 0.0004
    #   = (0.619795 + 0.265613)^2 / 0.0004 = 0.783947 / 0.0004 = 1959.9 -> 1960
    assert paired.paired_sample_size(0.02, 0.10) == 1960
    # And a larger difference with the same disagreement needs far fewer: (0.619795 + 0.252486)^2 / 0.0100 -> 77
    assert paired.paired_sample_size(0.10, 0.10) == 77


def test_sample_size_refuses_impossible_inputs() -> None:
    with pytest.raises(ValueError):
        paired.paired_sample_size(0.0, 0.1)
    with pytest.raises(ValueError):
        paired.paired_sample_size(0.2, 0.1)  # every sample that differs is a discordant one


def _row(name: str, accuracy: float, cost: float, dataset: str = "chat") -> dict[str, Any]:
    return {
        "run_id": "r1",
        "job_name": name,
        "model": "demo/tiny-llama",
        "approach": name,
        "status": "Completed",
        "cost_usd": cost,
        "metrics": {"eval_exact_match": accuracy, "eval_samples": 200},
        "hyperparameters": {"task": "sft", "primary_metric": "eval_exact_match", "eval_samples": "all"},
        "dataset": {"name": dataset},
        "artifact_uri": f"s3://bucket/models/x/{name}/output/model.tar.gz",
    }


def test_report_ties_jobs_by_the_paired_test_not_by_overlapping_intervals() -> None:
    # Given two jobs on the same 200 samples, 90% and 86%, that disagree on 8 samples only, all in the best's favour:
    # their Wilson intervals overlap (about 85-93 and 81-90), but b=8, c=0 gives p = 2/256 < 0.05
    best = answers("1" * 180 + "0" * 20)
    other = answers("0" * 8 + "1" * 172 + "0" * 20)
    rows = [_row("full", 0.90, 2.0), _row("lora", 0.86, 1.0)]
    # When the report ranks them with and without the answers
    without = {e["job_name"]: e for e in report.build_report("r1", rows)["jobs"]}
    document = report.build_report("r1", rows, answers={"full": best, "lora": other})
    paired_jobs = {e["job_name"]: e for e in document["jobs"]}
    # Then the intervals alone call the cheaper job tied, the paired test does not
    assert without["lora"]["tier"] == 0
    assert paired_jobs["lora"]["tier"] != 0
    comparison = paired_jobs["lora"]["paired_with_best"]
    assert comparison["p_value"] == pytest.approx(2 / 256, abs=1e-6)
    assert (comparison["best_only_right"], comparison["other_only_right"], comparison["tied"]) == (8, 0, False)
    assert comparison["samples_needed"] is not None
    # And the Markdown says so, with the primary metric named
    markdown = report.render_markdown(document)
    assert "## Paired comparison with the best job" in markdown
    assert "eval_exact_match" in markdown


def test_jobs_on_different_datasets_fall_back_to_intervals() -> None:
    rows = [_row("full", 0.90, 2.0), _row("lora", 0.86, 1.0, dataset="other")]
    document = report.build_report("r1", rows, answers={"full": answers("1" * 200), "lora": answers("1" * 200)})
    assert not document["paired"]


def test_cost_per_point_uses_the_runs_primary_metric() -> None:
    # Given an sft job ranked by ROUGE-L
    row = _row("full", 0.5, 2.0)
    row["metrics"]["eval_rougeL"] = 0.8
    row["hyperparameters"]["primary_metric"] = "eval_rougeL"
    entry = report.job_entry(row)
    # Then its points are ROUGE-L points ($2 / 80), and a mean metric gets no Wilson interval
    assert entry["accuracy"] == 0.8 and entry["cost_per_accuracy_point"] == pytest.approx(0.025)
    assert entry["accuracy_ci_low"] is None
    assert "80.0% (n=200)" in report.render_markdown(report.build_report("r1", [row]))


@mock_aws
def test_answers_are_read_from_the_jobs_output_archive() -> None:
    # Given a job whose output.tar.gz (next to its model.tar.gz) holds predictions.jsonl
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bucket")
    lines = "".join(
        json.dumps({"index": i, "reference": "a", "prediction": "a", "correct": i % 2 == 0}) + "\n" for i in range(4)
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(paired.PREDICTIONS_FILE)
        info.size = len(lines.encode())
        archive.addfile(info, io.BytesIO(lines.encode()))
    s3.put_object(Bucket="bucket", Key="models/x/job/output/output.tar.gz", Body=buffer.getvalue())
    # When the report reads it (and a job without one)
    found = paired.read_answers(s3, "s3://bucket/models/x/job/output/model.tar.gz")
    missing = paired.read_answers(s3, "s3://bucket/models/x/other/output/model.tar.gz")
    # Then the answers come back by sample index, and the missing archive is no error
    assert found == {0: True, 1: False, 2: True, 3: False}
    assert missing is None


@mock_aws
def test_answers_of_an_uncompressed_model_are_read_from_its_prefix() -> None:
    # Given a job launched with uncompressed model output: its model folder's files under output/model/, among them
    # the predictions.jsonl the training code writes there (S3ModelArtifacts names the prefix)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bucket")
    lines = "".join(json.dumps({"index": i, "correct": i < 2}) + "\n" for i in range(3))
    s3.put_object(Bucket="bucket", Key="models/x/job/output/model/predictions.jsonl", Body=lines.encode())
    # When the report reads it (and a prefix without answers)
    found = paired.read_answers(s3, "s3://bucket/models/x/job/output/model/")
    missing = paired.read_answers(s3, "s3://bucket/models/x/other/output/model/")
    # Then the answers come back by sample index, and the missing file is no error
    assert found == {0: True, 1: True, 2: False}
    assert missing is None
