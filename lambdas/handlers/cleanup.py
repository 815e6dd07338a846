"""Cleanup Lambda: an EventBridge "Step Functions Execution Status Change" (FAILED, TIMED_OUT, ABORTED) -> the run's
training jobs stopped, recorded with their cost so far, a partial report, and the cause published to the topic.

Output (for logs and the async invocation record): `{run_id, execution_status, reason, jobs_found, stopped, recorded,
report_md_uri, message}`; `{"ignored": ...}` for any other status.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, cleanup, records, settings
from lambdas.handlers.observability import instrumented, logger


@records.open_record
class ExecutionDetail(TypedDict):
    """The `detail` of the status change, as much of it as Cleanup reads (EventBridge sends more: it stays open)."""

    executionArn: NotRequired[str]
    name: str
    status: str
    error: NotRequired[str | None]
    cause: NotRequired[str | None]
    startDate: NotRequired[int | float | None]  # epoch milliseconds


# Functional form: `detail-type` is not a Python name. An AWS envelope, so open: EventBridge adds fields over time.
ExecutionStatusChange = TypedDict(
    "ExecutionStatusChange", {"source": str, "detail-type": str, "detail": ExecutionDetail}
)
records.open_record(ExecutionStatusChange)


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Clean up after the execution the event is about."""
    end = cleanup.ExecutionEnd.from_event(records.parse(ExecutionStatusChange, event))
    if end.status not in cleanup.LIFECYCLE_STATUSES:
        logger.info("execution status needs no cleanup", extra={"execution": end.name, "status": end.status})
        return {"ignored": end.status, "execution": end.name}
    result = cleanup.cleanup_run(
        end,
        settings.cleanup_settings(),
        sagemaker=aws.client("sagemaker"),
        dynamodb=aws.client("dynamodb"),
        s3=aws.client("s3"),
        sns=aws.client("sns"),
    )
    logger.info("run cleaned up", extra={k: result[k] for k in ("run_id", "execution_status", "stopped", "recorded")})
    return result
