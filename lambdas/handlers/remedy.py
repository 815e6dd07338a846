"""Remedy Lambda: `{"job", "failure": <Classify's output>, "healing": {"remedies", "reserve_per_job_usd"}}` ->
`{action: retry|stop, remedy, cause, hint, spent_usd, job?}` (lambdas/remedies.py).

`job` is the next attempt's JobSpec when `action` is retry; the state machine launches it. Prices of a new instance
type come from the Price List API (the catalog's when it cannot be read), quotas from Service Quotas (unknown when
it cannot be read: CreateTrainingJob then decides). Errors: ConfigurationError, InvalidRecord.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, catalog, cost, plan, records, remedies, settings
from lambdas.handlers.classify import Classification, Healing
from lambdas.handlers.observability import instrumented, logger
from lambdas.job_spec import JobSpec


class RemedyEvent(TypedDict):
    """The Remedy step's event (stacks/constructs/workflow.py): the failed attempt, Classify's verdict on it and the
    run's remedy settings."""

    job: JobSpec
    failure: Classification
    healing: NotRequired[Healing | None]


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> remedies.RemedyOutcome:
    """Decide the remedy for one failed attempt."""
    request = records.parse(RemedyEvent, event)
    job, failure = request["job"], request["failure"]
    config = settings.remedy_settings()
    healing: Healing = request.get("healing") or {}
    policy = remedies.parse_policy(healing.get("remedies"), config.defaults)
    quotas: dict[str, float] | None = None

    def quota_of(instance_type: str, spot: bool) -> float | None:
        nonlocal quotas
        if quotas is None:
            quotas = plan.quota_values(aws.service_quotas_client(config.region)) or {}
        return quotas.get(catalog.training_quota_name(instance_type, spot))

    def price_of(instance_type: str) -> cost.Price:
        return cost.lookup_hourly_price(aws.pricing_client(config.region), instance_type, config.region)

    if failure.get("still_running"):
        # Classify found the attempt still running on SageMaker (the workflow lost it): never start another beside it.
        return remedies.Decision(
            False,
            "none",
            f"the attempt is still running on SageMaker (it stops at its MaxRuntime); no other attempt is started "
            f"beside it. Evidence: {failure['failure_evidence']}",
            float(remedies.attempt_cost_usd(job, failure["status"])),
        ).as_dict()
    decision = remedies.decide(
        job,
        failure["status"],
        failure["failure_class"],
        failure["failure_evidence"],
        policy,
        reserve_per_job_usd=healing.get("reserve_per_job_usd") or 0.0,
        price_of=price_of,
        quota_of=quota_of,
        deadline_epoch_seconds=healing.get("deadline_epoch_seconds"),
    )
    result = decision.as_dict()
    logger.info(
        "remedy decided",
        extra={"job_name": job["job_name"], "action": result["action"], "remedy": result["remedy"]},
    )
    return result
