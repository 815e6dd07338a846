"""The remedy policy: one remedy per failure class, bounded by attempts and the job's share of the budget; the
attempt names; the execution's `remedies` over the deployment's defaults; Plan's gate on the demo-only field."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas import catalog, naming, plan, remedies
from lambdas.errors import InvalidExecutionInput
from lambdas.handlers import plan as plan_handler
from lambdas.remedies import RemedyPolicy
from tests.support.lambdas import one_job

OOM = "AlgorithmError: OutOfMemoryError: CUDA out of memory"
FAILED = {"status": "Failed", "secondary_status": "Failed", "billable_seconds": 600}
GENEROUS = 1000.0  # reserve per job: budget is no object


def decide(job, failure_class: str, *, policy: RemedyPolicy | None = None, reserve: float = GENEROUS, **kw: Any):
    status = kw.pop("status", FAILED)
    quotas = kw.pop("quotas", {})
    return remedies.decide(
        job,
        status,
        failure_class,
        "evidence text",
        policy or RemedyPolicy(),
        reserve_per_job_usd=reserve,
        price_of=plan.catalog_price,
        quota_of=lambda instance_type, spot: quotas.get((instance_type, spot)),
        **kw,
    )


def test_out_of_memory_halves_the_batch_doubles_accumulation_and_starts_fresh_checkpoints() -> None:
    job = one_job()  # batch 8

    decision = decide(job, "out_of_memory")

    assert decision.retry
    nxt = decision.job
    assert (nxt["batch_size"], nxt["gradient_accumulation_steps"]) == (4, 2)
    assert nxt["attempt"] == 2 and nxt["base_job_name"] == job["job_name"]
    assert nxt["job_name"] == naming.attempt_job_name(job["job_name"], 2)
    assert (
        nxt["checkpoint_s3_uri"].startswith(job["checkpoint_s3_uri"])
        and nxt["checkpoint_s3_uri"] != job["checkpoint_s3_uri"]
    )
    assert nxt["prior_cost_usd"] == pytest.approx(600 * job["hourly_price_usd"] / 3600, abs=0.01)


def test_an_odd_batch_goes_to_one_with_the_same_effective_batch() -> None:
    decision = decide(one_job(batch_size=3), "out_of_memory")

    assert (decision.job["batch_size"], decision.job["gradient_accumulation_steps"]) == (1, 3)


def test_out_of_memory_at_batch_one_switches_lora_to_qlora_only_if_allowed() -> None:
    job = one_job(batch_size=1)

    switched = decide(job, "out_of_memory")
    refused = decide(job, "out_of_memory", policy=RemedyPolicy(qlora_fallback=False))

    assert switched.retry and switched.job["approach"] == "qlora"
    assert switched.job["output_s3_uri"].endswith("-qlora/")
    assert not refused.retry and "qlora_fallback is off" in refused.cause


def test_quota_moves_to_the_next_fallback_type_that_fits_and_has_quota() -> None:
    job = one_job()  # ml.g6.2xlarge; fallbacks g5.2xlarge, g6.4xlarge, ...

    decision = decide(job, "quota_exhausted", quotas={("ml.g5.2xlarge", True): 0.0})

    assert decision.retry
    assert decision.job["instance_type"] == "ml.g6.4xlarge"  # g5.2xlarge's quota is 0
    assert decision.job["tried_instance_types"] == ["ml.g6.2xlarge"]
    assert decision.job["checkpoint_s3_uri"] == job["checkpoint_s3_uri"]  # same settings: progress is kept
    assert "ml.g6.2xlarge for spot training job usage" in decision.hint
    # and the moved job is planned and estimated for its new type
    assert decision.job["strategy"] == "single" and decision.job["calibration_key"] == "g6#lora#single"


def test_quota_with_no_fallback_left_stops_and_names_the_quota_to_raise() -> None:
    tried = ["ml.g5.48xlarge", "ml.g6e.48xlarge", "ml.p4d.24xlarge"]
    job = {**one_job(model="gpt-neox-20b", approach="full"), "tried_instance_types": tried}

    decision = decide(job, "quota_exhausted")

    assert not decision.retry
    assert "no fallback instance type is left" in decision.cause
    assert "Service Quotas" in decision.hint


def test_spot_capacity_goes_on_demand_or_else_to_the_next_type() -> None:
    job = one_job()

    on_demand = decide(job, "spot_wait_exceeded")
    next_type = decide(job, "capacity_unavailable", policy=RemedyPolicy(on_demand=False))

    assert on_demand.job["spot"] is False and on_demand.job["max_wait_seconds"] is None
    assert on_demand.job["instance_type"] == job["instance_type"]
    assert next_type.job["spot"] is True and next_type.job["instance_type"] == "ml.g5.2xlarge"
    # The next attempt's expected cost is estimated again for what changed: on-demand costs what spot was expected to
    assert on_demand.job["estimated_cost_usd"] == pytest.approx(job["estimated_on_demand_cost_usd"], rel=1e-3)
    assert on_demand.job["estimated_cost_usd"] > job["estimated_cost_usd"]


def test_runtime_exceeded_resumes_with_a_longer_runtime_from_the_same_checkpoints() -> None:
    job = one_job()

    decision = decide(job, "runtime_exceeded", status={**FAILED, "status": "Stopped"})

    assert decision.job["max_runtime_seconds"] == 2 * job["max_runtime_seconds"]
    assert decision.job["max_wait_seconds"] >= decision.job["max_runtime_seconds"]
    assert decision.job["checkpoint_s3_uri"] == job["checkpoint_s3_uri"]


@pytest.mark.parametrize("failure_class", ["user_code_error", "data_error", "unknown", "not-a-class"])
def test_causes_no_retry_fixes_stop_at_once(failure_class: str) -> None:
    decision = decide(one_job(), failure_class)

    assert not decision.retry and decision.job is None
    assert "evidence text" in decision.cause


def test_throttled_retries_the_same_job_and_unknown_only_when_allowed() -> None:
    job = one_job()

    throttled = decide(job, "throttled")
    unknown = decide(job, "unknown", policy=RemedyPolicy(retry_unknown=True))

    for decision in (throttled, unknown):
        assert decision.retry
        assert {k: v for k, v in decision.job.items() if k in job and k != "job_name"} == {
            k: v for k, v in job.items() if k not in ("job_name", "estimated_max_cost_usd")
        } | {"estimated_max_cost_usd": decision.job["estimated_max_cost_usd"]}


def test_the_last_allowed_attempt_is_not_retried() -> None:
    job = {**one_job(), "attempt": 3}

    decision = decide(job, "out_of_memory", policy=RemedyPolicy(max_attempts=3))

    assert not decision.retry and "no attempt left" in decision.cause


def test_a_remedy_over_the_jobs_share_of_the_budget_stops_with_the_numbers() -> None:
    job = one_job()  # $2.45 maximum (2 h x ml.g6.2xlarge); the failed attempt cost $0.25

    decision = decide(job, "out_of_memory", reserve=0.02)

    assert not decision.retry
    assert "$2.45" in decision.cause and "share of budget_usd" in decision.cause
    assert decision.remedy.startswith("per-device batch 8 -> 4")


def test_no_attempt_starts_that_could_outlast_the_execution() -> None:
    job = one_job()  # spot: its worst case is MaxWait
    worst = job["max_wait_seconds"] + catalog.JOB_OVERHEAD_SECONDS

    fits = decide(job, "throttled", deadline_epoch_seconds=1000 + worst, now_epoch_seconds=1000)
    too_late = decide(job, "throttled", deadline_epoch_seconds=1000 + worst - 1, now_epoch_seconds=1000)

    assert fits.retry
    assert not too_late.retry and too_late.remedy == "the same job again"
    assert "the execution times out in" in too_late.cause and "execution_timeout_hours" in too_late.cause


def test_attempt_names_keep_the_hash_and_fit_sagemakers_limit() -> None:
    base = "finetune-3f9c2a-a-very-long-run-identifier-for-tests-mistral-7b-lora-1a2b3c4d"[:63].rstrip("-")
    short = "finetune-3f9c2a-run-mistral-7b-lora-1a2b3c4d"

    assert naming.attempt_job_name(short, 1) == short
    assert naming.attempt_job_name(short, 2) == f"{short}-a2"
    for attempt in (2, 10):
        name = naming.attempt_job_name(base, attempt)
        assert len(name) <= naming.JOB_NAME_MAX and naming.JOB_NAME_PATTERN.match(name)
        assert name.endswith(f"-a{attempt}")
    assert naming.attempt_job_name(base, 2) != naming.attempt_job_name(base, 3)


def test_the_execution_input_overrides_the_deployment_defaults_field_by_field() -> None:
    defaults = RemedyPolicy(max_attempts=4, on_demand=False)

    policy = remedies.parse_policy({"on_demand": True}, defaults)

    assert (policy.max_attempts, policy.on_demand) == (4, True)
    with pytest.raises(ValueError, match=r"remedies\.max_attempts"):
        remedies.parse_policy({"max_attempts": 0})
    with pytest.raises(ValueError, match=r"remedies\.colour"):
        remedies.parse_policy({"colour": "red"})


def test_the_schema_accepts_remedies_and_the_demo_field() -> None:
    doc = plan.validate_schema(
        {
            "remedies": {"max_attempts": 2, "on_demand": False},
            "experiments": [{"model": "mistral-7b", "approach": "lora", "inject_failure": "oom"}],
        }
    )

    assert doc["remedies"]["max_attempts"] == 2
    with pytest.raises(InvalidExecutionInput, match="remedies"):
        plan.validate_schema({"remedies": {"max_attempts": 0}})


def test_plan_refuses_inject_failure_outside_the_offline_runner(monkeypatch) -> None:
    execution_input = {"experiments": [{"model": "mistral-7b", "approach": "lora", "inject_failure": "oom"}]}
    jobs = [one_job()]
    monkeypatch.delenv("FINETUNE_ALLOW_FAILURE_INJECTION", raising=False)

    with pytest.raises(InvalidExecutionInput, match=r"experiments\[0\].inject_failure.*demo only"):
        plan_handler.with_experiment_fields(execution_input, jobs, None)

    monkeypatch.setenv("FINETUNE_ALLOW_FAILURE_INJECTION", "true")
    [job] = plan_handler.with_experiment_fields(execution_input, jobs, None)
    assert job["inject_failure"] == "oom"


def test_each_job_gets_an_equal_share_of_the_unplanned_budget() -> None:
    result = {"jobs": [one_job(), one_job(approach="qlora")], "budget_usd": 10.0, "total_estimated_max_cost_usd": 7.0}

    healing = plan_handler.healing({"remedies": {"max_attempts": 2}}, result, deadline_epoch_seconds=5000.7)

    assert healing == {"remedies": {"max_attempts": 2}, "reserve_per_job_usd": 1.5, "deadline_epoch_seconds": 5000}


def test_the_deployment_defaults_come_from_cdk_json_and_reach_remedy_as_json() -> None:
    import json

    from lambdas.settings import RemedySettings
    from stacks.config import ConfigError, load_config

    config = load_config({"remedies": {"max_attempts": 5, "on_demand": False}})
    settings = RemedySettings.from_env(
        {"AWS_REGION": "us-east-1", "REMEDY_DEFAULTS": json.dumps(config.remedies.as_dict())}
    )

    assert settings.defaults == RemedyPolicy(max_attempts=5, on_demand=False)
    assert load_config({}).remedies == RemedyPolicy()
    with pytest.raises(ConfigError, match=r"finetune\.remedies\.max_attempts"):
        load_config({"remedies": {"max_attempts": 0}})


def test_the_report_groups_attempts_by_job_and_leaves_unremedied_runs_alone() -> None:
    from lambdas import report

    def row(name: str, attempt: int, status: str, cost_usd: float, failure_class: str | None = None) -> dict:
        return {
            "job_name": name if attempt == 1 else f"{name}-a{attempt}",
            "base_job_name": name,
            "attempt": attempt,
            "model": "mistral-7b",
            "approach": "lora",
            "instance_type": "ml.g5.2xlarge",
            "instance_count": 1,
            "spot": True,
            "status": status,
            "cost_usd": cost_usd,
            "failure_class": failure_class,
            "remedy": {"remedy": "per-device batch 8 -> 4"} if failure_class else None,
        }

    healed = report.build_report(
        "run-1", [row("job-a", 1, "Failed", 0.25, "out_of_memory"), row("job-a", 2, "Completed", 1.5)]
    )
    plain = report.build_report(
        "run-1", [{k: v for k, v in row("job-b", 1, "Completed", 1.0).items() if k not in ("attempt", "base_job_name")}]
    )

    [job] = healed["attempts"]
    assert job["total_cost_usd"] == 1.75 and job["final_status"] == "Completed"
    assert [a["failure_class"] for a in job["attempts"]] == ["out_of_memory", None]
    assert "**2 attempts**" in report.render_markdown(healed)
    assert plain["attempts"] == [] and "## Attempts" not in report.render_markdown(plain)


def test_every_failure_class_is_either_terminal_or_has_exactly_one_remedy() -> None:
    # Given the failure classes Classify can return
    from lambdas.failures import FailureClass

    # Then each one is answered: stopped at once (TERMINAL) or remedied by its one function (REMEDIES), never both
    assert set(remedies.TERMINAL) | set(remedies.REMEDIES) == set(FailureClass)
    assert not set(remedies.TERMINAL) & set(remedies.REMEDIES)
