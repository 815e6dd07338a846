"""Where a job's time goes: the phase metrics the time model is calibrated with, and the timed Hub download.

Each phase prints one catalog line (`time_<phase>_seconds=<s>;`) when it ends, on rank 0 (lambdas/catalog.METRICS
holds the regexes; lambdas/calibration.py compares them with the estimate's parts):

  time_download_seconds    the Hub snapshot download (0 for a local model directory)
  time_load_seconds        loading (and quantizing) the weights onto the device(s)
  time_train_seconds       the training loop, checkpoint saves excluded
  time_checkpoint_seconds  every checkpoint save of this process, waits for the other ranks included
  time_evaluate_seconds    evaluation, any reload and the merged model's timing included
  time_save_seconds        the final model/adapter save
  checkpoint_saves         how many checkpoints were saved
  checkpoint_bytes         bytes of the last checkpoint written on this node

What no phase covers (reading data, tokenizers, the BERTScore encoder, imports) is the calibration's `install` part:
SageMaker's Training phase minus these.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from training_code.telemetry import metric_line

LOG = logging.getLogger(__name__)

PHASES = ("download", "load", "train", "checkpoint", "evaluate", "save")
PHASE_METRICS = (*(f"time_{phase}_seconds" for phase in PHASES), "checkpoint_saves", "checkpoint_bytes")
# Files a training job needs from a Hub repository: configs, tokenizer files and ONE copy of the weights. Llama-2
# repositories ship both safetensors and .bin weights (13.5 GB each at 7B): downloading both doubles the time.
_CONFIG_PATTERNS = ("*.json", "*.model", "*.txt", "*.tiktoken", "tokenizer*")


class Phases:
    """Times the job's phases and prints each one's metric line when it ends (on the main rank only)."""

    def __init__(self, is_main: bool, stream: TextIO | None = None, clock: Callable[[], float] = time.perf_counter):
        self.is_main = is_main
        self._stream = stream
        self._clock = clock
        self.values: dict[str, float] = {}

    def record(self, name: str, value: float) -> None:
        """Keep and print one phase metric (`time_<phase>_seconds` or a count)."""
        self.values[name] = value
        if self.is_main:
            print(metric_line({name: value}), file=self._stream or sys.stdout, flush=True)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Time the block as `phase` (printed when it ends, also when it raises: a failed phase still took time)."""
        started = self._clock()
        try:
            yield
        finally:
            self.record(f"time_{phase}_seconds", self._clock() - started)

    def record_training(self, train_wall_seconds: float, saves: SaveTimer) -> None:
        """The training loop's metrics: its wall time less the checkpoint saves, and the saves themselves."""
        self.record("time_train_seconds", max(train_wall_seconds - saves.seconds, 0.0))
        self.record("time_checkpoint_seconds", saves.seconds)
        self.record("checkpoint_saves", saves.saves)
        self.record("checkpoint_bytes", saves.last_bytes)


class SaveTimer:
    """Real seconds and bytes of the checkpoint saves, measured by a TrainerCallback (see `make_save_timer`)."""

    def __init__(self) -> None:
        self.saves = 0
        self.seconds = 0.0
        self.last_bytes = 0


def make_save_timer(
    checkpoint_dir: Path, clock: Callable[[], float] = time.perf_counter
):  # -> tuple[TrainerCallback, SaveTimer]
    """A TrainerCallback timing every checkpoint save with a real clock, and the `SaveTimer` it fills.

    Added after the checkpoint callback: at `on_step_end` that callback has decided `should_save`, the Trainer then
    writes the checkpoint, and at `on_save` that callback has verified, marked and rotated it (waits included), so
    the time between the two is this process's whole share of the save.
    """
    from transformers import TrainerCallback

    timer = SaveTimer()

    class SaveTimerCallback(TrainerCallback):
        """Marks the start of a save at the step's end and its end after the checkpoint callback's `on_save`."""

        def __init__(self) -> None:
            self._started: float | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if control.should_save:
                self._started = clock()
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if self._started is not None:
                timer.seconds += clock() - self._started
                self._started = None
            timer.saves += 1
            checkpoint = checkpoint_dir / f"checkpoint-{state.global_step}"
            timer.last_bytes = directory_bytes(checkpoint)
            return control

    return SaveTimerCallback(), timer


def directory_bytes(directory: Path) -> int:
    """Bytes of every file under `directory` (its completeness marker included: it is uploaded too); 0 if absent."""
    if not directory.is_dir():
        return 0
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def snapshot_patterns(repo_files: Sequence[str]) -> list[str]:
    """`allow_patterns` for a repository's snapshot: configs and tokenizer files, and safetensors weights where the
    repository has them (.bin weights otherwise), never both."""
    weights = "*.safetensors" if any(name.endswith(".safetensors") for name in repo_files) else "*.bin"
    return [*_CONFIG_PATTERNS, weights]


def download_snapshot(model_id: str, token: str | None) -> Path | None:
    """Download `model_id`'s files into the Hugging Face cache (where every later `from_pretrained` finds them),
    so that the download is timed apart from the load. Nothing to do for a local directory or when offline."""
    if Path(model_id).expanduser().is_dir():
        return None
    from huggingface_hub import HfApi, constants, snapshot_download

    if constants.HF_HUB_OFFLINE:
        LOG.info("HF_HUB_OFFLINE is set: %s is read from the local cache", model_id)
        return None
    patterns = snapshot_patterns(HfApi().list_repo_files(model_id, token=token))
    return Path(snapshot_download(model_id, token=token, allow_patterns=patterns))
