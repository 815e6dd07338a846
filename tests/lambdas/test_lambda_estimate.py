"""The time model: hand-computed parts, physical lower bounds, bands, calibration, and the study's plans and total."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lambdas import aws, catalog, estimate, plan
from lambdas.calibration import Calibration, calibration_key
from lambdas.memory import Strategy
from tests.support.lambdas import BUCKET, study_jobs

ROOT = Path(__file__).resolve().parents[2]
LLAMA2_7B = catalog.MODELS["llama2-7b"]
MISTRAL_7B = catalog.MODELS["mistral-7b"]
NEOX_20B = catalog.MODELS["gpt-neox-20b"]
STUDY_ROWS = catalog.DATASET_TRAIN_ROWS["banking77"]


def tm(name: str) -> float:
    """A time-model constant's expected value."""
    return catalog.TIME_MODEL[name].expected


def shape(**overrides: Any) -> estimate.JobShape:
    """A Banking77-sized job (default: Llama-2-7B LoRA on one A10G, spot, catalog price)."""
    values: dict[str, Any] = {
        "model": LLAMA2_7B,
        "approach": "lora",
        "instance_type": "ml.g5.2xlarge",
        "instance_count": 1,
        "strategy": Strategy.SINGLE,
        "batch_size": 8,
        "epochs": 1,
        "rows": STUDY_ROWS,
    }
    return estimate.JobShape(**{**values, **overrides})


def test_lora_on_one_a10g_matches_the_hand_computed_parts() -> None:
    # Given Llama-2-7B LoRA on one A10G (ml.g5.2xlarge) over Banking77's 10,003 compact examples, batch 8, spot
    n = LLAMA2_7B.parameters
    result = estimate.estimate_job(shape())
    # Then: 1,251 steps of 8 x 34.3 tokens; LoRA with gradient checkpointing = 6N FLOPs per token at 70 TFLOP/s x
    # the LoRA utilization; compute bounds the step (no communication on one GPU)
    steps = math.ceil(STUDY_ROWS / 8)
    compute = 8 * 34.3 * 6 * n / (70e12 * tm("utilization_lora"))
    assert result.steps == steps and result.bottleneck == "compute"
    assert result.seconds["train"] == pytest.approx(steps * (compute + tm("step_overhead_s")))
    # startup of a one-GPU instance, the pip install, download + load of the bf16 weights
    assert result.seconds["startup"] == tm("startup_1gpu") and result.seconds["install"] == tm("install")
    assert result.seconds["download"] == pytest.approx(
        2 * n / tm("download_bytes_per_s") + 2 * n / tm("load_bytes_per_s")
    )
    # evaluation: prefill of 500 prompts + ceil(500 / 8) x 8 decoding steps, each reading the weights
    prefill = 500 * 34.3 * 2 * n / (70e12 * tm("eval_utilization"))
    per_token = 2 * n / (600e9 * tm("decode_bandwidth_efficiency")) + tm("decode_step_overhead_s")
    assert result.seconds["evaluate"] == pytest.approx(prefill + 63 * 8 * per_token)
    # the fp32 adapter's save and upload
    adapter = 4 * 39_976_960
    assert result.seconds["upload"] == pytest.approx(
        adapter / tm("checkpoint_write_bytes_per_s") + adapter / tm("s3_upload_bytes_per_s") + tm("upload_fixed_s")
    )
    assert result.seconds["total"] == pytest.approx(sum(result.seconds[part] for part in estimate.PARTS))
    # dollars: the total at $1.515/h x the expected spot fraction
    assert result.on_demand_usd == pytest.approx(result.seconds["total"] / 3600 * 1.515)
    assert result.expected_usd == pytest.approx(result.on_demand_usd * tm("spot_price_fraction"))


