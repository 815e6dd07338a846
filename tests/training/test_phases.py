"""Phase timing metrics (training_code/phases.py): every phase prints its line, values add up, downloads are lean."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from tests.support.training import run_main
from training_code import phases

METRIC_LINE = re.compile(r"^([a-z_]+)=([-+0-9.eE]+|nan|inf);$")


def metric_values(stdout: str) -> dict[str, float]:
    """The `name=value;` lines of a run's stdout (the last value of each name)."""
    values: dict[str, float] = {}
    for line in stdout.splitlines():
        match = METRIC_LINE.match(line.strip())
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def test_a_tiny_cpu_run_prints_every_phase_metric_with_values_that_fit_its_wall_time(
    tiny_models: dict[str, Path], bertscore_model: str, make_job
) -> None:
    # Given a short LoRA job with evaluation whose clock makes every step due for a checkpoint (none is forced at
    # the last step: the final model is saved right after it)
    job = make_job()
    argv = job.argv(
        tiny_models["llama"],
        approach="lora",
        max_steps=4,
        eval_samples=4,
        bertscore_model=bertscore_model,
        save_interval_seconds=60,
    )
    ticks = iter(range(0, 10**6, 100))

    # When it runs
    started = time.perf_counter()
    result = run_main(job, argv, clock=lambda: next(ticks))
    wall = time.perf_counter() - started

    # Then each phase metric is printed once, as the catalog's `name=value;` line
    assert result.exit_code == 0, job.failure()
    values = metric_values(result.stdout)
    for name in phases.PHASE_METRICS:
        assert sum(line.startswith(f"{name}=") for line in result.stdout.splitlines()) == 1, name
    # with sane values: a local model needs no download; training, loading, evaluating and saving take time
    assert values["time_download_seconds"] < 0.5
    for phase in ("load", "train", "checkpoint", "evaluate", "save"):
        assert values[f"time_{phase}_seconds"] > 0, phase
    saved = sorted(job.checkpoint_dir.glob("checkpoint-*"), key=lambda folder: int(folder.name.split("-")[1]))
    assert values["checkpoint_saves"] >= 1 and saved
    checkpoint = saved[-1]  # checkpoint_bytes: the last one written
    assert values["checkpoint_bytes"] == sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    # and the phases account for the run without double counting: together no more than its wall time. (The rest
    # is reading data, tokenizers and the BERTScore encoder: the calibration's `install` part.)
    timed = sum(values[f"time_{phase}_seconds"] for phase in phases.PHASES)
    assert timed <= wall
    # training excludes the checkpoint saves, which the train_runtime_seconds metric includes
    assert values["time_train_seconds"] + values["time_checkpoint_seconds"] == pytest.approx(
        values["train_runtime_seconds"], rel=1e-3
    )


def test_a_phase_that_fails_still_reports_the_time_it_took() -> None:
    ticks = iter([10.0, 12.5])
    out = io.StringIO()
    timing = phases.Phases(is_main=True, stream=out, clock=lambda: next(ticks))

    with pytest.raises(RuntimeError), timing.timed("load"):
        raise RuntimeError("out of memory")

    assert out.getvalue() == "time_load_seconds=2.5;\n"


def test_only_the_main_rank_prints_phase_metrics() -> None:
    out = io.StringIO()
    timing = phases.Phases(is_main=False, stream=out)

    timing.record("time_save_seconds", 1.0)

    assert out.getvalue() == "" and timing.values == {"time_save_seconds": 1.0}


@pytest.mark.parametrize(
    ("repo_files", "weights"),
    [
        # Llama-2-7b-hf ships both formats: one copy (13.5 GB), not two
        (["config.json", "model-00001-of-00002.safetensors", "pytorch_model-00001-of-00002.bin"], "*.safetensors"),
        (["config.json", "pytorch_model.bin", "tokenizer.json"], "*.bin"),
    ],
)
def test_the_snapshot_download_takes_one_copy_of_the_weights(repo_files: list[str], weights: str) -> None:
    patterns = phases.snapshot_patterns(repo_files)

    assert weights in patterns
    assert {"*.safetensors", "*.bin"} - {weights} & set(patterns) == set()
    assert "*.json" in patterns and "*.model" in patterns  # configs and SentencePiece tokenizers


def test_a_local_model_directory_is_not_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def forbidden(*args, **kwargs):
        raise AssertionError("the Hub was asked for a local model")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", forbidden)

    assert phases.download_snapshot(str(tmp_path), token=None) is None
