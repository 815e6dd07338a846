"""Calibration from actuals: a recorded job's time by estimate part, and factors shrunk toward the time model."""

from __future__ import annotations

import functools
import math
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from lambdas import calibration, estimate, ledger, plan, remedies
from lambdas.calibration import Calibration, actual_seconds, calibration_key, calibrations
from tests.support.lambdas import study_jobs

KEY = "g5#lora#single"
ESTIMATED = {"startup": 300.0, "install": 90.0, "download": 60.0, "train": 600.0, "checkpoint": 0.0, "evaluate": 120.0}


def recorded(
    *,
    train: float = 600.0,
    startup: float = 300.0,
    status: str = "Completed",
    estimated: dict[str, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ledger job row as DynamoDB returns it (Decimals), whose job spent `train` s training."""
    metrics = {
        "time_download_seconds": Decimal("50"),
        "time_load_seconds": Decimal("10"),
        "time_train_seconds": Decimal(str(train)),
        "time_evaluate_seconds": Decimal("120"),
        "time_save_seconds": Decimal("5"),
    }
    return {
        "status": status,
        "calibration_key": KEY,
        "estimated_seconds": {k: Decimal(str(v)) for k, v in (ESTIMATED if estimated is None else estimated).items()},
        "time_split_seconds": {
            "waiting": Decimal(str(startup - 30)),
            "downloading": Decimal("30"),
            "training": Decimal(str(train + 270)),  # 90 s install + download 60 + evaluate 120 + save 5 = 275 s less
            "uploading": Decimal("15"),
        },
        "metrics": metrics,
        "interruptions": 0,
        **extra,
    }


def test_key_is_the_instance_family_approach_and_strategy() -> None:
    assert calibration_key("ml.g5.12xlarge", "lora", "split") == "g5#lora#split"
    assert calibration_key("ml.p4d.24xlarge", "full", "fsdp") == "p4d#full#fsdp"


def test_actual_parts_come_from_the_time_split_and_the_phase_metrics() -> None:
    # Given a job that waited 270 s, downloaded 30 s, ran the training container 870 s and uploaded 15 s
    # When its parts are read
    parts = actual_seconds(recorded())
    # Then each part is what the contract says, and together they are the job's wall time
    assert parts == {
        "startup": 300.0,
        "download": 60.0,  # the Hub download and the load onto the device
        "train": 600.0,
        "evaluate": 120.0,
        "install": 85.0,  # the Training phase less every printed phase (the save included)
        "upload": 20.0,  # SageMaker's upload and the final save
        "total": 1185.0,
    }
    assert sum(v for k, v in parts.items() if k != "total") == parts["total"]


def test_without_phase_metrics_only_startup_and_upload_are_known() -> None:
    # Given a row of training code that predates the time_* metrics
    row = {**recorded(), "metrics": {"eval_intent_accuracy": Decimal("0.9")}}
    # Then the Training phase is not split (its whole length is not "install")
    assert actual_seconds(row) == {"startup": 300.0, "upload": 15.0, "total": 1185.0}


def test_a_row_without_a_time_split_has_no_actuals() -> None:
    assert actual_seconds({"status": "Failed", "time_split_seconds": None}) == {}


def test_one_sample_moves_a_factor_a_little_and_twenty_most_of_the_way() -> None:
    # Given jobs that all trained 4x longer than estimated
    slow = recorded(train=2400.0)
    # When one, then twenty of them calibrate the key
    one = calibrations([slow])[KEY].factors["train"]
    twenty = calibrations([slow] * 20)[KEY].factors["train"]
    # Then one sample moves the factor a quarter of the way in log space (prior weight 3), twenty 20/23 of it
    assert one == pytest.approx(4 ** (1 / 4), rel=1e-3) and one < 1.5
    assert twenty == pytest.approx(4 ** (20 / 23), rel=1e-3) and twenty > 3.0
    # And parts that matched the estimate stay at 1.0
    assert calibrations([slow] * 20)[KEY].factors["evaluate"] == 1.0


def test_jobs_estimated_with_a_calibration_are_compared_with_the_table_value() -> None:
    # Given a job estimated at 1200 s of training under a factor of 2 (the table said 600 s) that trained 2400 s
    estimated = {**ESTIMATED, "train": 1200.0}
    row = recorded(train=2400.0, estimated=estimated, calibration={"key": KEY, "factors": {"train": 2.0}})
    # Then it says 4x the table, as an uncalibrated job that trained as long would: factors do not compound
    assert calibrations([row])[KEY].factors["train"] == calibrations([recorded(train=2400.0)])[KEY].factors["train"]


def test_an_outlier_moves_the_factor_by_at_most_the_ratio_bound() -> None:
    # Given nineteen jobs as estimated and one that trained 1000x longer (a stuck mirror, a broken node)
    rows = [recorded()] * 19 + [recorded(train=600_000.0)]
    # Then that job counts as a ratio of 10 at most
    factor = calibrations(rows)[KEY].factors["train"]
    assert factor == pytest.approx(math.exp(math.log(calibration.RATIO_BOUND) / 23), rel=1e-3)
    assert factor < 1.11


def test_parts_nothing_measured_stay_at_the_table_value() -> None:
    # Given an estimate of 0 s for checkpoints (nothing to divide by) and no upload in the estimate at all
    factors = calibrations([recorded()])[KEY].factors
    # Then neither part gets a factor: the estimator's `.get(part, 1.0)` keeps the table's value
    assert "checkpoint" not in factors and "upload" not in factors
    assert factors["train"] == 1.0


def test_rows_without_an_estimate_split_failed_or_interrupted_are_ignored() -> None:
    rows = [
        {**recorded(train=6000.0), "estimated_seconds": None},  # recorded before the calibration fields
        recorded(train=6000.0, status="Failed"),  # cut short: its parts are partial
        recorded(train=6000.0, interruptions=Decimal("2")),  # waited and restarted: the spot band's business
        {**recorded(train=6000.0), "calibration_key": None},
    ]
    assert calibrations(rows) == {}


def test_rows_calibrate_their_own_key_only() -> None:
    other = {**recorded(train=60.0), "calibration_key": "g6#qlora#single"}
    result = calibrations([recorded(train=2400.0), other])
    assert set(result) == {KEY, "g6#qlora#single"}
    assert result[KEY].factors["train"] > 1 > result["g6#qlora#single"].factors["train"]
    assert result[KEY].samples == 1 and "1 completed job" in result[KEY].source


# -- Plan: reading the ledger's recent jobs per key ---------------------------------------------------------------
class CountingDynamoDB:
    """A DynamoDB client that records each Query's key and answers from `rows_by_key` (or raises `error`)."""

    def __init__(self, rows_by_key: dict[str, list[dict[str, Any]]] | None = None, error: Exception | None = None):
        self.rows_by_key, self.error, self.keys = rows_by_key or {}, error, []

    def query(self, **request: Any) -> dict[str, Any]:
        assert request["IndexName"] == ledger.CALIBRATION_INDEX and request["ScanIndexForward"] is False
        key = request["ExpressionAttributeValues"][":key"]["S"]
        self.keys.append(key)
        if self.error is not None:
            raise self.error
        serializer = TypeSerializer()
        items = [
            {k: serializer.serialize(v) for k, v in ledger.to_dynamo_value(row).items()}
            for row in self.rows_by_key.get(key, [])
        ]
        return {"Items": items[: request["Limit"]]}


def recorded_like(job: dict[str, Any], *, startup: float, train_phase: float) -> dict[str, Any]:
    """The ledger row of `job` after it started in `startup` s and ran its container `train_phase` s."""
    split = {"waiting": startup, "downloading": 0, "training": train_phase, "uploading": 0}
    final = {
        "status": "Completed",
        "training_seconds": int(startup + train_phase),
        "billable_seconds": int(startup + train_phase),
        "metrics": {},
        "creation_time": "2026-12-01T00:00:00+00:00",
        "time_split_seconds": split,
    }
    return ledger.to_json_value(ledger.job_row(job, final))  # type: ignore[arg-type]


def test_plan_estimates_each_job_with_the_calibration_of_its_key() -> None:
    # Given five recorded LoRA jobs of this key that started in 30 s where the table assumes 240 s
    [job] = study_jobs({"experiments": [{"model": "mistral-7b", "approach": "lora"}]})
    rows = [recorded_like(job, startup=30, train_phase=600)] * 5
    dynamodb = CountingDynamoDB({job["calibration_key"]: rows})
    # When Plan reads them and builds the job
    [calibrated] = study_jobs(
        {"experiments": [{"model": "mistral-7b", "approach": "lora"}]},
        calibrations=lambda experiments: plan.read_calibrations(dynamodb, "ledger", experiments),
    )
    # Then its startup estimate moved 5/8 of the way (in log space) toward 30 s, and so did its cost
    factor = (30 / 240) ** (5 / 8)
    assert calibrated["estimated_seconds"]["startup"] == pytest.approx(240 * factor, abs=0.1)
    assert calibrated["estimated_cost_usd"] < job["estimated_cost_usd"]
    # And the spec says which calibration was in force; the uncalibrated one says it had no samples
    assert calibrated["calibration"]["samples"] == 5 and calibrated["calibration"]["key"] == job["calibration_key"]
    assert job["calibration"] == {"key": job["calibration_key"], "samples": 0, "factors": {}, "source": ANY_SOURCE}


ANY_SOURCE = calibration.uncalibrated("k").source


def test_plan_queries_each_distinct_key_once() -> None:
    # Given the study matrix (8 jobs) and an empty ledger
    _, experiments = plan.validate_execution_input({})
    dynamodb = CountingDynamoDB()
    # When Plan reads the calibrations
    assert plan.read_calibrations(dynamodb, "ledger", experiments) == {}
    # Then it asked once per distinct key of the planned jobs, never twice
    keys = {calibration.job_calibration_key(exp) for exp in experiments}
    assert sorted(dynamodb.keys) == sorted(keys) and len(dynamodb.keys) == len(set(dynamodb.keys))


def test_a_calibration_read_that_fails_leaves_the_table_in_force() -> None:
    # Given a ledger that refuses the Query (after botocore's retries)
    error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Query")
    _, experiments = plan.validate_execution_input({"experiments": [{"model": "mistral-7b", "approach": "lora"}]})
    # Then Plan plans all the same, uncalibrated
    assert plan.read_calibrations(CountingDynamoDB(error=error), "ledger", experiments) == {}


def test_calibration_reads_stop_after_their_time_budget() -> None:
    # Given reads that each take 40 s
    _, experiments = plan.validate_execution_input({})
    ticks = iter(range(0, 10_000, 40))
    dynamodb = CountingDynamoDB()
    # When Plan reads the study's keys
    plan.read_calibrations(dynamodb, "ledger", experiments, clock=lambda: float(next(ticks)))
    # Then it stops once CALIBRATION_READ_SECONDS have passed: the keys left use the table
    assert 0 < len(dynamodb.keys) < len({calibration.job_calibration_key(exp) for exp in experiments})


def test_the_key_names_the_family_approach_and_the_planners_strategy() -> None:
    job = {"instance_type": "ml.g6e.xlarge", "approach": "full", "strategy": "lean"}
    assert calibration.job_calibration_key(job) == "g6e#full#lean"


def test_a_remedied_attempt_is_estimated_under_its_own_key() -> None:
    # Given a job planned with a calibration of its key (g6#lora#single)
    [job] = study_jobs({"experiments": [{"model": "mistral-7b", "approach": "lora"}]})
    in_force = Calibration(job["calibration_key"], {"train": 2.0}, 4, "ledger: 4 completed job(s)")
    planned = {**job, "calibration": in_force.as_dict()}
    decide = functools.partial(
        remedies.decide,
        status={"status": "Failed", "billable_seconds": 60, "training_seconds": 60},
        evidence="evidence",
        policy=remedies.RemedyPolicy(),
        reserve_per_job_usd=1000.0,
        price_of=plan.catalog_price,
    )
    # When a quota remedy moves it to another family (g5: g6.2xlarge's next fallback is g5.2xlarge)
    moved = decide(planned, failure_class="quota_exhausted", quota_of=lambda *_: None).job
    # Then the attempt carries its own key, uncalibrated (Remedy cannot read the ledger), and an estimate to match
    assert moved["instance_type"] == "ml.g5.2xlarge" and moved["calibration_key"] == "g5#lora#single"
    assert moved["calibration"]["samples"] == 0
    assert moved["estimated_seconds"]["total"] == pytest.approx(
        sum(moved["estimated_seconds"][p] for p in estimate.PARTS), abs=0.5
    )
    # And a remedy that keeps the family keeps the calibration its job was planned with
    same = decide(planned, failure_class="throttled", quota_of=lambda *_: None).job
    assert same["calibration"] == in_force.as_dict()
    assert same["estimated_seconds"]["train"] == pytest.approx(2 * job["estimated_seconds"]["train"], abs=0.2)