def test_7b_fsdp_at_batch_1_over_pcie_is_communication_bound_at_seconds_per_step() -> None:
    # Given today's 7B full plan: FSDP over ml.g5.48xlarge's 8 A10Gs (PCIe, no NVLink), batch 1 per GPU
    result = estimate.estimate_job(
        shape(approach="full", instance_type="ml.g5.48xlarge", strategy=Strategy.FSDP, batch_size=1)
    )
    # Then each of its 1,251 steps all-gathers the bf16 model twice and reduce-scatters bf16 gradients: 7/8 x 6N bytes
    # per GPU at the PCIe ring's bus bandwidth, ~3 s (issue 18: 2.5-6 s), far above its compute
    per_step = 7 / 8 * 6 * LLAMA2_7B.parameters / (tm("collective_pcie_gb_per_s") * 1e9)
    assert result.bottleneck == "communication" and result.steps == 1251
    assert result.seconds["train"] == pytest.approx(1251 * (per_step + tm("step_overhead_s")))
    assert 2.5 < result.seconds["train"] / result.steps < 6
    # and the evaluation reloads the model from disk after FSDP
    assert result.seconds["evaluate"] > 2 * LLAMA2_7B.parameters / tm("load_bytes_per_s")


def test_ddp_all_reduces_only_the_trainable_gradients() -> None:
    qlora = estimate.step_traffic(
        (
            s := shape(
                model=NEOX_20B, approach="qlora", instance_type="ml.g5.12xlarge", strategy=Strategy.DDP, batch_size=2
            )
        ),
        estimate.memory.estimate(s.workload, s.placement, s.strategy),
    )
    adapters = s.workload.adapter_parameters
    assert qlora.collective_bytes == pytest.approx(2 * 3 / 4 * 4 * adapters)


def test_split_and_lean_move_no_weights_between_gpus() -> None:
    split = shape(model=NEOX_20B, instance_type="ml.g5.12xlarge", strategy=Strategy.SPLIT)
    lean = shape(model=MISTRAL_7B, approach="full", instance_type="ml.g6e.xlarge", strategy=Strategy.LEAN)
    for job in (split, lean):
        traffic = estimate.step_traffic(job, estimate.memory.estimate(job.workload, job.placement, job.strategy))
        assert traffic.collective_bytes < 0.01 * job.model.parameters  # activations at most
        assert traffic.working_gpus == 1  # split: one GPU works at a time


CASES = [
    shape(),
    shape(approach="qlora", instance_type="ml.g5.xlarge"),
    shape(approach="full", instance_type="ml.g5.48xlarge", strategy=Strategy.FSDP, batch_size=1),
    shape(approach="full", instance_type="ml.g5.12xlarge", strategy=Strategy.FSDP_OFFLOAD, batch_size=2),
    shape(approach="full", instance_type="ml.g6e.xlarge", strategy=Strategy.LEAN, model=MISTRAL_7B),
    shape(model=NEOX_20B, instance_type="ml.g5.12xlarge", strategy=Strategy.SPLIT),
    shape(model=NEOX_20B, instance_type="ml.p4d.24xlarge", strategy=Strategy.FSDP, batch_size=1),
    shape(
        model=NEOX_20B,
        approach="lora",
        instance_type="ml.p4d.24xlarge",
        instance_count=2,
        strategy=Strategy.DDP,
        batch_size=1,
        epochs=20,
    ),
    shape(approach="baseline", instance_type="ml.g5.xlarge", prompt_style="listed"),
]


@pytest.mark.parametrize("job", CASES, ids=lambda job: f"{job.approach}-{job.instance_type}-{job.strategy.value}")
def test_no_part_is_below_what_compute_communication_and_io_physically_need(job: estimate.JobShape) -> None:
    # Given any plan; when it is estimated
    result = estimate.estimate_job(job)
    floor = estimate.physical_floor(job)
    # Then even the low end of every part is at least its physical floor (peak FLOP/s, peak link and network)
    for part in estimate.PARTS:
        assert result.low_seconds[part] >= floor[part] > -1, part
        # and the band is ordered
        assert result.low_seconds[part] <= result.seconds[part] <= result.high_seconds[part], part
    assert result.low_usd <= result.expected_usd <= result.high_usd


def test_the_spot_band_prices_the_low_and_high_ends() -> None:
    result = estimate.estimate_job(shape())
    per_hour = 1.515 / 3600
    spot = catalog.TIME_MODEL["spot_price_fraction"]
    assert result.low_usd == pytest.approx(result.low_seconds["total"] * per_hour * spot.best)
    assert result.high_usd == pytest.approx(result.high_seconds["total"] * per_hour * spot.worst)
    on_demand = estimate.estimate_job(shape(spot=False))
    assert on_demand.expected_usd == pytest.approx(on_demand.on_demand_usd)


