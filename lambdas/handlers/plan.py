"""Plan Lambda: `{"input": <execution input v1>, "execution_name": "..."}` -> the run's JobSpecs, or a typed error.

Errors (Step Functions error names): InvalidExecutionInput, InfeasibleJob, DatasetNotFound, BudgetExceeded,
ExecutionLimitExceeded, HfTokenMissing, QuotaExceeded, ConfigurationError. Nothing is launched here.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, plan, settings
from lambdas.errors import ConfigurationError, InvalidExecutionInput
from lambdas.handlers.observability import instrumented, logger
from lambdas.job_spec import JobSpec


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Validate, expand, fit, price and check the run; return `{run_id, jobs, total_estimated_max_cost_usd,
    total_estimated_cost_usd, budget_usd}`."""
    if not event.get("execution_name"):
        raise ConfigurationError("Plan event needs execution_name (the state machine passes $$.Execution.Name)")
    config = settings.plan_settings()
    result = plan.plan_run(
        event.get("input") or {},
        event["execution_name"],
        config,
        s3=aws.client("s3"),
        pricing=aws.pricing_client(config.region),
        quotas=aws.service_quotas_client(config.region),
        secretsmanager=aws.client("secretsmanager"),
        # Calibration reads are advisory (the table's values are the fallback): few attempts, a short timeout.
        dynamodb=aws.client("dynamodb", max_attempts=2, read_timeout=10),
        fetch_config=None if hub_offline() else plan.fetch_hub_config,
    )
    result = {**result, "jobs": with_experiment_fields(event.get("input") or {}, result["jobs"], config)}
    logger.info(
        "run planned",
        extra={
            "run_id": result["run_id"],
            "jobs": len(result["jobs"]),
            "total_estimated_max_cost_usd": result["total_estimated_max_cost_usd"],
            "total_estimated_cost_usd": result["total_estimated_cost_usd"],
        },
    )
    # Plan runs seconds after the execution starts: its clock, less the run's own overhead, dates the timeout.
    deadline = time.time() + config.execution_timeout_seconds - plan.RUN_OVERHEAD_SECONDS
    return {**result, "healing": healing(event.get("input") or {}, result, deadline_epoch_seconds=deadline)}


def hub_offline(env: Mapping[str, str] | None = None) -> bool:
    """Whether Plan must not fetch config.json from the Hub: `HF_HUB_OFFLINE`, the Hub's own switch (the offline
    runner and the tests set it); a Hub model is then sized from the input alone."""
    value = (os.environ if env is None else env).get("HF_HUB_OFFLINE", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def with_experiment_fields(execution_input: dict[str, Any], jobs: list[JobSpec], config: Any) -> list[JobSpec]:
    """Plan's specs plus the demo-only `inject_failure` of their experiments, refused unless this is the offline
    runner (settings.failure_injection_allowed). Explicit experiments map one to one, in order, onto the jobs (the
    model's size and shape are on every spec already: Plan puts them there)."""
    experiments = execution_input.get("experiments") or []
    injected = [(i, e["inject_failure"]) for i, e in enumerate(experiments) if e.get("inject_failure")]
    if injected and not settings.failure_injection_allowed():
        raise InvalidExecutionInput(
            [
                (f"experiments[{i}].inject_failure", "demo only: honoured by the offline runner (make demo), not here")
                for i, _ in injected
            ]
        )
    if len(experiments) != len(jobs):
        return jobs
    extra = [
        {"inject_failure": experiment["inject_failure"]} if experiment.get("inject_failure") else {}
        for experiment in experiments
    ]
    return [cast(JobSpec, {**job, **fields}) for job, fields in zip(jobs, extra, strict=True)]


def healing(execution_input: dict[str, Any], result: Any, *, deadline_epoch_seconds: float) -> dict[str, Any]:
    """What the Map's iterations need for remedies: the execution's `remedies` input (Remedy merges it over the
    deployment's defaults), each job's equal share of the budget Plan did not need for the jobs' maxima, and when
    the execution times out (no attempt may outlast it)."""
    jobs = result["jobs"]
    unplanned = max(float(result["budget_usd"]) - float(result["total_estimated_max_cost_usd"]), 0.0)
    return {
        "remedies": execution_input.get("remedies") or {},
        # Rounded down: the shares never add up to more than the budget.
        "reserve_per_job_usd": math.floor(unplanned / len(jobs) * 1e6) / 1e6 if jobs else 0.0,
        "deadline_epoch_seconds": int(deadline_epoch_seconds),
    }
