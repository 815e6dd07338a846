"""Custom-resource handler (Provider framework `onEvent`) that requests SageMaker quota increases."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import records
from lambdas.aws import client
from lambdas.handlers.observability import instrumented, logger
from lambdas.quotas import ensure_quotas, parse_targets, summarize

_quotas = client("service-quotas")


@records.open_record
class CustomResourceEvent(TypedDict):
    """The Provider framework's `onEvent` request, as much of it as this handler reads (CloudFormation sends more,
    e.g. StackId and ResponseURL: it stays open)."""

    RequestType: Literal["Create", "Update", "Delete"]
    LogicalResourceId: str
    PhysicalResourceId: NotRequired[str]
    ResourceProperties: NotRequired[dict[str, Any]]  # QuotaRequests: lambdas/quotas.parse_targets reads it


@instrumented
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    """Create/Update: request what is missing and report per target. Delete: nothing (quotas stay as granted)."""
    request = records.parse(CustomResourceEvent, event)
    physical_id = request.get("PhysicalResourceId") or f"quota-requests-{request['LogicalResourceId']}"
    if request["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    targets = parse_targets(request.get("ResourceProperties", {}).get("QuotaRequests", []))
    outcomes = ensure_quotas(_quotas, targets)
    for outcome in outcomes:
        logger.info("quota outcome", extra=outcome.as_dict())
    data = {f"{o.instance_type}/{o.usage}": o.result for o in outcomes}
    data["Summary"] = summarize(outcomes) or "no quota requests configured"
    return {"PhysicalResourceId": physical_id, "Data": data}
