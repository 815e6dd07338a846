"""Which checkpoint a restart resumes from, what counts as complete, when saves happen and what rotation keeps.

SageMaker restores `checkpoint_dir` from S3, which it filled in no particular order: these tests build the broken
states that produces (a marker without its shards, a shard cut short) and check that resume falls back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from training_code import checkpoints
from training_code.config import ConfigError

FILES = {"adapter_model.safetensors": b"weights" * 10, "optimizer.pt": b"moments" * 20, "trainer_state.json": b"{}"}


def make_checkpoint(root: Path, step: int, complete: bool = True, **hyperparameters) -> Path:
    """A checkpoint as the callback leaves it: its files and, when complete, a marker listing them."""
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name, content in FILES.items():
        (path / name).write_bytes(content)
    if complete:
        marker = {
            "global_step": step,
            "max_steps": 100,
            "hyperparameters": {"model_id": "m", **hyperparameters},
            "files": checkpoints.list_files(path),
        }
        checkpoints.write_marker(path, marker)
    return path


def resume_step(root: Path, keep: int = 2) -> int | None:
    plan = checkpoints.plan_resume(root, keep, is_local_main=True)
    return int(plan.resume_from.name.split("-")[1]) if plan.resume_from else None


def test_resume_picks_the_newest_complete_checkpoint_by_step_not_by_time(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 10)
    newest = make_checkpoint(tmp_path, 20)
    make_checkpoint(tmp_path, 30, complete=False)  # killed while saving
    make_checkpoint(tmp_path, 9)  # restored from S3 last: the most recent mtime
    os.utime(newest, (0, 0))

    assert resume_step(tmp_path, keep=3) == 20


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    assert checkpoints.plan_resume(tmp_path / "missing", 2, is_local_main=True).resume_from is None
    make_checkpoint(tmp_path, 5, complete=False)

    assert resume_step(tmp_path) is None


def test_a_restored_marker_without_its_shards_falls_back_to_the_previous_complete_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the S3 sync uploaded checkpoint-20's marker but not its adapter before the instance was reclaimed
    make_checkpoint(tmp_path, 10)
    broken = make_checkpoint(tmp_path, 20)
    (broken / "adapter_model.safetensors").unlink()

    # When the restarted job plans its resume
    step = resume_step(tmp_path)

    # Then it resumes from checkpoint-10, says why, and the broken directory is gone (a later save cannot mix with it)
    assert step == 10
    assert "skipping checkpoint-20: adapter_model.safetensors is missing" in caplog.text
    assert not broken.exists()


def test_a_truncated_shard_falls_back_to_the_previous_complete_checkpoint(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 10)
    broken = make_checkpoint(tmp_path, 20)
    (broken / "optimizer.pt").write_bytes(b"moments")  # cut short: 7 of 140 bytes

    assert checkpoints.verify(broken, 20) == "optimizer.pt has 7 bytes, the marker says 140"
    assert resume_step(tmp_path) == 10


def test_a_marker_copied_from_another_step_does_not_make_a_checkpoint_complete(tmp_path: Path) -> None:
    source = make_checkpoint(tmp_path, 10)
    copy = tmp_path / "checkpoint-40"
    shutil.copytree(source, copy)

    assert checkpoints.verify(copy, 40) == "its marker is for step 10, not 40"


def test_resume_keeps_only_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        make_checkpoint(tmp_path, step)
    make_checkpoint(tmp_path, 15, complete=False)

    plan = checkpoints.plan_resume(tmp_path, keep=2, is_local_main=True)

    assert plan.kept_steps == [30, 40]
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


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_save_is_due_once_the_interval_has_passed_since_the_last_save_ended() -> None:
    clock = FakeClock()
    schedule = checkpoints.SaveSchedule(1800, clock)

    clock.now += 1799
    assert not schedule.due()
    clock.now += 1
    assert schedule.due()
    clock.now += 600  # the save itself took 10 minutes: they do not count towards the next interval
    schedule.restart()
    clock.now += 1799
    assert not schedule.due()


def _step(callback, step: int, max_steps: int = 100) -> bool:
    """Run the callback's step-end hook; return whether it asked for a save."""
    from transformers import TrainerControl

    state = SimpleNamespace(global_step=step, max_steps=max_steps)
    return callback.on_step_end(SimpleNamespace(device="cpu"), state, TrainerControl()).should_save


def _callback(tmp_path: Path, clock: FakeClock, kept: list[int] | None = None, is_main: bool = True):
    schedule = checkpoints.SaveSchedule(60, clock)
    return checkpoints.make_checkpoint_callback(
        tmp_path, 2, kept or [], {"model_id": "m"}, checkpoints.StopRequest(), schedule, is_main, is_local_main=True
    )


