"""DoRA through the approach table: Plan accepts it, the memory planner and the time model charge it more than LoRA
for what PEFT's DoRA layer really holds and does."""

from __future__ import annotations

import pytest

from lambdas import catalog, estimate, memory
from lambdas.memory import Placement, Strategy, Workload
from tests.support.lambdas import one_job

MISTRAL_7B = catalog.MODELS["mistral-7b"]


def on(instance_type: str) -> Placement:
    return Placement(catalog.INSTANCES[instance_type])


def test_plan_accepts_dora_and_sends_it_to_the_training_code() -> None:
    # Given an experiment with approach dora
    job = one_job(model="mistral-7b", approach="dora")
    # Then Plan plans it like an adapter job: its default rate, an adapter output, a strategy DoRA trains with
    assert job["approach"] == "dora" and job["learning_rate"] == 2e-4
    assert job["output_s3_uri"].endswith("/models/mistral-7b-dora/")
    assert job["strategy"] in ("single", "ddp", "split")


def test_dora_trains_a_magnitude_vector_per_adapted_output_feature_on_top_of_loras_adapters() -> None:
    lora = Workload(MISTRAL_7B, "lora", 8, 256)
    dora = Workload(MISTRAL_7B, "dora", 8, 256)
    arch = MISTRAL_7B.architecture
    magnitudes = arch.layers * sum(fan_out for _, fan_out in arch.layer_linears())
    assert dora.adapter_parameters - lora.adapter_parameters == magnitudes


@pytest.mark.parametrize("instance_type", ["ml.g5.2xlarge", "ml.g6e.xlarge"])
def test_the_planner_gives_dora_more_memory_than_lora_in_every_part_it_adds_to(instance_type: str) -> None:
    # Given the same 7B job as LoRA and as DoRA on one GPU
    lora = memory.estimate(Workload(MISTRAL_7B, "lora", 8, 256), on(instance_type), Strategy.SINGLE)
    dora = memory.estimate(Workload(MISTRAL_7B, "dora", 8, 256), on(instance_type), Strategy.SINGLE)
    # Then DoRA needs more: its magnitudes (trained in fp32 with AdamW), the output-width results backward keeps,
    # and the weight it rebuilds per layer in every forward (the largest: Mistral's 14,336-wide down projection)
    assert dora.device.master_weights > lora.device.master_weights
    assert dora.device.activations > lora.device.activations
    h, i = MISTRAL_7B.architecture.hidden_size, MISTRAL_7B.architecture.intermediate_size
    assert dora.device.working == 4 * i * i + (4 + 3 * 2) * i * h
    assert dora.device.total > lora.device.total and dora.evaluation_bytes > lora.evaluation_bytes


def test_dora_never_shards_with_fsdp() -> None:
    found = memory.strategies(Workload(MISTRAL_7B, "dora", 8, 256), on("ml.g5.12xlarge"))
    assert found == (Strategy.DDP, Strategy.SPLIT)


def test_the_time_model_charges_dora_its_per_forward_rebuild() -> None:
    # Given the same job shape as LoRA and as DoRA
    shapes = {
        approach: estimate.JobShape(
            model=MISTRAL_7B,
            approach=approach,
            instance_type="ml.g5.2xlarge",
            instance_count=1,
            strategy=Strategy.SINGLE,
            batch_size=8,
            epochs=1,
            rows=catalog.DEFAULT_TRAIN_ROWS,
        )
        for approach in ("lora", "dora")
    }
    lora, dora = (estimate.estimate_job(shapes[a]) for a in ("lora", "dora"))
    # Then DoRA's training part is longer (more FLOPs and DRAM traffic per step), and nothing else is cheaper
    assert dora.train_flops > lora.train_flops
    assert dora.seconds["train"] > lora.seconds["train"]
    assert dora.seconds["total"] > lora.seconds["total"]


def test_dora_runs_on_a_cpu_instance() -> None:
    # DoRA is not 4-bit: the planner offers the CPU what it offers LoRA
    assert memory.strategies(Workload(MISTRAL_7B, "dora", 8, 256), on("ml.m5.xlarge")) == (Strategy.SINGLE,)
