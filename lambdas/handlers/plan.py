"""Plan Lambda: `{"input": <execution input v1>, "execution_name": "..."}` -> the run's JobSpecs, or a typed error.

Errors (Step Functions error names): InvalidExecutionInput, InfeasibleJob, DatasetNotFound, BudgetExceeded,
ExecutionLimitExceeded, HfTokenMissing, QuotaExceeded, ConfigurationError. Nothing is launched here.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, plan, settings
from lambdas.errors import ConfigurationError
from lambdas.handlers.observability import instrumented, logger


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
    )
    logger.info(
        "run planned",
        extra={
            "run_id": result["run_id"],
            "jobs": len(result["jobs"]),
            "total_estimated_max_cost_usd": result["total_estimated_max_cost_usd"],
            "total_estimated_cost_usd": result["total_estimated_cost_usd"],
        },
    )
    return dict(result)