def test_checkpoints_are_saved_on_the_time_interval_and_not_forced_at_the_last_step(tmp_path: Path) -> None:
    clock = FakeClock()
    callback = _callback(tmp_path, clock)
    callback.on_train_begin(None, None, None)

    decisions = {}
    for step in range(1, 11):
        clock.now += 25  # 25 s per step: 60 s have passed at step 3, then again 3 steps after each save
        decisions[step] = _step(callback, step, max_steps=10)
        if decisions[step]:
            make_checkpoint(tmp_path, step, complete=False)  # what the Trainer writes
            callback.on_save(None, SimpleNamespace(global_step=step, max_steps=10), None)

    # The last step (10) saves nothing: the final model is saved after training anyway.
    assert [step for step, save in decisions.items() if save] == [3, 6, 9]
    assert [step for step, _ in checkpoints.complete_checkpoints(tmp_path)] == [6, 9]


def test_a_save_marks_every_file_with_its_size_and_rotates_by_step(tmp_path: Path) -> None:
    clock = FakeClock()
    for step in (10, 20):
        make_checkpoint(tmp_path, step)
    callback = _callback(tmp_path, clock, kept=[10, 20])
    new = make_checkpoint(tmp_path, 30, complete=False)  # what the Trainer wrote

    callback.on_save(None, SimpleNamespace(global_step=30, max_steps=100), None)

    marker = checkpoints.read_marker(new)
    assert marker["files"] == {name: len(content) for name, content in FILES.items()}
    assert checkpoints.verify(new, 30) is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-20", "checkpoint-30"]
    assert callback.stats.steps == [30]


def test_on_a_multi_node_job_the_marker_lists_every_nodes_files_and_each_node_verifies_the_union(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two nodes, each writing its own ranks' FSDP shards into its own local checkpoint_dir
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    for node, rank in ((node0, 0), (node1, 1)):
        checkpoint = node / "checkpoint-50"
        (checkpoint / "pytorch_model_fsdp_0").mkdir(parents=True)
        (checkpoint / "pytorch_model_fsdp_0" / f"__{rank}_0.distcp").write_bytes(b"shard" * (rank + 1))
        (checkpoint / f"rng_state_{rank}.pth").write_bytes(b"rng")
    (node0 / "checkpoint-50" / "trainer_state.json").write_text("{}")  # global rank 0 only
    node1_listing = checkpoints.list_files(node1 / "checkpoint-50")
    # all_gather_object across the nodes' first local ranks: node 0 receives node 1's listing
    monkeypatch.setattr(checkpoints, "_gather", lambda value: [value, node1_listing])

    # When global rank 0 (on node 0) marks the checkpoint
    callback = _callback(node0, FakeClock())
    callback.on_save(None, SimpleNamespace(global_step=50, max_steps=100), None)

    # Then the marker lists both nodes' files; a node's local copy alone is not complete, S3's union is
    marker = checkpoints.read_marker(node0 / "checkpoint-50")
    assert sorted(marker["files"]) == [
        "pytorch_model_fsdp_0/__0_0.distcp",
        "pytorch_model_fsdp_0/__1_0.distcp",
        "rng_state_0.pth",
        "rng_state_1.pth",
        "trainer_state.json",
    ]
    assert checkpoints.verify(node0 / "checkpoint-50", 50) == "pytorch_model_fsdp_0/__1_0.distcp is missing"
    restored = tmp_path / "restored"  # what every node downloads from S3 at a restart
    shutil.copytree(node1, restored)
    shutil.copytree(node0, restored, dirs_exist_ok=True)
    monkeypatch.undo()
    assert resume_step(restored) == 50


def test_nodes_that_wrote_the_same_file_with_different_sizes_leave_the_checkpoint_unmarked() -> None:
    files, conflicts = checkpoints.merge_listings([{"a": 1, "b": 2}, {"b": 3, "c": 4}, None])

    assert files == {"a": 1, "b": 2, "c": 4}
    assert conflicts == ["b"]


def test_the_marker_never_appears_half_written(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path, 10, complete=False)

    checkpoints.write_marker(checkpoint, {"global_step": 10, "files": {"x": 1}})

    assert json.loads((checkpoint / checkpoints.MARKER).read_text())["global_step"] == 10
    assert sorted(path.name for path in checkpoint.iterdir() if "complete" in path.name) == [checkpoints.MARKER]
