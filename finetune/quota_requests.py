"""SageMaker quotas as an operator needs them: applied value and code by name, open increase requests, and the exact
AWS CLI command that asks for more.

Quota codes differ per account generation and region (lambdas/quotas.py), so they are always looked up by the quota's
name (`<instance type> for [spot ]training job usage`) and printed, never hard-coded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.quotas import OPEN_REQUEST_STATES, SERVICE_CODE

# Plan's QuotaExceeded ("quota 'ml.g5.xlarge for spot training job usage' is 0 instances but this run needs 2 at
# once") and CreateTrainingJob's ResourceLimitExceeded ("The account-level service limit 'ml.g5.xlarge for spot
# training job usage' is 0 Instances, with current utilization of 0 Instances and a request delta of 1 Instances").
_PLAN_SHORTFALL = re.compile(r"quota '(?P<name>[^']+)' is [\d.]+ instances but this run needs (?P<needed>\d+)")
_LAUNCH_SHORTFALL = re.compile(
    r"service limit '(?P<name>[^']+)' is (?P<limit>[\d.]+) Instances, with current utilization of "
    r"(?P<used>[\d.]+) Instances and a request delta of (?P<delta>[\d.]+)"
)


@dataclass(frozen=True)
class Quota:
    """An applied (or default) SageMaker quota."""

    name: str
    code: str
    value: float
    adjustable: bool
    applied: bool  # False: AWS's default, the account never had it changed (Plan skips such a quota's check)


def sagemaker_quotas(client: Any) -> dict[str, Quota]:
    """SageMaker quotas by name: the applied values over AWS's defaults (a quota never changed in an account may be
    missing from the applied list)."""
    found: dict[str, Quota] = {}
    for operation in ("list_aws_default_service_quotas", "list_service_quotas"):
        for page in client.get_paginator(operation).paginate(ServiceCode=SERVICE_CODE):
            for quota in page.get("Quotas", []):
                found[quota["QuotaName"]] = Quota(
                    name=quota["QuotaName"],
                    code=quota["QuotaCode"],
                    value=float(quota.get("Value", 0)),
                    adjustable=bool(quota.get("Adjustable", True)),
                    applied=operation == "list_service_quotas",
                )
    return found


def open_requests(client: Any) -> dict[str, list[dict[str, Any]]] | None:
    """Open (PENDING, CASE_OPENED) SageMaker quota increase requests by quota code; None when they cannot be read."""
    requests: dict[str, list[dict[str, Any]]] = {}
    try:
        paginator = client.get_paginator("list_requested_service_quota_change_history")
        for page in paginator.paginate(ServiceCode=SERVICE_CODE):
            for request in page.get("RequestedQuotas", []):
                if request.get("Status") in OPEN_REQUEST_STATES:
                    requests.setdefault(request["QuotaCode"], []).append(request)
    except (ClientError, BotoCoreError):
        return None
    return requests


def increase_command(code: str, desired_value: float, region: str | None) -> str:
    """The AWS CLI command that requests `desired_value` for the quota."""
    command = (
        f"aws service-quotas request-service-quota-increase --service-code {SERVICE_CODE} "
        f"--quota-code {code} --desired-value {desired_value:g}"
    )
    return command + (f" --region {region}" if region else "")


def shortfalls_in(message: str) -> dict[str, float]:
    """Quota name → instances needed, from Plan's QuotaExceeded or CreateTrainingJob's ResourceLimitExceeded text."""
    needed: dict[str, float] = {}
    for match in _PLAN_SHORTFALL.finditer(message):
        needed[match["name"]] = max(needed.get(match["name"], 0), float(match["needed"]))
    for match in _LAUNCH_SHORTFALL.finditer(message):
        wanted = float(match["used"]) + float(match["delta"])
        needed[match["name"]] = max(needed.get(match["name"], 0), wanted)
    return needed


def request_commands(client: Any, shortfalls: dict[str, float], region: str | None) -> list[str]:
    """One `aws service-quotas request-service-quota-increase` line per short quota (by name; codes looked up), or a
    note where the quota is unknown or cannot be read."""
    try:
        quotas = sagemaker_quotas(client)
    except (ClientError, BotoCoreError) as exc:
        return [f"(cannot read the quota codes: {exc}); request in the Service Quotas console, service sagemaker"]
    lines = []
    for name, needed in sorted(shortfalls.items()):
        quota = quotas.get(name)
        if quota is None:
            lines.append(f"# no SageMaker quota named '{name}' in this region")
        else:
            lines.append(increase_command(quota.code, needed, region))
    return lines
