"""Metric lines on stdout (the catalog's `name=value;` format), metrics.json, progress and memory measurement.

SageMaker extracts metrics from the log with the regexes of `lambdas/catalog.py` (this code does not import it: it
ships alone); the offline runner parses stdout the same way. Only rank 0 prints.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
from pathlib import Path
from typing import Any, TextIO

from training_code.evaluation import EVAL_METRICS, MERGED_METRICS

LOG = logging.getLogger(__name__)

# The order in which final metrics are printed (the catalog's order): the dataset's, training's, then the evaluation's.
DATASET_METRICS = ("dataset_train_rows", "dataset_test_rows")
TRAINING_METRICS = (
    "train_loss",
    "train_tokens_per_second",
    "train_padding_fraction",
    "train_runtime_seconds",
    "peak_memory_gb",
)
FINAL_METRICS = DATASET_METRICS + TRAINING_METRICS + EVAL_METRICS + MERGED_METRICS
# The hyperparameters the job actually used, printed once when decided (before any model is loaded), so a job that
# fails or is stopped later still reports them; not repeated in metrics.json (training_config.json's `resolved`
# holds them, with the strategy, next to the model). The strategy is a word, not a number: world_size (the processes
# that trained together) is what a reader needs to tell `ddp` on one process (trained as `single`) from the rest.
RESOLVED_METRICS = (
    "resolved_learning_rate",
    "resolved_effective_batch_size",
    "resolved_max_seq_length",
    "resolved_world_size",
)


def format_value(value: float | int) -> str:
    """A number the catalog regex accepts: integers plainly, floats with 6 significant digits, nan/inf lowercase."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, ".6g")


def metric_line(metrics: dict[str, float | int]) -> str:
    """`name=value;` pairs on one line, e.g. `train_step=10; train_loss=1.234;`."""
    return " ".join(f"{name}={format_value(value)};" for name, value in metrics.items())


def print_final_metrics(metrics: dict[str, float | int], stream: TextIO | None = None) -> None:
    """One `name=value;` line per final metric, in catalog order."""
    out = stream or sys.stdout
    for name in FINAL_METRICS:
        if name in metrics:
            print(metric_line({name: metrics[name]}), file=out, flush=True)


def print_resolved_metrics(resolved: dict[str, Any], stream: TextIO | None = None) -> None:
    """One `resolved_<name>=value;` line per value of `resolved` named in `RESOLVED_METRICS` (a baseline has no
    learning rate or batch: those lines are left out)."""
    out = stream or sys.stdout
    for metric in RESOLVED_METRICS:
        name = metric.removeprefix("resolved_")
        if resolved.get(name) is not None:
            print(metric_line({metric: resolved[name]}), file=out, flush=True)


def write_metrics_json(metrics: dict[str, float | int], missing: dict[str, str], *directories: Path) -> None:
    """metrics.json into each directory: the printed metrics, and `missing: {name: reason}` for those not computed."""
    ordered: dict[str, object] = {name: metrics[name] for name in FINAL_METRICS if name in metrics}
    if missing:
        ordered["missing"] = dict(sorted(missing.items()))
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "metrics.json").write_text(json.dumps(ordered, indent=2) + "\n")


def peak_memory_gb(use_cuda: bool) -> float:
    """Peak GPU memory allocated by this process, or its peak resident host memory on CPU, in GiB."""
    if use_cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**30
    # ru_maxrss is KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def make_progress_callback(is_main: bool, stream: TextIO | None = None):  # -> transformers.TrainerCallback
    """A TrainerCallback printing `train_step=<n>; train_loss=<x>;` at every logging step (rank 0 only).

    It replaces the Trainer's own printer: the full log dict (learning rate, grad norm, ...) goes to the log instead.
    """
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Prints the training loss in the catalog format whenever the Trainer logs it."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any):
            if not is_main or not logs:
                return control
            if "loss" in logs:
                line = metric_line({"train_step": state.global_step, "train_loss": float(logs["loss"])})
                print(line, file=stream or sys.stdout, flush=True)
            rounded = {key: round(value, 6) if isinstance(value, float) else value for key, value in logs.items()}
            LOG.info("step %d: %s", state.global_step, rounded)
            return control

    return ProgressCallback()


def last_logged_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The final training loss: the last value the Trainer logged (resumed runs keep the earlier history)."""
    for entry in reversed(log_history):
        if "loss" in entry:
            return float(entry["loss"])
    return None
