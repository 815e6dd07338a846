"""Spot-safe checkpoints: time-interval saves, verified completion markers, resume, rotation, SIGTERM saves.

The Trainer writes `checkpoint-<step>/` into `checkpoint_dir`, which SageMaker syncs with S3 while the job runs and
restores from S3 when a spot job restarts. Three facts of that sync shape this module:

* **No order.** Files reach S3 in any order, so a restored checkpoint can hold its completion marker without its
  shards, or a shard cut short. The marker (`checkpoint_complete.json`) therefore lists the name and size of every
  file of the checkpoint, and a restart *verifies* it: a checkpoint whose files are missing or of another size is
  skipped with a warning, and training resumes from the newest checkpoint that verifies.
* **One copy per node.** On a multi-node job every node has its own local `checkpoint_dir`, synced to the same S3
  prefix; each rank writes its own files (FSDP shards, RNG state) on its node, and only the union in S3 is whole.
  So after a save every node's first local rank lists what its node wrote, global rank 0 writes a marker listing
  the union, and every node rotates its own copy. At a restart every node holds the full S3 copy, verifies it,
  and all ranks resume from the newest checkpoint that verifies on *every* node.
* **No SIGTERM.** The training toolkit does not forward SIGTERM to the script (sagemaker-training-toolkit issues
  #125, #173), so periodic saves are the protection. They happen on a time interval (what an interruption loses is
  time). A SIGTERM that does arrive (local runs, torchrun) still saves and stops.

No checkpoint is forced at the last step: train.py saves the final model right after it, and a checkpoint there
would write the optimizer state once more for nothing (a 7B full fine-tune: ≈ 81 GB to write and upload). The cost
is bounded: a restart between the end of training and the end of the upload resumes from the newest interval
checkpoint and trains at most one interval again (a checkpoint that does land on the last step is still recognised
by `is_final`, and training is skipped).

Rotation is ours (the newest `save_total_limit` verified checkpoints, by step), not the Trainer's mtime-based one:
files restored from S3 carry download times.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    "prompt_style",
    "seed",
)


@dataclass(frozen=True)
class Checkpoint:
    """One `checkpoint-<step>` directory and, when it cannot be resumed from, why."""

    step: int
    path: Path
    problem: str | None

    @property
    def complete(self) -> bool:
        """Whether every file its marker lists is present with the listed size."""
        return self.problem is None


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
    """The completion marker of `checkpoint`, or None when it has none (or an unreadable one)."""
    try:
        marker = json.loads((checkpoint / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def list_files(checkpoint: Path) -> dict[str, int]:
    """Relative path → size in bytes of every file under `checkpoint`, the marker excepted."""
    files = {}
    for path in sorted(checkpoint.rglob("*")):
        if path.is_file() and path.name != MARKER and not path.name.startswith(f"{MARKER}."):
            files[path.relative_to(checkpoint).as_posix()] = path.stat().st_size
    return files


def verify(checkpoint: Path, step: int) -> str | None:
    """None when `checkpoint` can be resumed from, else why not (marker missing, a file missing or cut short)."""
    marker = read_marker(checkpoint)
    if marker is None:
        return "no completion marker (killed while saving, or its upload never finished)"
    if marker.get("global_step") != step:
        return f"its marker is for step {marker.get('global_step')}, not {step}"
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return "its marker lists no files"
    for name, size in files.items():
        path = checkpoint / name
        try:
            actual = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} has {actual} bytes, the marker says {size}"
    return None


def scan(checkpoint_dir: Path) -> list[Checkpoint]:
    """Every checkpoint directory under `checkpoint_dir`, oldest first, each verified against its marker."""
    return [Checkpoint(step, path, verify(path, step)) for step, path in _checkpoint_dirs(checkpoint_dir)]


def complete_checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint that verifies, oldest first."""
    return [(c.step, c.path) for c in scan(checkpoint_dir) if c.complete]


