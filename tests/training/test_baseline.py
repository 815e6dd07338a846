"""approach=baseline: the base model evaluated zero-shot on the same samples, with no trainer, optimizer or checkpoint,
leaving the same metrics and a small weightless artifact, so Record and Report treat it like any completed job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdas.catalog import parse_metric_lines
from tests.support.training import run_main
from training_code import evaluation, phases, telemetry

# Exact match is task sft's accuracy; a classification job reports intent accuracy instead.
CLASSIFICATION_EVAL_METRICS = set(evaluation.EVAL_METRICS) - {"eval_exact_match"}


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any step towards training (its model load, trainer arguments, a checkpoint plan) fails the test."""
    from training_code import checkpoints, modeling, train

    def forbidden(*args, **kwargs):
        raise AssertionError("a baseline started to set up training")

    monkeypatch.setattr(modeling, "load_model", forbidden)
    monkeypatch.setattr(train, "build_sft_config", forbidden)
    monkeypatch.setattr(checkpoints, "plan_resume", forbidden)


@pytest.mark.usefixtures("no_training")
def test_a_baseline_evaluates_the_base_model_and_trains_nothing(
    tiny_models: dict[str, Path], bertscore_model: str, make_job
) -> None:
    job = make_job("baseline")

    # Given training settings that mean nothing to a baseline (Launch does not send them; they are ignored)
    result = run_main(
        job,
        job.argv(
            tiny_models["mistral"],
            approach="baseline",
            eval_samples=12,
            bertscore_model=bertscore_model,
            epochs=3,
            lora_r=8,
            merge_adapter=True,
        ),
    )

    assert result.exit_code == 0, result.stdout
    # The same evaluation metrics as a trained job, printed for SageMaker's metric definitions and in metrics.json
    metrics = job.metrics()
    assert set(metrics) >= CLASSIFICATION_EVAL_METRICS and "missing" not in metrics
    assert metrics["eval_samples"] == 12
    assert metrics["eval_parse_rate"] == 1.0  # constrained decoding: even an untrained model answers with a label
    printed = parse_metric_lines(result.stdout)
    # the phase times are printed as each phase ends (training_code/phases.py) and the resolved settings once when
    # decided (a baseline trains nothing: no learning rate or batch), neither kept in metrics.json
    printed_apart = {*phases.PHASE_METRICS, *telemetry.RESOLVED_METRICS}
    assert {name: printed[name] for name in printed if name not in printed_apart} == pytest.approx(metrics, rel=1e-5)
    assert {"resolved_max_seq_length", "resolved_world_size"} <= set(printed)
    assert not {"resolved_learning_rate", "resolved_effective_batch_size"} & set(printed)
    assert "peak_memory_gb" in metrics
    assert not any(name.startswith("train_") for name in metrics)  # nothing trained
    # A small artifact without weights: the prompt format, what was evaluated, the metrics, the per-sample answers
    assert sorted(path.name for path in job.model_dir.iterdir()) == [
        "labels.json",
        "metrics.json",
        "predictions.jsonl",
        "training_config.json",
    ]
    card = json.loads((job.model_dir / "labels.json").read_text())
    assert card["prompt_style"] == "listed"  # forced: a zero-shot model must see the labels
    assert "{labels}" in card["prompt_template"]
    described = job.training_config()
    assert described["baseline"]["base_model"] == str(tiny_models["mistral"])
    assert described["hyperparameters"]["approach"] == "baseline"
    assert "learning_rate" not in described["resolved"]
    # No checkpoint was written, not even the folder
    assert not job.checkpoint_dir.exists() or not any(job.checkpoint_dir.iterdir())


def test_a_baseline_evaluates_the_same_samples_as_a_trained_job(tiny_models: dict[str, Path], make_job) -> None:
    common = {"eval_samples": 8, "bertscore_model": "none", "seed": 7}
    selected: dict[str, list[int]] = {}
    # Given a baseline and a one-step LoRA job with the same seed and eval_samples
    for current, extra in (("baseline", {}), ("lora", {"max_steps": 1})):
        job = make_job(current)
        result = run_main(job, job.argv(tiny_models["llama"], approach=current, **common, **extra))
        assert result.exit_code == 0, result.stdout
        rows = (job.model_dir / evaluation.PREDICTIONS_FILE).read_text().splitlines()
        selected[current] = [json.loads(row)["index"] for row in rows]
    # Then both were scored on the same test rows (their per-sample answers pair up by index)
    assert len(selected["baseline"]) == 8 and selected["baseline"] == selected["lora"]


def test_only_rank_0_runs_a_baseline_under_a_launcher(tiny_models: dict[str, Path], make_job) -> None:
    from training_code import train
    from training_code.config import SageMakerEnv

    job = make_job()
    environ = {**job.environ, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}

    # A second rank leaves at once: the one process on rank 0 spreads the model over the GPUs itself
    exit_code = train.run(job.argv(tiny_models["llama"], approach="baseline"), SageMakerEnv.from_environ(environ))

    assert exit_code == train.EXIT_OK
    assert not job.model_dir.exists()
