"""Classify Lambda: a failed attempt (the Map iteration's state: `job` and its final `status`, or the `error` a
Launch or Status step was caught with) -> `{status, failure_class, failure_evidence}`.

`status` is the attempt's final normalised status, as Record writes it (for a caught error: what SageMaker says
happened, lambdas/training_job.outcome_after_error). The class comes from lambdas/failures.py: CreateTrainingJob's
error when the job was never created, else DescribeTrainingJob's SecondaryStatus, FailureReason and
SecondaryStatusTransitions. Errors: Throttled.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from lambdas import aws, failures, training_job
from lambdas.handlers.observability import instrumented, logger


def classify_attempt(sagemaker: Any, event: dict[str, Any]) -> dict[str, Any]:
    """The attempt's final status and failure class (pure apart from one or two DescribeTrainingJob calls)."""
    name = event["job"]["job_name"]
    error = event.get("error")
    raw = _describe(sagemaker, name)
    if error:
        status = training_job.outcome_after_error(sagemaker, name, error)
        if raw is None:  # never created: CreateTrainingJob's refusal is the whole story
            found = failures.classify(error=training_job.workflow_error_text(error))
            return {"status": status, **found.as_dict()}
        if raw.get("TrainingJobStatus") not in training_job.ENDED_STATUSES:
            # The workflow lost a job that is still running: another attempt would run beside it, so no remedy.
            evidence = " ".join(str(status.get("failure_reason") or "").split())[: failures.EVIDENCE_MAX]
            return {"status": status, "failure_class": "unknown", "failure_evidence": evidence, "still_running": True}
    else:
        status = event["status"]
    found = failures.classify(
        secondary_status=str(status.get("secondary_status") or ""),
        failure_reason=str(status.get("failure_reason") or ""),
        transitions=(raw or {}).get("SecondaryStatusTransitions"),
    )
    return {"status": status, **found.as_dict()}


def _describe(sagemaker: Any, name: str) -> dict[str, Any] | None:
    try:
        return sagemaker.describe_training_job(TrainingJobName=name)
    except ClientError as exc:
        if training_job.is_not_found(exc):
            return None
        raise


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Classify one failed attempt."""
    result = classify_attempt(aws.client("sagemaker"), event)
    logger.info(
        "attempt classified",
        extra={"job_name": event["job"]["job_name"], "failure_class": result["failure_class"]},
    )
    return result
