"""The GPU bench's CPU-checkable parts (bench/gpu_train_bench.py): options, shapes, peak TFLOP/s, the result table.

The bench itself needs a GPU (or `--dry-run`, ~4 minutes on the shared CPU machine: too slow for the suite); what
decides its numbers without one is checked here.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from lambdas import catalog
from tests.support.training import REPO_ROOT


@pytest.fixture(scope="module")
def bench():
    """bench/gpu_train_bench.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_train_bench", REPO_ROOT / "bench" / "gpu_train_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_train_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_by_default_the_bench_runs_every_case_on_the_7b_shape(bench) -> None:
    args = bench.parse_args([])

    assert args.size == "7b" and not args.dry_run
    assert [case.name for case in args.cases] == list(bench.CASES)
    names = set(bench.CASES)
    # what decides the plans: LoRA and QLoRA at batch 1 and 8, lean, FSDP, the plain HF baseline, decoding
    assert {"lora-b1", "lora-b8", "qlora-b1", "qlora-b8", "dora-b8", "lean-b8", "fsdp-lora-b8", "hf-peft-b8"} <= names
    assert "decode-constrained" in names
    assert list(bench.CASES)[-1] == "fsdp-lora-b8"  # its process group must not change the other cases


def test_the_7b_shape_is_llama_2_7b(bench) -> None:
    architecture = bench.catalog_architecture("7b")

    assert architecture.parameters() == pytest.approx(6.74e9, rel=0.01)  # Llama-2-7B's 6,738,415,616


@pytest.mark.parametrize(("approach", "per_parameter"), [("full", 6), ("lora", 4), ("qlora", 4), ("dora", 4)])
def test_the_benchs_flops_per_token_are_the_approach_tables(bench, approach: str, per_parameter: int) -> None:
    # Given the tiny shape's parameters: N excludes the embedding, the factor is the approach row's
    embedding = bench.SIZES["tiny"]["vocab_size"] * bench.SIZES["tiny"]["hidden_size"]
    found = bench.flops_per_token(embedding + 1000, "tiny", approach)
    assert found == per_parameter * 1000 == catalog.TRAINING_FLOPS_PER_PARAMETER[approach] * 1000


def test_a_dry_run_is_tiny_and_short(bench) -> None:
    args = bench.parse_args(["--dry-run", "--cases", "lora-b1,lean-b8"])

    assert args.size == "tiny" and (args.warmup, args.steps) == (1, 2)
    assert [case.strategy for case in args.cases] == ["single", "lean"]


def test_an_unknown_case_is_refused_with_the_known_ones(bench, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--cases", "lora-b2"])

    assert "unknown case(s): lora-b2; known: lora-b1" in capsys.readouterr().err


@pytest.mark.parametrize(("device_name", "accelerator"), [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA A10G", "A10G")])
def test_peak_tflops_come_from_the_catalog_table(bench, device_name: str, accelerator: str) -> None:
    assert bench.catalog_peak_tflops(device_name) == catalog.ACCELERATORS[accelerator].peak_tflops


def test_a_gpu_the_catalog_lacks_has_no_peak(bench) -> None:
    assert bench.catalog_peak_tflops("Some Future GPU") is None


def test_the_result_table_shows_memory_against_the_planner_and_what_failed(bench) -> None:
    rows = [
        {"case": "lora-b8", "strategy": "single", "batch_size": 8, "step_seconds": 0.21, "tokens_per_second": 1310.5,
         "mfu": 0.0412, "peak_memory_gib": 14.2, "planner_gib": 14.0},
        {"case": "fsdp-lora-b8", "strategy": "fsdp", "batch_size": 8, "peak_memory_gib": 16.0, "planner_gib": None,
         "flat_parameters": {"bfloat16/frozen": 6738415616}, "checkpoint_bytes": 40_000_000,
         "checkpoint_seconds": 1.5},
        {"case": "qlora-b1", "strategy": "single", "batch_size": 1, "error": "OutOfMemoryError: CUDA out of memory"},
    ]  # fmt: skip

    table = bench.markdown(rows).splitlines()

    assert table[0].startswith("| case | strategy | batch | s/step | tokens/s | MFU | peak GiB | planner GiB |")
    assert table[2] == "| lora-b8 | single | 8 | 0.21 | 1,310 | 4.1% | 14.2 | 14.0 | 1.01 |  |"
    assert "flat params {'bfloat16/frozen': 6738415616}; checkpoint 0.04 GB in 1.5 s" in table[3]
    assert "FAILED: OutOfMemoryError" in table[4]
