"""A 2-process sharded tiny job on CPU (gloo) with the training code's FSDP settings: it trains a step, writes a
sharded checkpoint (each rank its own shard), resumes from it to the same loss, and writes per parameter exactly
what the memory planner counts for a sharded full fine-tune. See fsdp_cpu_worker.py for why it is not train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambdas import catalog, memory
from lambdas.memory import Strategy, Workload

WORKER = Path(__file__).with_name("fsdp_cpu_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
# Wide enough that checkpoint metadata is a rounding error next to the tensors (3.1M parameters, 75 MB written).
HIDDEN_SIZE = 512


@pytest.fixture(scope="module")
def sharded_job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the worker under `torchrun --nproc_per_node 2` once; its result.json."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("fsdp-cpu")
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=2 * HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(root / "model")
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", str(WORKER), str(root / "model"), str(root / "checkpoint")]
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    environ["OMP_NUM_THREADS"] = "1"  # two processes on two cores
    finished = subprocess.run(
        [*command, str(root / "result.json")], env=environ, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads((root / "result.json").read_text())


def test_each_rank_writes_its_own_shard_of_the_model_and_of_the_optimizer(sharded_job: dict) -> None:
    files = sharded_job["files"]

    assert sharded_job["world_size"] == 2 and sharded_job["state_dict_type"] == "StateDictType.SHARDED_STATE_DICT"
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert {f"{part}/__0_0.distcp", f"{part}/__1_0.distcp", f"{part}/.metadata"} <= set(files), part
    # No full copy: neither the FULL_STATE_DICT files nor a gathered safetensors file
    assert not {"pytorch_model_fsdp.bin", "optimizer.bin", "model.safetensors"} & set(files)


def test_resuming_from_the_sharded_checkpoint_continues_exactly(sharded_job: dict) -> None:
    first, second, second_after_resume = sharded_job["losses"]

    assert second < first
    assert second_after_resume == pytest.approx(second, rel=1e-6)


def test_the_planners_checkpoint_bytes_per_parameter_are_what_the_sharded_save_writes(sharded_job: dict) -> None:
    # Given the planner's checkpoint for a sharded full fine-tune of a study model
    model = catalog.MODELS["llama2-7b"]
    placement = memory.Placement(catalog.INSTANCES["ml.g5.48xlarge"], 1)
    planned = memory.estimate(Workload(model, "full", 1, 256), placement, Strategy.FSDP).checkpoint_bytes

    # When compared, per parameter, with the bytes the 2-rank job wrote (model shards + optimizer shards)
    parts = ("pytorch_model_fsdp_0", "optimizer_0")
    written = sum(size for name, size in sharded_job["files"].items() if name.split("/")[0] in parts)
    written_per_parameter = written / sharded_job["parameters"]

    # Then they agree (fp32 flat parameters, 4 bytes, and AdamW's two fp32 moments, 8), to metadata's share
    print(f"written {written_per_parameter:.3f} B/param, planned {planned / model.parameters:.3f} B/param")
    assert written_per_parameter == pytest.approx(planned / model.parameters, rel=0.01)