def test_calibration_multiplies_each_part_by_its_factor() -> None:
    # Given recorded jobs that trained twice as long and started 20% faster than the table says
    calibration = Calibration(key="g5#lora#single", factors={"train": 2.0, "startup": 0.8}, samples=5, source="ledger")
    table = estimate.estimate_job(shape())
    calibrated = estimate.estimate_job(shape(), calibration)
    # Then those parts move by their factors, the others stay, and the assumptions name the calibration
    assert calibrated.seconds["train"] == pytest.approx(2 * table.seconds["train"])
    assert calibrated.seconds["startup"] == pytest.approx(0.8 * table.seconds["startup"])
    assert calibrated.seconds["evaluate"] == table.seconds["evaluate"]
    assert calibrated.high_seconds["train"] == pytest.approx(2 * table.high_seconds["train"])
    assert calibrated.assumptions["calibration"] == "g5#lora#single"


def test_checkpoints_are_priced_at_their_real_bytes_once_per_save_interval() -> None:
    # Given 7B full under FSDP for 10 epochs: hours of training, so several saves of ~108 GB (FULL_STATE_DICT)
    job = shape(approach="full", instance_type="ml.g5.48xlarge", strategy=Strategy.FSDP, batch_size=1, epochs=10)
    fit = estimate.memory.estimate(job.workload, job.placement, job.strategy)
    result = estimate.estimate_job(job)
    saves = math.floor(result.seconds["train"] / fit.save_interval_seconds)
    assert saves >= 2
    assert result.seconds["checkpoint"] >= saves * fit.checkpoint_bytes / tm("checkpoint_write_bytes_per_s")
    # while a short adapter job saves at most once
    assert estimate.estimate_job(shape()).seconds["checkpoint"] < 10


def test_full_fine_tuning_uploads_a_bf16_model_and_an_untrained_baseline_costs_only_evaluation() -> None:
    full = estimate.estimate_job(shape(approach="full", instance_type="ml.g6e.xlarge", strategy=Strategy.LEAN))
    assert full.seconds["upload"] > 2 * LLAMA2_7B.parameters / tm("s3_upload_bytes_per_s")
    baseline = estimate.estimate_job(shape(approach="baseline", prompt_style="listed"))
    assert baseline.seconds["train"] == baseline.seconds["checkpoint"] == 0 and baseline.bottleneck == "none"
    assert baseline.seconds["evaluate"] > 0


def test_max_steps_bounds_the_tokens_and_epochs_multiply_them() -> None:
    assert estimate.estimate_job(shape(max_steps=100)).train_tokens == pytest.approx(100 * 8 * 34.3)
    one = estimate.estimate_job(shape()).train_tokens
    assert estimate.estimate_job(shape(epochs=3)).train_tokens == pytest.approx(3 * one, rel=1e-3)
    # An explicit max_seq_length truncates the mean example
    assert (
        estimate.estimate_job(shape(prompt_style="listed", max_seq_length=512)).assumptions["tokens_per_example"] == 512
    )


def test_train_rows_come_from_the_catalog_the_channel_size_or_the_default() -> None:
    assert estimate.train_rows("banking77") == (10_003.0, "banking77 train split (catalog)")
    rows, source = estimate.train_rows("mine", 220_000)
    assert rows == 2_000 and "220,000 bytes" in source
    assert estimate.train_rows(None, None)[0] == catalog.DEFAULT_TRAIN_ROWS


def test_plan_fills_the_estimate_fields_of_every_job() -> None:
    # Given the study matrix planned offline
    for job in study_jobs():
        # Then every job carries its parts, its band and its calibration key, below its upper bound
        assert set(job["estimated_seconds"]) == {*estimate.PARTS, "total"}
        assert job["estimated_low_cost_usd"] <= job["estimated_cost_usd"] <= job["estimated_high_cost_usd"]
        assert 0 < job["estimated_cost_usd"] < job["estimated_on_demand_cost_usd"] <= job["estimated_max_cost_usd"]
        assert 2 * job["estimated_hours"] <= job["max_runtime_seconds"] / 3600
        assert job["calibration_key"] == calibration_key(job["instance_type"], job["approach"], job["strategy"])


