"""Multi-process training under torchrun (as SageMaker launches it on multi-GPU instances), on CPU with gloo."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lambdas.catalog import METRICS
from tests.training.conftest import start_training


def test_torchrun_with_two_processes_trains_lora_and_writes_one_set_of_artifacts(
    tiny_models: dict[str, Path], make_job, processes, tmp_path: Path
) -> None:
    job = make_job("ddp")
    log = tmp_path / "torchrun.log"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    argv = job.argv(
        tiny_models["llama"], approach="lora", max_steps=10, save_steps=5, eval_samples=16, bertscore_model="none"
    )

    process = start_training(job, argv, log, launcher=launcher)
    processes.append(process)
    exit_code = process.wait(timeout=240)
    output = log.read_text()

    assert exit_code == 0, output[-4000:]
    assert job.training_config()["resolved"]["world_size"] == 2
    assert job.training_config()["global_step"] == 10
    # Only rank 0 prints: each final metric line appears exactly once, and so does each progress line.
    lines = output.splitlines()
    for metric in METRICS:
        if metric.name not in ("train_step", "eval_bertscore_f1"):  # BERTScore is off here
            assert len([line for line in lines if re.fullmatch(metric.regex, line)]) == 1, metric.name
    assert len([line for line in lines if line.startswith("train_step=10;")]) == 1
    # Rank 0 gathered all 16 evaluation samples (8 generated per rank).
    assert job.metrics()["eval_samples"] == 16
    assert sorted(path.name for path in job.model_dir.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_args.bin",
        "training_config.json",
    ]
    assert sorted(path.name for path in job.checkpoint_dir.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-5"]
    assert (job.output_data_dir / "metrics.json").is_file()
    assert not (job.output_dir / "failure").exists()
