"""Training-code test helpers: the bundled dataset, SageMaker-like job folders, and runs of `train.py` in this
process (`run_main`) or as a real process (`start_training`).

Most runs call `train.main` in this process, so TRL is imported once per session (10+ s per import); only the tests
that need a real process (SIGKILL, SIGTERM, torchrun) start `training_code/train.py` as a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET_DIR = REPO_ROOT / "examples" / "datasets" / "banking77-mini"
TRAIN_SCRIPT = REPO_ROOT / "training_code" / "train.py"
ARCHITECTURES = ("llama", "mistral", "gpt-neox")


def dataset_rows(split: str) -> list[dict[str, str]]:
    """Rows of the bundled dataset's `split` (train or test)."""
    return [json.loads(line) for line in (DATASET_DIR / f"{split}.jsonl").read_text().splitlines() if line.strip()]


def tokenizer_corpus() -> list[str]:
    """What the tiny models' tokenizers and warm-up see: the train texts and the label names only."""
    rows = dataset_rows("train")
    return [row["text"] for row in rows] + sorted({row["label"] for row in rows})


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while the block runs. Tiny models gain little from two, and on a shared 2-core machine
    under load two threads spin-wait for each other: building the three tiny models took 98 s instead of 7 s
    (measured)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Job:
    """A SageMaker-like job folder: channels, model dir, output dirs and a checkpoint dir."""

    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def environ(self) -> dict[str, str]:
        """The SM_* variables SageMaker sets (the channels hold the bundled dataset)."""
        return {
            "SM_CHANNEL_TRAIN": str(self.root / "input" / "train"),
            "SM_CHANNEL_TEST": str(self.root / "input" / "test"),
            "SM_MODEL_DIR": str(self.model_dir),
            "SM_OUTPUT_DATA_DIR": str(self.output_data_dir),
            "SM_OUTPUT_DIR": str(self.output_dir),
        }

    def argv(self, model: Path, **hyperparameters: Any) -> list[str]:
        """`--name value` arguments as the toolkit passes them (booleans as True/False, like str(bool))."""
        values = {"model_id": str(model), "checkpoint_dir": str(self.checkpoint_dir), **hyperparameters}
        argv: list[str] = []
        for name, value in values.items():
            argv += [f"--{name}", str(value)]
        return argv

    def metrics(self) -> dict[str, float]:
        """metrics.json from SM_MODEL_DIR."""
        return json.loads((self.model_dir / "metrics.json").read_text())

    def training_config(self) -> dict[str, Any]:
        """training_config.json from SM_MODEL_DIR."""
        return json.loads((self.model_dir / "training_config.json").read_text())

    def failure(self) -> str:
        """The failure reason the job wrote ($SM_OUTPUT_DIR/failure)."""
        return (self.output_dir / "failure").read_text()


def create_job(root: Path) -> Job:
    """A job folder under `root` with the bundled dataset in its train and test channels."""
    job = Job(root)
    for split in ("train", "test"):
        channel = job.root / "input" / split
        channel.mkdir(parents=True)
        shutil.copy(DATASET_DIR / f"{split}.jsonl", channel / f"{split}.jsonl")
    return job


@dataclass
class InProcessResult:
    """Exit status and stdout of one in-process `train.main` run."""

    exit_code: int
    stdout: str


def run_main(job: Job, argv: list[str], clock: Callable[[], float] | None = None) -> InProcessResult:
    """Run `training_code.train.main(argv)` in this process with the job's SM_* variables; capture its stdout.

    `clock` replaces the monotonic clock of the checkpoint schedule (a fake clock: no test sleeps).
    """
    from training_code import train

    environ = {name: value for name, value in os.environ.items() if name not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    stdout = io.StringIO()
    # train.setup_logging configures the root logger for a process of its own (basicConfig on the stderr of the
    # moment, force=True): put it back, or later tests in this process log into a stream a capture has closed.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with mock.patch.dict(os.environ, {**environ, **job.environ}, clear=True), contextlib.redirect_stdout(stdout):
            exit_code = train.main(argv, clock=clock) if clock is not None else train.main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return InProcessResult(exit_code=exit_code, stdout=stdout.getvalue())


def subprocess_environ(job: Job) -> dict[str, str]:
    """Environment of a real training process: offline, unbuffered, the job's SM_* variables."""
    return {
        **os.environ,
        **job.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # two processes on two cores: don't oversubscribe
    }


def start_training(job: Job, argv: list[str], log_path: Path, launcher: list[str] | None = None) -> subprocess.Popen:
    """Start `train.py` as a real process (optionally under a launcher such as torchrun), output to `log_path`."""
    command = [*(launcher or [sys.executable]), str(TRAIN_SCRIPT), *argv]
    log = log_path.open("w")
    return subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_environ(job), stdout=log, stderr=subprocess.STDOUT)
