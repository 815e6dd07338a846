"""Service-quota increase requests for SageMaker training instance types.

Quota codes differ per account generation and region, so they are looked up by their names
(`<instance type> for <usage> usage`) and never hard-coded. AWS declining, a quota that is not adjustable
or any API error is an *outcome* to report, never an exception: a quota request must not fail a deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

SERVICE_CODE = "sagemaker"
# Request states in which AWS is still deciding. Unknown future states are treated as closed, so at worst
# a second request is attempted, which AWS answers with ResourceAlreadyExistsException (reported as pending).
OPEN_REQUEST_STATES = frozenset({"PENDING", "CASE_OPENED"})


@dataclass(frozen=True)
class QuotaTarget:
    """The quota value wanted for one instance type and usage."""

    instance_type: str
    usage: str
    desired_value: int

    @property
    def quota_name(self) -> str:
        """The name SageMaker gives this quota."""
        return f"{self.instance_type} for {self.usage} usage"


@dataclass(frozen=True)
class QuotaOutcome:
    """What happened for one target. `result` is one of: sufficient, requested, pending, not-adjustable,
    not-found, error."""

    instance_type: str
    usage: str
    desired_value: int
    result: str
    current_value: float | None = None
    quota_code: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def parse_targets(properties: Iterable[Mapping[str, Any]]) -> list[QuotaTarget]:
    """Targets from custom-resource properties (CloudFormation passes every value as a string)."""
    return [
        QuotaTarget(
            instance_type=str(item["InstanceType"]),
            usage=str(item["Usage"]),
            desired_value=int(str(item["DesiredValue"])),
        )
        for item in properties
    ]


def _quotas_by_name(client: Any, operation: str) -> dict[str, dict[str, Any]]:
    paginator = client.get_paginator(operation)
    found: dict[str, dict[str, Any]] = {}
    for page in paginator.paginate(ServiceCode=SERVICE_CODE):
        for quota in page.get("Quotas", []):
            found[quota["QuotaName"]] = quota
    return found


def _open_request_id(client: Any, quota_code: str) -> str | None:
    paginator = client.get_paginator("list_requested_service_quota_change_history_by_quota")
    for page in paginator.paginate(ServiceCode=SERVICE_CODE, QuotaCode=quota_code):
        for request in page.get("RequestedQuotas", []):
            if request.get("Status") in OPEN_REQUEST_STATES:
                return str(request.get("Id", ""))
    return None


def _error_text(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Unknown')}: {details.get('Message', '')}"[:300]


def ensure_quotas(client: Any, targets: Iterable[QuotaTarget]) -> list[QuotaOutcome]:
    """Request increases where the applied value is below the desired one and no request is open yet."""
    targets = list(targets)
    try:
        applied = _quotas_by_name(client, "list_service_quotas")
        # Quotas never changed in an account may be missing from the applied list; the default list still names
        # them (and gives their codes), but its value is AWS's default, not what this account may use.
        defaults = _quotas_by_name(client, "list_aws_default_service_quotas")
    except ClientError as error:
        return [QuotaOutcome(**asdict(t), result="error", detail=_error_text(error)) for t in targets]

    outcomes = []
    for target in targets:
        quota = applied.get(target.quota_name)
        if quota is None and target.quota_name in defaults:
            quota = _applied_value(client, defaults[target.quota_name], target)
        if quota is None:
            outcomes.append(
                QuotaOutcome(**asdict(target), result="not-found", detail=f"no quota named '{target.quota_name}'")
            )
            continue
        outcomes.append(_ensure_one(client, target, quota))
    return outcomes


def _applied_value(client: Any, default: Mapping[str, Any], target: QuotaTarget) -> dict[str, Any]:
    """The applied value of a quota ListServiceQuotas did not list, as far as it can be known.

    AWS documents that ListServiceQuotas (and GetServiceQuota) return applied values only where one is available;
    a new account's applied value may be *lower* than the default (spot GPU quotas often start at 0). So the default
    never proves a quota sufficient: GetServiceQuota is asked, and when it has no applied value either, the value is
    unknown (`Value` None) and an increase is requested (AWS refuses one that is not an increase, reported as error).
    """
    if float(default.get("Value", 0.0)) < target.desired_value:
        return dict(default)  # below what is wanted either way: request it, as before
    try:
        response = client.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=str(default["QuotaCode"]))
        return {**default, **response.get("Quota", {})}
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchResourceException":
            logger.warning("GetServiceQuota %s failed: %s", default["QuotaCode"], _error_text(error))
    return {**default, "Value": None}


def _ensure_one(client: Any, target: QuotaTarget, quota: Mapping[str, Any]) -> QuotaOutcome:
    code = str(quota["QuotaCode"])
    value = quota.get("Value", 0.0)
    current = float(value) if value is not None else None
    base = {**asdict(target), "current_value": current, "quota_code": code}
    if current is not None and current >= target.desired_value:
        return QuotaOutcome(**base, result="sufficient")
    if not quota.get("Adjustable", False):
        return QuotaOutcome(**base, result="not-adjustable", detail="AWS does not allow increasing this quota")
    try:
        open_request = _open_request_id(client, code)
        if open_request is not None:
            return QuotaOutcome(**base, result="pending", detail=f"request {open_request} already open")
        response = client.request_service_quota_increase(
            ServiceCode=SERVICE_CODE, QuotaCode=code, DesiredValue=float(target.desired_value)
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException":
            return QuotaOutcome(**base, result="pending", detail="a request is already open")
        return QuotaOutcome(**base, result="error", detail=_error_text(error))
    requested = response.get("RequestedQuota", {})
    return QuotaOutcome(
        **base, result="requested", detail=f"request {requested.get('Id', '?')} is {requested.get('Status', 'PENDING')}"
    )


def summarize(outcomes: Iterable[QuotaOutcome]) -> str:
    """One line per outcome, short enough for a stack output (CloudFormation caps custom-resource data at 4 KB)."""
    return "; ".join(
        f"{o.instance_type} ({o.usage}): {o.result}"
        + (f" {o.current_value:g}->{o.desired_value}" if o.current_value is not None else "")
        for o in outcomes
    )
