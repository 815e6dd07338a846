"""Which checkpoint a restart resumes from, which ones rotation keeps, and which runs may continue."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from training_code import checkpoints
from training_code.config import ConfigError


def make_checkpoint(root: Path, step: int, complete: bool = True, **hyperparameters) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        marker = {"global_step": step, "max_steps": 100, "hyperparameters": {"model_id": "m", **hyperparameters}}
        (path / checkpoints.MARKER).write_text(json.dumps(marker))
    return path


def test_resume_picks_the_newest_complete_checkpoint_by_step_not_by_time(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 10)
    newest = make_checkpoint(tmp_path, 20)
    make_checkpoint(tmp_path, 30, complete=False)  # killed while saving
    make_checkpoint(tmp_path, 9)  # restored from S3 last: the most recent mtime
    os.utime(newest, (0, 0))

    assert checkpoints.latest_complete_checkpoint(tmp_path) == newest


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    assert checkpoints.latest_complete_checkpoint(tmp_path / "missing") is None
    make_checkpoint(tmp_path, 5, complete=False)
    assert checkpoints.latest_complete_checkpoint(tmp_path) is None


def test_incomplete_checkpoints_are_removed(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 10)
    partial = make_checkpoint(tmp_path, 20, complete=False)

    assert checkpoints.remove_incomplete(tmp_path) == [partial]
    assert [step for step, _ in checkpoints.complete_checkpoints(tmp_path)] == [10]


def test_rotation_keeps_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        make_checkpoint(tmp_path, step)
    make_checkpoint(tmp_path, 15, complete=False)

    checkpoints.rotate(tmp_path, keep=2)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-30", "checkpoint-40"]


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path, 10, approach="lora", lora_r=16)

    checkpoints.check_resumable(checkpoint, {"model_id": "m", "approach": "lora", "lora_r": 16, "eval_samples": 9})
    with pytest.raises(ConfigError, match=r"approach \('lora' → 'full'\)"):
        checkpoints.check_resumable(checkpoint, {"model_id": "m", "approach": "full", "lora_r": 16})


def test_the_last_step_of_the_same_budget_is_final(tmp_path: Path) -> None:
    final = make_checkpoint(tmp_path, 100, max_steps=100, epochs=1.0)
    earlier = make_checkpoint(tmp_path, 50, max_steps=100, epochs=1.0)

    assert checkpoints.is_final(final, {"max_steps": 100, "epochs": 1.0})
    assert not checkpoints.is_final(earlier, {"max_steps": 100, "epochs": 1.0})
    assert not checkpoints.is_final(final, {"max_steps": 200, "epochs": 1.0})  # a longer run continues from it