def test_plan_corrects_each_job_by_the_calibration_of_its_key() -> None:
    doc, experiments = plan.validate_execution_input({"experiments": [{"model": "mistral-7b", "approach": "lora"}]})
    key = calibration_key(experiments[0]["instance_type"], "lora", experiments[0]["strategy"])
    kwargs: dict[str, Any] = {"run_id": "r", "bucket": BUCKET, "job_name_prefix": "ft", "price_of": plan.catalog_price}
    table = plan.build_jobs(doc, experiments, **kwargs)[0]
    slower = plan.build_jobs(doc, experiments, **kwargs, calibrations={key: Calibration(key, {"train": 3.0}, 9, "t")})
    assert slower[0]["estimated_seconds"]["train"] == pytest.approx(3 * table["estimated_seconds"]["train"], rel=1e-3)


def test_the_banking77_study_costs_at_most_10_dollars_expected_on_plannable_launchable_plans() -> None:
    # Given the study input (8 jobs, 1 epoch, 500 evaluation samples), planned offline at catalog prices
    jobs = study_jobs(json.loads((ROOT / "examples" / "study-matrix.json").read_text()))
    assert len(jobs) == 8
    # Then its expected spot cost is at most $10
    assert sum(job["estimated_cost_usd"] for job in jobs) <= 10
    # on families the planner may choose whose spot quotas the deployment requests (cdk.json), enough for the jobs
    # that run at once
    context = json.loads((ROOT / "cdk.json").read_text())["context"]["finetune"]
    requested = {
        row["instance_type"]: row["desired_value"]
        for row in context["quota_requests"]
        if row["usage"] == "spot training job"
    }
    needed = plan.instances_needed(jobs, context["max_concurrency"])
    for job in jobs:
        assert catalog.INSTANCES[job["instance_type"]].family in catalog.PLANNABLE_FAMILIES
        assert requested.get(job["instance_type"], 0) >= needed[job["instance_type"]], job["instance_type"]


def test_plan_sizes_an_unknown_dataset_from_its_train_channel(moto_aws: None) -> None:
    # Given a dataset the catalog has no row count for: 2,200 bytes of train data = 20 rows at 110 bytes per row
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="datasets/mine/train/a.jsonl", Body=b"x" * 1_100)
    s3.put_object(Bucket=BUCKET, Key="datasets/mine/train/b.jsonl", Body=b"x" * 1_100)
    assert plan.channel_bytes(s3, f"s3://{BUCKET}/datasets/mine/train/") == 2_200
    # Then the estimate's rows follow from the size; an unlistable bucket gives None (the catalog default applies)
    assert estimate.train_rows("mine", 2_200)[0] == 20
    assert plan.channel_bytes(s3, "s3://no-such-bucket/datasets/x/train/") is None


def test_the_assumptions_table_lists_every_time_constant_with_a_source() -> None:
    table = {name: (value, source) for name, value, source in estimate.assumptions_table()}
    for name in catalog.TIME_MODEL:
        assert name in table and table[name][1], name
    assert "A10G 70 TFLOP/s" in table["peak dense bf16 per GPU"][0]
    assert "L40S 362 TFLOP/s" in table["peak dense bf16 per GPU"][0]


def test_the_cheapest_plan_ranks_by_expected_cost_and_honours_a_fixed_batch() -> None:
    job = shape(model=NEOX_20B)
    chosen = estimate.cheapest_plan(job)
    assert chosen is not None
    every = [
        plan_
        for name in estimate.planned_instance_types()
        for plan_ in estimate.plans_on(replace(job, instance_type=name), fixed_batch=False)
    ]
    assert chosen.estimate.expected_usd == min(p.estimate.expected_usd for p in every)
    fixed = estimate.cheapest_plan(replace(job, batch_size=2), fixed_batch=True)
    assert fixed is not None and fixed.shape.batch_size == 2


