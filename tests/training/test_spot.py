"""Spot safety with real processes: SIGTERM saves a checkpoint and stops; a SIGKILLed run resumes to the same end.

One job folder lives through three processes, as a spot job lives through interruptions:
  1. SIGTERM (where it reaches the script: local runs, torchrun) at step ~20 → a complete checkpoint, exit 143;
  2. restart, resumes, then SIGKILL (no warning; what SageMaker's toolkit leaves a script) mid-training;
  3. restart with what an unordered S3 sync leaves behind (a checkpoint whose marker arrived without its shards,
     and one without marker) → resumes from the newest checkpoint that verifies and finishes.
Periodic saves happen on a time interval: tested in-process with a fake clock (no sleeps).
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.training import Job, create_job, run_main, start_training
from training_code import checkpoints

MAX_STEPS = 300


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
    # The same hyperparameters every time, as SageMaker restarts a job. The default 30-minute save interval never
    # elapses here: the only checkpoint is the SIGTERM one (none is forced at the last step).
    return job.argv(
        model, approach="lora", max_steps=MAX_STEPS, logging_steps=10, eval_samples=8, bertscore_model="none"
    )


def _logged_steps(log: Path) -> list[int]:
    return [int(step) for step in re.findall(r"^train_step=(\d+);", log.read_text(), re.MULTILINE)]


@pytest.fixture(scope="module")
def spot_runs(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> SpotRuns:
    root = tmp_path_factory.mktemp("spot")
    job = create_job(root / "job")
    model = tiny_models["llama"]
    logs = [root / f"run{i}.log" for i in range(3)]

    # 1. SIGTERM once training is under way: only it can save.
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
        (step, checkpoints.read_marker(path)) for step, path in checkpoints.complete_checkpoints(job.checkpoint_dir)
    ]

    # 2. Restart; SIGKILL once it has trained well past the SIGTERM checkpoint.
    sigterm_step = sigterm_checkpoints[-1][0] if sigterm_checkpoints else 0
    second = start_training(job, _argv(job, model), logs[1])
    try:
        _wait_for(lambda: max(_logged_steps(logs[1]), default=0) >= sigterm_step + 30, 120, second, "30 more steps")
        second.send_signal(signal.SIGKILL)
        killed_exit = second.wait(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    complete_steps_at_kill = [step for step, _ in checkpoints.complete_checkpoints(job.checkpoint_dir)]

    # What S3 can give back: a newer checkpoint whose marker was uploaded but not its shards...
    shardless = job.checkpoint_dir / "checkpoint-250"
    shardless.mkdir()
    (shardless / "trainer_state.json").write_text("{}")
    files = {"adapter_model.safetensors": 1_000_000, "optimizer.pt": 2_000_000, "trainer_state.json": 2}
    (shardless / checkpoints.MARKER).write_text(
        json.dumps({"global_step": 250, "max_steps": MAX_STEPS, "files": files})
    )
    # ...and one whose save was interrupted before its marker.
    half_written = job.checkpoint_dir / f"checkpoint-{MAX_STEPS - 1}"
    half_written.mkdir()
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
    assert 20 <= step < MAX_STEPS
    assert marker["global_step"] == step
    assert "adapter_model.safetensors" in marker["files"]
    assert "optimizer.pt" in marker["files"]  # resumable, not just the weights
    assert marker["files"]["optimizer.pt"] > 0  # each file with its size
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
    assert "skipping checkpoint-250: adapter_model.safetensors is missing" in spot_runs.final_log
    assert f"skipping checkpoint-{MAX_STEPS - 1}: no completion marker" in spot_runs.final_log
    job = spot_runs.job
    assert job.training_config()["global_step"] == MAX_STEPS
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.json"):
        assert (job.model_dir / name).is_file(), name
    assert job.metrics()["eval_samples"] == 8
    # The broken ones were removed; the resumed one is kept; no checkpoint was forced at the last step.
    assert [step for step, _ in checkpoints.complete_checkpoints(job.checkpoint_dir)] == [latest_at_kill]
    assert len(list(job.checkpoint_dir.glob("checkpoint-*"))) == 1


def test_restart_after_a_checkpoint_at_the_last_step_evaluates_without_training_again(
    tiny_models: dict[str, Path], make_job
) -> None:
    # Given a finished run whose save interval elapsed at every step, the last one included (a clock that jumps
    # 100 s per reading, 60 s interval)
    job = make_job("restart")
    argv = job.argv(
        tiny_models["llama"],
        approach="lora",
        max_steps=6,
        eval_samples=4,
        bertscore_model="none",
        save_interval_seconds=60,
    )
    jumps = itertools.count(start=0, step=100)
    assert run_main(job, argv, clock=lambda: float(next(jumps))).exit_code == 0
    first_metrics = job.metrics()

    # When it starts again, e.g. the instance was reclaimed while the model was being uploaded
    again = run_main(job, argv)

    assert again.exit_code == 0
    assert job.training_config()["global_step"] == 6  # the Trainer alone would resume into a 7th step
    assert sorted(p.name for p in job.checkpoint_dir.glob("checkpoint-*")) == ["checkpoint-5", "checkpoint-6"]
    metrics = job.metrics()
    assert metrics["train_loss"] == first_metrics["train_loss"]  # restored from the checkpoint's log history
    assert metrics["eval_intent_accuracy"] == first_metrics["eval_intent_accuracy"]  # the same trained weights
    assert "train_tokens_per_second" not in metrics  # nothing was trained by this process


def test_a_run_saves_checkpoints_on_its_time_interval_only(tiny_models: dict[str, Path], make_job) -> None:
    # Given a clock that advances 7 s each time the checkpoint schedule reads it (about once per step)
    ticks = itertools.count(start=0, step=7)
    job = make_job("interval")
    argv = job.argv(tiny_models["llama"], approach="lora", max_steps=30, save_interval_seconds=60, eval_samples=0)

    # When a 30-step run saves every 60 (fake) seconds
    result = run_main(job, argv, clock=lambda: float(next(ticks)))

    # Then it saved several times before the end and not at the end (the final model is saved anyway); the newest
    # two verify and are kept
    assert result.exit_code == 0, result.stdout
    saved = job.training_config()["checkpoints"]["steps"]
    assert len(saved) >= 3
    assert all(step < 30 for step in saved)
    assert [step for step, _ in checkpoints.complete_checkpoints(job.checkpoint_dir)] == saved[-2:]


def test_a_run_whose_interval_never_elapses_writes_no_checkpoint_only_the_final_model(
    tiny_models: dict[str, Path], make_job
) -> None:
    # Given a run shorter than its save interval (the default 30 minutes)
    job = make_job("short")
    argv = job.argv(tiny_models["llama"], approach="full", max_steps=4, eval_samples=0)

    # When it trains to the end
    result = run_main(job, argv)

    # Then the final model is its only save: no checkpoint with a second copy of the weights and the optimizer
    assert result.exit_code == 0, result.stdout
    assert job.training_config()["checkpoints"]["saves"] == 0
    assert list(job.checkpoint_dir.glob("checkpoint-*")) == []
    assert (job.model_dir / "model.safetensors").is_file()
