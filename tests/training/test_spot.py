"""Spot safety with real processes: SIGTERM saves a checkpoint and stops; a SIGKILLed run resumes to the same end.

One job folder lives through three processes, as a spot job lives through interruptions:
  1. SIGTERM (SageMaker's stop / reclaim notice) at step ~20 → a complete checkpoint, exit 143;
  2. restart, resumes, then SIGKILL (no warning) after a periodic checkpoint, mid-training;
  3. restart (with a half-written checkpoint left behind) → resumes from the latest complete one and finishes.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.training.conftest import Job, create_job, run_main, start_training
from training_code import checkpoints

MAX_STEPS = 300
SAVE_STEPS = 50


@dataclass
class SpotRuns:
    """What the three processes did."""

    job: Job
    sigterm_exit: int
    sigterm_seconds: float
    sigterm_checkpoints: list[tuple[int, dict]]
    sigterm_log: str
    sigterm_model_files: list[str]
    killed_exit: int
    complete_steps_at_kill: list[int]
    final_exit: int
    final_log: str


def _wait_for(predicate, timeout: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _argv(job: Job, model: Path) -> list[str]:
    # The same hyperparameters every time, as SageMaker restarts a job (the Trainer keeps a checkpoint's save_steps).
    return job.argv(
        model,
        approach="lora",
        max_steps=MAX_STEPS,
        save_steps=SAVE_STEPS,
        logging_steps=10,
        eval_samples=8,
        bertscore_model="none",
    )


@pytest.fixture(scope="module")
def spot_runs(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> SpotRuns:
    root = tmp_path_factory.mktemp("spot")
    job = create_job(root / "job")
    model = tiny_models["llama"]
    logs = [root / f"run{i}.log" for i in range(3)]

    # 1. SIGTERM once training is under way, before the first periodic checkpoint (step 50): only it can save.
    first = start_training(job, _argv(job, model), logs[0])
    try:
        _wait_for(lambda: "train_step=20;" in logs[0].read_text(), 120, first, "step 20")
        sent = time.monotonic()
        first.send_signal(signal.SIGTERM)
        sigterm_exit = first.wait(timeout=120)
        sigterm_seconds = time.monotonic() - sent
    finally:
        if first.poll() is None:
            first.kill()
    sigterm_model_files = sorted(p.name for p in job.model_dir.glob("*"))
    sigterm_checkpoints = [
        (step, checkpoints.read_marker(path) | {"files": sorted(p.name for p in path.iterdir())})
        for step, path in checkpoints.complete_checkpoints(job.checkpoint_dir)
    ]

    # 2. Restart; SIGKILL right after a periodic checkpoint beyond step 100 is complete.
    second = start_training(job, _argv(job, model), logs[1])
    try:
        _wait_for(
            lambda: any(step >= 100 for step, _ in checkpoints.complete_checkpoints(job.checkpoint_dir)),
            120,
            second,
            "a checkpoint past step 100",
        )
        second.send_signal(signal.SIGKILL)
        killed_exit = second.wait(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    complete_steps_at_kill = [step for step, _ in checkpoints.complete_checkpoints(job.checkpoint_dir)]

    # A save interrupted by the kill leaves a directory without marker: make sure there is one.
    half_written = job.checkpoint_dir / f"checkpoint-{MAX_STEPS - 1}"
    half_written.mkdir(exist_ok=True)
    (half_written / "adapter_model.safetensors").write_bytes(b"truncated")

    # 3. Restart to the end.
    third = start_training(job, _argv(job, model), logs[2])
    try:
        final_exit = third.wait(timeout=180)
    finally:
        if third.poll() is None:
            third.kill()
    return SpotRuns(
        job=job,
        sigterm_exit=sigterm_exit,
        sigterm_seconds=sigterm_seconds,
        sigterm_checkpoints=sigterm_checkpoints,
        sigterm_log=logs[0].read_text(),
        sigterm_model_files=sigterm_model_files,
        killed_exit=killed_exit,
        complete_steps_at_kill=complete_steps_at_kill,
        final_exit=final_exit,
        final_log=logs[2].read_text(),
    )


def test_sigterm_saves_a_complete_checkpoint_and_stops(spot_runs: SpotRuns) -> None:
    assert spot_runs.sigterm_exit == 143, spot_runs.sigterm_log[-3000:]
    assert spot_runs.sigterm_seconds < 120  # SageMaker's grace period
    assert len(spot_runs.sigterm_checkpoints) == 1
    step, marker = spot_runs.sigterm_checkpoints[0]
    assert 20 <= step < SAVE_STEPS  # not a periodic checkpoint
    assert marker["global_step"] == step
    assert "adapter_model.safetensors" in marker["files"]
    assert "optimizer.pt" in marker["files"]  # resumable, not just the weights
    assert spot_runs.sigterm_model_files == []  # a stopped run writes no final artifacts


def test_hard_killed_run_resumes_from_the_latest_complete_checkpoint_and_ends_at_the_same_step(
    spot_runs: SpotRuns,
) -> None:
    assert spot_runs.killed_exit == -signal.SIGKILL
    latest_at_kill = max(spot_runs.complete_steps_at_kill)
    assert latest_at_kill < MAX_STEPS  # killed mid-training

    assert spot_runs.final_exit == 0, spot_runs.final_log[-3000:]
    resumed = re.search(r"resuming from \S*checkpoint-(\d+)", spot_runs.final_log)
    assert resumed is not None and int(resumed.group(1)) == latest_at_kill
    assert "removed incomplete checkpoint checkpoint-299" in spot_runs.final_log
    job = spot_runs.job
    assert job.training_config()["global_step"] == MAX_STEPS
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.json"):
        assert (job.model_dir / name).is_file(), name
    assert job.metrics()["eval_samples"] == 8
    # Rotation kept the newest complete checkpoints only (save_total_limit=2), the last one being the final step.
    assert [step for step, _ in checkpoints.complete_checkpoints(job.checkpoint_dir)][-1] == MAX_STEPS
    assert len(list(job.checkpoint_dir.glob("checkpoint-*"))) == 2


def test_restart_after_the_last_step_evaluates_without_training_again(tiny_models: dict[str, Path], make_job) -> None:
    job = make_job("restart")
    argv = job.argv(tiny_models["llama"], approach="lora", max_steps=6, save_steps=5, eval_samples=4)
    argv += ["--bertscore_model", "none"]
    assert run_main(job, argv).exit_code == 0
    first_metrics = job.metrics()

    again = run_main(job, argv)  # e.g. the instance was reclaimed while the model was being uploaded

    assert again.exit_code == 0
    assert job.training_config()["global_step"] == 6  # the Trainer alone would resume into a 7th step
    assert sorted(p.name for p in job.checkpoint_dir.glob("checkpoint-*")) == ["checkpoint-5", "checkpoint-6"]
    metrics = job.metrics()
    assert metrics["train_loss"] == first_metrics["train_loss"]  # restored from the checkpoint's log history
    assert metrics["eval_intent_accuracy"] == first_metrics["eval_intent_accuracy"]  # the same trained weights
    assert "train_tokens_per_second" not in metrics  # nothing was trained by this process
