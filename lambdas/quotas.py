"""SageMaker training quotas: the one listing of them by name (`sagemaker_quotas`), the one comparison of a run's
needs with them (`quota_shortfalls`, used by Plan and `finetune quotas`), the text of a shortfall and its parser, and
the deployment's increase requests (`ensure_quotas`).

Quota codes differ per account generation and region, so they are looked up by their names
(`catalog.training_quota_name`) and never hard-coded. AWS declining, a quota that is not adjustable
or any API error is an *outcome* to report, never an exception: a quota request must not fail a deployment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from lambdas import catalog

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
        return catalog.training_quota_name(self.instance_type, spot=self.usage == catalog.TRAINING_QUOTA_USAGE[True])


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


@dataclass(frozen=True)
class Quota:
    """An applied (or default) SageMaker quota."""

    name: str
    code: str
    value: float | None  # None: the listing gave no value (unknown)
    adjustable: bool
    applied: bool  # False: AWS's default, the account never had it changed (Plan skips such a quota's check)


def sagemaker_quotas(client: Any, *, with_defaults: bool = True) -> dict[str, Quota]:
    """SageMaker quotas by name: the applied values (ListServiceQuotas), over AWS's defaults when `with_defaults`
    (a quota never changed in an account may be missing from the applied list; listing the defaults needs
    servicequotas:ListAWSDefaultServiceQuotas, which the workflow's Lambdas are not granted)."""
    operations = ["list_service_quotas"] + (["list_aws_default_service_quotas"] if with_defaults else [])
    found: dict[str, Quota] = {}
    for operation in operations:
        for page in client.get_paginator(operation).paginate(ServiceCode=SERVICE_CODE):
            for quota in page.get("Quotas", []):
                value = quota.get("Value")
                listed = Quota(
                    name=quota["QuotaName"],
                    code=quota["QuotaCode"],
                    value=float(value) if value is not None else None,
                    adjustable=bool(quota.get("Adjustable", False)),
                    applied=operation == "list_service_quotas",
                )
                found.setdefault(listed.name, listed)  # the applied value (listed first) wins over AWS's default
    return found


@dataclass(frozen=True)
class QuotaShortfall:
    """A training quota below the instances a run holds at once."""

    instance_type: str
    name: str
    value: float
    needed: int

    def describe(self) -> str:
        """The sentence Plan's QuotaExceeded holds per short quota (`parse_shortfalls` reads it back)."""
        return (
            f"{self.instance_type}: quota '{self.name}' is {self.value:g} instances but this run needs {self.needed} "
            "at once"
        )


_SHORTFALL = re.compile(r"quota '(?P<name>[^']+)' is [\d.]+ instances but this run needs (?P<needed>\d+)")


def parse_shortfalls(message: str) -> dict[str, float]:
    """Quota name -> instances needed, from the `QuotaShortfall.describe` sentences in a message."""
    needed: dict[str, float] = {}
    for match in _SHORTFALL.finditer(message):
        needed[match["name"]] = max(needed.get(match["name"], 0), float(match["needed"]))
    return needed


def quota_shortfalls(values: Mapping[str, float], needed: Mapping[str, int], *, spot: bool) -> list[QuotaShortfall]:
    """The training quotas (by name, `catalog.training_quota_name`) whose value in `values` is below the instances
    `needed` per instance type, in instance type order. A quota missing from `values` is unknown, not short: the
    caller decides what unknown means."""
    shortfalls = []
    for instance_type, count in sorted(needed.items()):
        name = catalog.training_quota_name(instance_type, spot)
        value = values.get(name)
        if value is not None and value < count:
            shortfalls.append(QuotaShortfall(instance_type, name, value, count))
    return shortfalls


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
        quotas = sagemaker_quotas(client)
    except ClientError as error:
        return [QuotaOutcome(**asdict(t), result="error", detail=_error_text(error)) for t in targets]

    outcomes = []
    for target in targets:
        quota = quotas.get(target.quota_name)
        if quota is not None and quota.value is None:
            quota = replace(quota, value=0.0)  # a listed quota without a value: none may be used
        if quota is None:
            outcomes.append(
                QuotaOutcome(**asdict(target), result="not-found", detail=f"no quota named '{target.quota_name}'")
            )
            continue
        if not quota.applied:
            # Quotas never changed in an account may be missing from the applied list; the default list still names
            # them (and gives their codes), but its value is AWS's default, not what this account may use.
            quota = _applied_value(client, quota, target)
        outcomes.append(_ensure_one(client, target, quota))
    return outcomes


def _applied_value(client: Any, default: Quota, target: QuotaTarget) -> Quota:
    """The applied value of a quota ListServiceQuotas did not list, as far as it can be known.

    AWS documents that ListServiceQuotas (and GetServiceQuota) return applied values only where one is available;
    a new account's applied value may be *lower* than the default (spot GPU quotas often start at 0). So the default
    never proves a quota sufficient: GetServiceQuota is asked, and when it has no applied value either, the value is
    unknown (None) and an increase is requested (AWS refuses one that is not an increase, reported as error).
    """
    if (default.value or 0.0) < target.desired_value:
        return default  # below what is wanted either way: request it, as before
    try:
        response = client.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=default.code)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchResourceException":
            logger.warning("GetServiceQuota %s failed: %s", default.code, _error_text(error))
        return replace(default, value=None)
    applied = response.get("Quota", {})
    value = applied.get("Value", default.value)
    return replace(
        default,
        code=str(applied.get("QuotaCode", default.code)),
        value=float(value) if value is not None else None,
        adjustable=bool(applied.get("Adjustable", default.adjustable)),
    )


def _ensure_one(client: Any, target: QuotaTarget, quota: Quota) -> QuotaOutcome:
    base = {**asdict(target), "current_value": quota.value, "quota_code": quota.code}
    if quota.value is not None and quota.value >= target.desired_value:
        return QuotaOutcome(**base, result="sufficient")
    if not quota.adjustable:
        return QuotaOutcome(**base, result="not-adjustable", detail="AWS does not allow increasing this quota")
    try:
        open_request = _open_request_id(client, quota.code)
        if open_request is not None:
            return QuotaOutcome(**base, result="pending", detail=f"request {open_request} already open")
        response = client.request_service_quota_increase(
            ServiceCode=SERVICE_CODE, QuotaCode=quota.code, DesiredValue=float(target.desired_value)
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
