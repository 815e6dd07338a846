"""Status Lambda: `{"job_name"}` -> the normalised DescribeTrainingJob.

Output: `{job_name, status, secondary_status, ended, training_seconds, billable_seconds, metrics, failure_reason,
creation_time, end_time}`. Errors: TrainingJobNotFound, Throttled, InvalidRecord.
"""

from __future__ import annotations

from typing import Any, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, records, training_job
from lambdas.handlers.observability import instrumented, logger


class StatusEvent(TypedDict):
    """The Status step's event (stacks/constructs/workflow.py): the job to describe."""

    job_name: str


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Describe one training job; `ended` tells the state machine's Choice whether to wait again."""
    request = records.parse(StatusEvent, event)
    result = training_job.status(aws.client("sagemaker"), request["job_name"])
    logger.info("training job status", extra={k: result[k] for k in ("job_name", "status", "secondary_status")})
    return result
