"""Powertools logging and tracing shared by the workflow handlers (each Lambda runs one handler, so one of each)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

logger = Logger()
tracer = Tracer()
# The pure `lambdas.*` modules log through the standard library; give them the same JSON format and level.
copy_config_to_registered_loggers(source_logger=logger, include={"lambdas"})

# A handler's output: a dict, or a record (TypedDict) such as Remedy's.
Output = TypeVar("Output", bound=Mapping[str, Any])


def instrumented(handler: Callable[[dict[str, Any], Any], Output]) -> Callable[[dict[str, Any], Any], Output]:
    """Structured logs with the Lambda context (cold start, request id) and an X-Ray subsegment per invocation."""
    return logger.inject_lambda_context(tracer.capture_lambda_handler(handler))