def prune(checkpoint_dir: Path, keep_steps: list[int]) -> list[Path]:
    """Delete every checkpoint directory whose step is not in `keep_steps`; return what was removed."""
    removed = []
    for step, path in _checkpoint_dirs(checkpoint_dir):
        if step not in keep_steps:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def write_marker(checkpoint: Path, marker: dict[str, Any]) -> None:
    """Write the marker atomically: the S3 sync (or a reader) never sees a half-written one."""
    temporary = checkpoint / f"{MARKER}.tmp"
    temporary.write_text(json.dumps(marker, indent=2))
    os.replace(temporary, checkpoint / MARKER)


def merge_listings(listings: list[dict[str, int] | None]) -> tuple[dict[str, int], list[str]]:
    """The union of the nodes' file listings, and the names listed with different sizes by different nodes."""
    files: dict[str, int] = {}
    conflicts = []
    for listing in listings:
        for name, size in (listing or {}).items():
            if name in files and files[name] != size:
                conflicts.append(name)
            files.setdefault(name, size)
    return files, sorted(set(conflicts))


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


def _is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _gather(value: Any) -> list[Any]:
    """Every rank's `value` (a one-element list when not distributed)."""
    if not _is_distributed():
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _barrier() -> None:
    if _is_distributed():
        import torch.distributed as dist

        dist.barrier()


@dataclass(frozen=True)
class ResumePlan:
    """Where training starts: the checkpoint to resume from (None: from scratch) and the checkpoints kept."""

    resume_from: Path | None
    kept_steps: list[int]


def plan_resume(checkpoint_dir: Path, keep: int, is_local_main: bool) -> ResumePlan:
    """Verify this node's checkpoints, agree with the other nodes, and prune what will not be resumed.

    Collective under torchrun: every rank calls it. Each rank verifies its node's local copy; the checkpoints
    resumable everywhere are those that verify on every rank. Each node's first local rank then deletes its other
    checkpoint directories (incomplete ones, ones newer than the agreed resume point, and those beyond `keep`), so
    that a later save never mixes new files with a broken checkpoint's leftovers.
    """
    found = scan(checkpoint_dir)
    if is_local_main:
        for checkpoint in found:
            if not checkpoint.complete:
                LOG.warning("skipping %s: %s", checkpoint.path.name, checkpoint.problem)
    valid_everywhere = set.intersection(*(set(steps) for steps in _gather([c.step for c in found if c.complete])))
    kept = sorted(valid_everywhere)[-keep:]
    if is_local_main:
        for path in prune(checkpoint_dir, kept):
            LOG.info("removed checkpoint %s (not resumed from)", path.name)
    _barrier()  # no rank may look at a directory that is being deleted
    resume_from = checkpoint_dir / f"checkpoint-{kept[-1]}" if kept else None
    return ResumePlan(resume_from=resume_from, kept_steps=kept)


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
        """Start catching SIGTERM (SageMaker's stop / spot reclaim notice where it reaches us; torchrun forwards it)."""
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        """Restore the previous handler: outside the training loop there is no progress a SIGTERM could lose."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class SaveSchedule:
    """Whether `interval_seconds` of training have passed since the last save finished (or training started).

    Counting from the end of the previous save keeps the share of time spent saving below
    save time / (interval + save time), whatever a save costs.
    """

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._since = clock()

    def restart(self) -> None:
        """Start a new interval now."""
        self._since = self._clock()

    def due(self) -> bool:
        """Whether a save is due."""
        return self._clock() - self._since >= self.interval_seconds

    def now(self) -> float:
        """The schedule's clock (for timing saves with the same clock)."""
        return self._clock()


@dataclass
class SaveStats:
    """What checkpointing cost this process: saves, seconds spent in them, bytes written (all nodes)."""

    saves: int = 0
    seconds: float = 0.0
    bytes: int = 0
    steps: list[int] = field(default_factory=list)


def _agree(stop_requested: bool, due: bool, device: Any) -> tuple[bool, bool]:
    """Every rank's (stop, save) decision for this step: any rank's request counts for all (identity when not
    distributed). Every rank must save and stop at the same step, or the next collective would hang."""
    if not _is_distributed():
        return stop_requested, due
    import torch
    import torch.distributed as dist

    flags = torch.tensor([float(stop_requested), float(due)], device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0].item()), bool(flags[1].item())


