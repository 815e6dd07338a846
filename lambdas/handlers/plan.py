"""Plan Lambda: `{"input": <execution input v1>, "execution_name": "..."}` -> the run's JobSpecs, or a typed error.

Errors (Step Functions error names): InvalidExecutionInput, InfeasibleJob, DatasetNotFound, BudgetExceeded,
ExecutionLimitExceeded, HfTokenMissing, QuotaExceeded, ConfigurationError. Nothing is launched here.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, plan, records, settings
from lambdas.errors import ConfigurationError, InvalidExecutionInput
from lambdas.handlers.classify import Healing
from lambdas.handlers.observability import instrumented, logger
from lambdas.job_spec import JobSpec, PlanOutput


class PlanEvent(TypedDict):
    """The Plan step's event (stacks/constructs/workflow.py). The execution input is left as it came: Plan checks it
    against its own JSON Schema (lambdas/plan.validate_execution_input), whose errors name the field for the user."""

    input: NotRequired[Any]
    execution_name: str


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Validate, expand, fit, price and check the run; return `{run_id, jobs, total_estimated_max_cost_usd,
    total_estimated_cost_usd, budget_usd, calibration, healing}`."""
    request = records.parse(PlanEvent, event)
    if not request["execution_name"]:
        raise ConfigurationError("Plan event needs execution_name (the state machine passes $$.Execution.Name)")
    execution_input = request.get("input") or {}
    config = settings.plan_settings()
    result = plan.plan_run(
        execution_input,
        request["execution_name"],
        config,
        s3=aws.client("s3"),
        pricing=aws.pricing_client(config.region),
        quotas=aws.service_quotas_client(config.region),
        secretsmanager=aws.client("secretsmanager"),
        # Calibration reads are advisory (the table's values are the fallback): few attempts, a short timeout.
        dynamodb=aws.client("dynamodb", max_attempts=2, read_timeout=10),
        fetch_config=None if hub_offline() else plan.fetch_hub_config,
    )
    result["jobs"] = with_experiment_fields(execution_input, result["jobs"], config)
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
    return {**result, "healing": healing(execution_input, result, deadline_epoch_seconds=deadline)}


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
    return [
        {**job, "inject_failure": experiment["inject_failure"]} if experiment.get("inject_failure") else job
        for job, experiment in zip(jobs, experiments, strict=True)
    ]


def healing(execution_input: dict[str, Any], result: PlanOutput, *, deadline_epoch_seconds: float) -> Healing:
    """What the Map's iterations need for remedies: the execution's `remedies` input (Remedy merges it over the
    deployment's defaults), each job's equal share of the budget Plan did not need for the jobs' maxima, and when
    the execution times out (no attempt may outlast it)."""
    jobs = result["jobs"]
    unplanned = max(result["budget_usd"] - result["total_estimated_max_cost_usd"], 0.0)
    return {
        "remedies": execution_input.get("remedies") or {},
        # Rounded down: the shares never add up to more than the budget.
        "reserve_per_job_usd": math.floor(unplanned / len(jobs) * 1e6) / 1e6 if jobs else 0.0,
        "deadline_epoch_seconds": int(deadline_epoch_seconds),
    }
