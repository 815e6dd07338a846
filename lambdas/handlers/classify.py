"""Classify Lambda: a failed attempt (the Map iteration's state: `job` and its final `status`, or the `error` a
Launch or Status step was caught with) -> `{status, failure_class, failure_evidence}`.

`status` is the attempt's final normalised status, as Record writes it (for a caught error: what SageMaker says
happened, lambdas/training_job.outcome_after_error). The class comes from lambdas/failures.py: CreateTrainingJob's
error when the job was never created, else DescribeTrainingJob's SecondaryStatus, FailureReason and
SecondaryStatusTransitions. Errors: Throttled, InvalidRecord.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from lambdas import aws, failures, records, training_job
from lambdas.handlers.observability import instrumented, logger
from lambdas.job_spec import JobSpec


class CaughtError(TypedDict):
    """What a Step Functions Catch puts at its ResultPath: the error's name and, for most errors, its cause."""

    Error: str
    Cause: NotRequired[str]


class Healing(TypedDict, total=False):
    """The run's remedy settings, as Plan's handler puts them on every Map iteration (lambdas/handlers/plan.py)."""

    remedies: dict[str, Any]  # the execution's `remedies` input, merged over the deployment's defaults by Remedy
    reserve_per_job_usd: float  # each job's share of the budget the jobs' maxima leave
    deadline_epoch_seconds: float  # when the execution times out


class ClassifyEvent(TypedDict):
    """A failed attempt: the whole Map iteration state (stacks/constructs/workflow.py), with its final `status` when
    the job ended, or the `error` a Launch or Status step was caught with."""

    job: JobSpec
    healing: NotRequired[Healing]
    launch: NotRequired[dict[str, Any]]  # Launch's output, once it launched
    status: NotRequired[dict[str, Any]]  # Status's output (lambdas/training_job.normalise_description)
    error: NotRequired[CaughtError]


class Classification(TypedDict):
    """Classify's output: the attempt's final status and its failure class (lambdas/failures.py)."""

    status: dict[str, Any]
    failure_class: str
    failure_evidence: str
    still_running: NotRequired[bool]  # the workflow lost a job that still runs: no remedy may start another


def classify_attempt(sagemaker: Any, event: ClassifyEvent) -> dict[str, Any]:
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
    attempt = records.parse(ClassifyEvent, event)
    result = classify_attempt(aws.client("sagemaker"), attempt)
    logger.info(
        "attempt classified",
        extra={"job_name": attempt["job"]["job_name"], "failure_class": result["failure_class"]},
    )
    return result