def test_an_sft_job_is_planned_with_the_stated_chat_assumptions_not_banking77s_prompt_lengths() -> None:
    # Given the same job as classification and as instruction/chat fine-tuning (max_seq_length auto)
    classification, chat = shape(), shape(task=catalog.SFT)
    # Then the chat job trains and evaluates on the assumed chat row, not Banking77's 34-token compact prompt
    assert estimate.estimate_job(chat).assumptions["tokens_per_example"] == catalog.SFT_TOKENS_PER_EXAMPLE
    assert estimate.estimate_job(chat).train_tokens > 10 * estimate.estimate_job(classification).train_tokens
    # and its memory is sized for the planning length of chats, its answers for the assumed answer length
    assert chat.workload.seq_length == catalog.SFT_PLANNING_SEQ_LENGTH > classification.workload.seq_length
    decode_steps = estimate.evaluation_work(chat)[1]
    assert decode_steps == math.ceil(chat.eval_samples / chat.eval_batch_size) * catalog.SFT_DECODE_TOKENS_PER_SAMPLE
    # An explicit max_seq_length still bounds both
    assert shape(task=catalog.SFT, max_seq_length=256).workload.seq_length == 256


def test_an_sft_train_channel_is_sized_by_its_bytes_per_assumed_chat_row() -> None:
    # Given 2,048,000 bytes of chat rows (2,048 bytes per 512-token row at 4 bytes per token)
    rows, source = estimate.train_rows("mine", 2_048_000, task=catalog.SFT)
    # Then Plan counts 1,000 rows (not the 18,618 short queries the classification rule would count)
    assert rows == 1_000 and "2048 bytes per row" in source
    assert estimate.train_rows("mine", 2_048_000)[0] > 18_000


def test_plan_carries_the_task_into_every_job_and_its_estimate() -> None:
    # Given an sft input planned offline
    doc, experiments = plan.validate_execution_input(
        {"experiments": [{"model": "mistral-7b", "approach": "lora"}], "task": "sft", "dataset": {"name": "chats"}}
    )
    kwargs: dict[str, Any] = {"run_id": "r", "bucket": BUCKET, "job_name_prefix": "ft", "price_of": plan.catalog_price}
    (job,) = plan.build_jobs(doc, experiments, **kwargs)
    # Then the job spec names the task and the shape the estimator prices is an sft one
    assert job["task"] == "sft" and job["primary_metric"] == "eval_exact_match"
    assert estimate.shape_of(job, model=MISTRAL_7B, rows=1_000).task == catalog.SFT


def test_eval_samples_all_is_priced_at_the_test_channels_rows_not_banking77s() -> None:
    # Given a dataset the catalog does not know whose test channel holds 55,000 bytes (500 rows of 110 bytes)
    doc, experiments = plan.validate_execution_input(
        {"experiments": [{"model": "mistral-7b", "approach": "lora"}], "eval_samples": "all", "dataset": {"name": "x"}}
    )
    kwargs: dict[str, Any] = {"run_id": "r", "bucket": BUCKET, "job_name_prefix": "ft", "price_of": plan.catalog_price}
    # When Plan plans it with and without the channel's size
    (sized,) = plan.build_jobs(doc, experiments, **kwargs, test_bytes=55_000)
    (unsized,) = plan.build_jobs(doc, experiments, **kwargs)
    # Then "all" evaluates the channel's 500 rows (before: always Banking77's 3,080), which the spec carries for Remedy
    assert sized["estimated_test_rows"] == 500 and unsized["estimated_test_rows"] == catalog.ASSUMED_TEST_ROWS
    assert estimate.shape_of(sized, model=MISTRAL_7B, rows=1_000).eval_samples == 500
    assert sized["estimated_seconds"]["evaluate"] < unsized["estimated_seconds"]["evaluate"]


def test_a_number_of_eval_samples_is_capped_at_the_known_test_rows() -> None:
    assert catalog.planned_eval_samples(500, test_rows=120) == 120
    assert catalog.planned_eval_samples(500) == 500  # rows unknown: the number as asked
    assert catalog.planned_eval_samples("all", test_rows=catalog.DATASET_TEST_ROWS["banking77"]) == 3_080
