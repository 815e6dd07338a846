"""SageMaker quotas as an operator needs them: applied value and code by name, open increase requests, and the exact
AWS CLI command that asks for more.

Quota codes differ per account generation and region, so they are always looked up by the quota's name
(`catalog.training_quota_name`) in the one listing of them (`lambdas.quotas.sagemaker_quotas`) and printed, never
hard-coded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas import catalog
from lambdas.failures import instances_wanted
from lambdas.quotas import (
    OPEN_REQUEST_STATES,
    SERVICE_CODE,
    Quota,
    parse_shortfalls,
    quota_shortfalls,
    sagemaker_quotas,
)


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


@dataclass(frozen=True)
class QuotaStanding:
    """One instance type's training quota against the instances a run holds at once (a row of `finetune quotas`)."""

    instance_type: str
    name: str
    needed: int
    quota: Quota | None  # None: no quota of that name is listed
    open_requests: list[dict[str, Any]] | None  # None: the request history cannot be read
    short: bool

    @property
    def needs_request(self) -> bool:
        """Short, with a known code, and no open request asks for enough already."""
        requested = self.open_requests or []
        return (
            self.short
            and self.quota is not None
            and not any(float(r.get("DesiredValue", 0)) >= self.needed for r in requested)
        )

    def request_command(self, region: str | None) -> str | None:
        """The AWS CLI command that asks for what this run needs, when one should be sent."""
        if not self.needs_request or self.quota is None:
            return None
        return increase_command(self.quota.code, self.needed, region)

    def cells(self) -> tuple[str, ...]:
        """instance, quota, code, needs, applied, open request, ok."""
        if self.quota is None or self.quota.value is None:
            value = "not listed" if self.quota is None else "unknown"
        else:
            value = f"{self.quota.value:g}" + ("" if self.quota.applied else " (default)")
        if self.open_requests is None:
            pending = "unknown"
        else:
            pending = ", ".join(f"{r.get('DesiredValue', 0):g} {r['Status']}" for r in self.open_requests) or "-"
        code = self.quota.code if self.quota else "-"
        return self.instance_type, self.name, code, str(self.needed), value, pending, "NO" if self.short else "yes"


def standings(client: Any, needed: Mapping[str, int], *, spot: bool) -> tuple[list[QuotaStanding], bool]:
    """Each instance type's quota standing (applied values over AWS's defaults, compared as Plan compares them:
    `lambdas.quotas.quota_shortfalls`; a quota that is not listed counts as short here), and whether the open
    requests could be read."""
    known = sagemaker_quotas(client)
    requests = open_requests(client)
    values = {name: quota.value for name, quota in known.items() if quota.value is not None}
    short = {shortfall.name for shortfall in quota_shortfalls(values, needed, spot=spot)}
    rows = []
    for instance_type, count in sorted(needed.items()):
        name = catalog.training_quota_name(instance_type, spot)
        quota = known.get(name)
        opened = None if requests is None else ([] if quota is None else requests.get(quota.code, []))
        rows.append(QuotaStanding(instance_type, name, count, quota, opened, name in short or name not in values))
    return rows, requests is not None


def increase_command(code: str, desired_value: float, region: str | None) -> str:
    """The AWS CLI command that requests `desired_value` for the quota."""
    command = (
        f"aws service-quotas request-service-quota-increase --service-code {SERVICE_CODE} "
        f"--quota-code {code} --desired-value {desired_value:g}"
    )
    return command + (f" --region {region}" if region else "")


def shortfalls_in(message: str) -> dict[str, float]:
    """Quota name -> instances needed, from Plan's QuotaExceeded (`lambdas.quotas.parse_shortfalls`) or
    CreateTrainingJob's ResourceLimitExceeded text (`lambdas.failures.instances_wanted`)."""
    needed = parse_shortfalls(message)
    for name, wanted in instances_wanted(message).items():
        needed[name] = max(needed.get(name, 0), wanted)
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
