"""Spot-safe checkpoints: completion markers, resume from the latest complete one, rotation, SIGTERM saves.

The Trainer writes `checkpoint-<step>/` into `checkpoint_dir` (SageMaker syncs it with S3). A checkpoint counts as
complete only once `checkpoint_complete.json` exists in it: the marker is written after every rank has finished
writing, so a process killed mid-save (SIGKILL, instance reclaimed) leaves a directory without marker that resume
ignores and the next start deletes. Rotation is ours (by step number among complete checkpoints), not the
Trainer's mtime-based one, because checkpoints restored from S3 after a spot interruption carry download times.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from training_code.config import ConfigError

LOG = logging.getLogger(__name__)

MARKER = "checkpoint_complete.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Hyperparameters that must match to continue a run from its checkpoints (others, e.g. eval_samples, may change).
IDENTITY_FIELDS = (
    "model_id",
    "approach",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "lora_modules_to_save",
    "per_device_batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "seed",
)


def _checkpoint_dirs(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for path in checkpoint_dir.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_marker(checkpoint: Path) -> dict[str, Any] | None:
    """The completion marker of `checkpoint`, or None when it is incomplete (or being deleted by another rank)."""
    try:
        return json.loads((checkpoint / MARKER).read_text())
    except (OSError, ValueError):
        return None


def complete_checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    return [(step, path) for step, path in _checkpoint_dirs(checkpoint_dir) if read_marker(path) is not None]


def latest_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None to start from scratch."""
    complete = complete_checkpoints(checkpoint_dir)
    return complete[-1][1] if complete else None


def remove_incomplete(checkpoint_dir: Path) -> list[Path]:
    """Delete checkpoint directories without a marker (left by a kill mid-save); return what was removed."""
    removed = []
    for _, path in _checkpoint_dirs(checkpoint_dir):
        if read_marker(path) is None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def rotate(checkpoint_dir: Path, keep: int) -> list[Path]:
    """Keep the `keep` newest complete checkpoints (by step); delete older ones, complete or not."""
    complete = complete_checkpoints(checkpoint_dir)
    if not complete:
        return []
    oldest_kept = complete[-keep][0] if len(complete) >= keep else complete[0][0]
    removed = []
    for step, path in _checkpoint_dirs(checkpoint_dir):
        if step < oldest_kept:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def check_resumable(checkpoint: Path, hyperparameters: dict[str, Any]) -> None:
    """Refuse to continue a run whose checkpoint was written with different identity hyperparameters."""
    marker = read_marker(checkpoint) or {}
    previous = marker.get("hyperparameters", {})
    changed = [
        f"{name} ({previous.get(name)!r} → {hyperparameters.get(name)!r})"
        for name in IDENTITY_FIELDS
        if name in previous and previous.get(name) != hyperparameters.get(name)
    ]
    if changed:
        raise ConfigError(
            f"checkpoint_dir holds {checkpoint.name} of a different run: {', '.join(changed)}. "
            "Use an empty checkpoint_dir for a new run."
        )


def is_final(checkpoint: Path, hyperparameters: dict[str, Any]) -> bool:
    """Whether `checkpoint` ends this run's training (same step budget, last step reached).

    A restart after the last checkpoint (e.g. interrupted during evaluation) then skips training instead of
    letting the Trainer, which resumes into the next epoch, run one step past max_steps.
    """
    marker = read_marker(checkpoint) or {}
    previous = marker.get("hyperparameters", {})
    same_budget = all(previous.get(name) == hyperparameters.get(name) for name in ("max_steps", "epochs"))
    return same_budget and marker.get("global_step", -1) >= marker.get("max_steps", float("inf"))


class StopRequest:
    """Set by SIGTERM; polled once per optimizer step (a signal handler must not save by itself)."""

    def __init__(self) -> None:
        self.requested = False
        self.received_at: float | None = None
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.received_at = time.monotonic()

    def install(self) -> None:
        """Start catching SIGTERM (SageMaker's stop / spot reclaim notice; torchrun forwards it to workers)."""
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        """Restore the previous handler: outside the training loop there is no progress a SIGTERM could lose."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def _is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def make_checkpoint_callback(
    checkpoint_dir: Path, keep: int, hyperparameters: dict[str, Any], stop: StopRequest, is_main: bool
):  # -> transformers.TrainerCallback
    """A TrainerCallback that saves and stops on SIGTERM, and marks and rotates checkpoints after each save."""
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback

    class SpotCheckpointCallback(TrainerCallback):
        """Marks complete checkpoints, rotates them, and turns a SIGTERM into a checkpoint plus a clean stop."""

        def on_step_end(self, args, state, control, **kwargs):
            requested = stop.requested
            if _is_distributed():
                # Every rank must stop at the same step, or the next collective would hang: agree on the flag.
                flag = torch.tensor([1.0 if requested else 0.0], device=args.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                requested = bool(flag.item())
            if requested:
                stop.requested = True
                LOG.warning("SIGTERM received: saving a checkpoint at step %d and stopping", state.global_step)
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_save(self, args, state, control, **kwargs):
            if _is_distributed():
                dist.barrier()  # all ranks have written their part (weights, optimizer shards, RNG states)
            if is_main:
                checkpoint = checkpoint_dir / f"checkpoint-{state.global_step}"
                marker = {
                    "global_step": state.global_step,
                    "max_steps": state.max_steps,
                    "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "hyperparameters": hyperparameters,
                }
                (checkpoint / MARKER).write_text(json.dumps(marker, indent=2))
                for path in rotate(checkpoint_dir, keep):
                    LOG.info("removed old checkpoint %s", path.name)
                if stop.requested and stop.received_at is not None:
                    elapsed = time.monotonic() - stop.received_at
                    LOG.warning("checkpoint %s complete %.1f s after SIGTERM", checkpoint.name, elapsed)
            if _is_distributed():
                dist.barrier()
            return control

    return SpotCheckpointCallback()
