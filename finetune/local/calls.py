"""Record every AWS call a handler makes during an offline run, attributed to the function that made it.

The IAM completeness gate evaluates these calls against the synthesized policy of each function's role. A call
is recorded when botocore builds its request (`before-parameter-build`), before anything answers it, so a call
that fails, or that the local services or moto answer, is recorded just the same: IAM authorizes a request
before the service looks at it. Calls made outside a handler (the runner creating resources) are not recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import botocore.handlers


@dataclass(frozen=True)
class AwsCall:
    """One API call: who made it, to which service (botocore's name and the IAM prefix), with what parameters."""

    function: str  # logical id of the Lambda function whose handler made the call
    service: str  # botocore service name, e.g. "service-quotas"
    iam_prefix: str  # the service's IAM action prefix (its signing name), e.g. "servicequotas"
    operation: str  # API operation name, e.g. "ListServiceQuotas"
    params: Mapping[str, Any]


class CallLog:
    """The calls recorded while it is active (Map iterations run handlers on several threads)."""

    def __init__(self) -> None:
        self._calls: list[AwsCall] = []
        self._lock = threading.Lock()

    def append(self, call: AwsCall) -> None:
        with self._lock:
            self._calls.append(call)

    @property
    def calls(self) -> list[AwsCall]:
        """A snapshot of the calls so far, in order."""
        with self._lock:
            return list(self._calls)


_function: ContextVar[str | None] = ContextVar("finetune_local_function", default=None)
_active: CallLog | None = None


@contextmanager
def attributed_to(function: str) -> Iterator[None]:
    """Attribute the calls made inside the block (on this thread) to `function`."""
    token = _function.set(function)
    try:
        yield
    finally:
        _function.reset(token)


@contextmanager
def recording(log: CallLog) -> Iterator[CallLog]:
    """Record attributed calls into `log` inside the block."""
    global _active
    previous, _active = _active, log
    try:
        yield log
    finally:
        _active = previous


# Services whose signing name is not their IAM action prefix (CloudWatch signs as `monitoring`; its actions are
# `cloudwatch:*`).
_IAM_PREFIX_OF_SIGNING_NAME = {"monitoring": "cloudwatch"}


def _record(params: dict[str, Any], model: Any, **_: Any) -> None:
    function = _function.get()
    if _active is None or function is None:
        return
    service_model = model.service_model
    _active.append(
        AwsCall(
            function=function,
            service=service_model.service_name,
            iam_prefix=_IAM_PREFIX_OF_SIGNING_NAME.get(service_model.signing_name, service_model.signing_name),
            operation=model.name,
            params=dict(params),
        )
    )


# Registered for every botocore session created from now on, like the local services' hook: the handlers'
# clients are built after the runner starts them cold, so they all carry it.
botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build.*.*", _record))