def _mark_if_complete(
    checkpoint: Path, listings: list[Any], max_steps: int, step: int, hyperparameters: dict[str, Any]
) -> tuple[bool, int]:
    """Rank 0: write the completion marker when the nodes' listings agree; (marked, bytes in the checkpoint)."""
    files, conflicts = merge_listings(listings)
    size = sum(files.values())
    if not files:
        LOG.error("%s not marked complete: no rank wrote any file into it", checkpoint.name)
        return False, size
    if conflicts:
        LOG.error("%s not marked complete: nodes wrote different sizes of %s", checkpoint.name, conflicts)
        return False, size
    marker = {
        "global_step": step,
        "max_steps": max_steps,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hyperparameters": hyperparameters,
        "files": files,
    }
    write_marker(checkpoint, marker)
    return True, size


def _rotate(checkpoint_dir: Path, kept: list[int], marked_step: int | None, keep: int, is_local_main: bool) -> None:
    """Add a newly marked step to `kept` (in place), keep the newest `keep`, and prune the rest on this node."""
    if marked_step is not None:
        kept.append(marked_step)
        del kept[:-keep]
    if is_local_main:
        for path in prune(checkpoint_dir, kept):
            LOG.info("removed old checkpoint %s", path.name)


def _log_save(checkpoint: Path, size: int, seconds: float, stop: StopRequest) -> None:
    """Rank 0: what the save cost, and how long after SIGTERM it completed."""
    LOG.info("%s saved: %.2f GB in %.1f s", checkpoint.name, size / 1e9, seconds)
    if stop.requested and stop.received_at is not None:
        elapsed = time.monotonic() - stop.received_at
        LOG.warning("checkpoint %s complete %.1f s after SIGTERM", checkpoint.name, elapsed)


def make_checkpoint_callback(
    checkpoint_dir: Path,
    keep: int,
    kept_steps: list[int],
    hyperparameters: dict[str, Any],
    stop: StopRequest,
    schedule: SaveSchedule,
    is_main: bool,
    is_local_main: bool,
):  # -> transformers.TrainerCallback
    """A TrainerCallback that saves on `schedule` and on SIGTERM (never just because it is the last step: the final
    model is saved after training anyway), then marks and rotates.

    `kept_steps` are the verified checkpoints that already exist (from `plan_resume`); the callback extends and
    rotates that list. The Trainer's own save strategy must be off: this callback decides every save.
    """
    from transformers import TrainerCallback

    kept = list(kept_steps)

    class SpotCheckpointCallback(TrainerCallback):
        """Decides saves (time, SIGTERM), marks complete checkpoints, rotates them on every node."""

        def __init__(self) -> None:
            self.stats = SaveStats()
            self._save_started: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            schedule.restart()  # loading the model and resuming is not training time
            return control

        def on_step_end(self, args, state, control, **kwargs):
            stop_requested, due = _agree(stop.requested, schedule.due(), args.device)
            if stop_requested:
                stop.requested = True
                LOG.warning("SIGTERM received: saving a checkpoint at step %d and stopping", state.global_step)
                control.should_training_stop = True
            if stop_requested or due:
                control.should_save = True
                self._save_started = schedule.now()
            return control

        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            checkpoint = checkpoint_dir / f"checkpoint-{step}"
            _barrier()  # every rank of every node has written its files
            listings = _gather(list_files(checkpoint) if is_local_main else None)
            marked, size = False, 0
            if is_main:
                marked, size = _mark_if_complete(checkpoint, listings, state.max_steps, step, hyperparameters)
            marked = bool(_gather(marked)[0])  # rank 0's verdict, for every rank's rotation
            _rotate(checkpoint_dir, kept, step if marked else None, keep, is_local_main)
            _barrier()
            seconds = schedule.now() - self._save_started if self._save_started is not None else 0.0
            self.stats.saves += 1
            self.stats.seconds += seconds
            self.stats.bytes += size
            self.stats.steps.append(step)
            if is_main:
                _log_save(checkpoint, size, seconds, stop)
            schedule.restart()
            return control

    return SpotCheckpointCallback()
