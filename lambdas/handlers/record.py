"""Record Lambda: `{"job", "status"}` or `{"job", "error": {"Error", "Cause"}}` -> one ledger row (returned as JSON).
A failed attempt also carries `failure` (Classify's output) and, when one was decided, `remedy` (Remedy's).

With `error` (the Map's Catch), the job is described here: it may exist and be billed even though the workflow
lost it. The row is a function of job, final status and what the job used (its hosts' GPU metrics, its artifact, the
hyperparameters it reported resolving: `ledger.job_resolved`), so retries rewrite the same item. Each recorded job
also emits the spend and status metrics the dashboard graphs.
"""

from __future__ import annotations

import time
from typing import Any, NotRequired, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambdas import aws, job_resources, ledger, records, run_metrics, settings, training_job
from lambdas.handlers.classify import CaughtError, Classification
from lambdas.handlers.observability import instrumented, logger
from lambdas.job_spec import JobSpec
from lambdas.remedies import RemedyOutcome


class RecordEvent(TypedDict):
    """The Record steps' event (stacks/constructs/workflow.py): the job with its final `status` (Record, and a failed
    attempt's RecordAttempt/RecordUnremedied, which add Classify's `failure` and, once decided, Remedy's `remedy`),
    or the `error` a step was caught with (RecordFailure)."""

    job: JobSpec
    status: NotRequired[dict[str, Any]]  # Status's output (lambdas/training_job.normalise_description)
    error: NotRequired[CaughtError]
    failure: NotRequired[Classification]
    remedy: NotRequired[RemedyOutcome]


def resources_used(job: JobSpec, final: dict[str, Any]) -> dict[str, Any]:
    """GPU utilization of the job's hosts (CloudWatch) and its model artifact's size (S3).

    These figures describe the job; its cost row must not depend on them. A lookup that still fails after botocore's
    retries is logged and recorded as None, so the row (what the job cost) is written all the same.
    """
    used: dict[str, Any] = {"gpu_utilization_pct": None, "gpu_memory_utilization_pct": None, "artifact_bytes": None}
    try:
        used.update(
            job_resources.gpu_utilization(
                aws.client("cloudwatch"),
                job["job_name"],
                instance_count=job["instance_count"],
                gpus_per_instance=job["gpus_per_instance"],
                started=final.get("creation_time"),
                ended=final.get("end_time"),
            )
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning("GPU utilization not recorded", extra={"job_name": job["job_name"], "error": str(exc)})
    try:
        used["artifact_bytes"] = job_resources.artifact_bytes(aws.client("s3"), final.get("artifact_uri"))
    except (BotoCoreError, ClientError) as exc:
        logger.warning("artifact size not recorded", extra={"job_name": job["job_name"], "error": str(exc)})
    return used


def emit_metrics(row: dict[str, Any], *, deployment: str) -> None:
    """Emit the row's dashboard metrics; never fail the recording for them.

    The row is already written: an exception here would send the job down the workflow's Unrecorded path and count a
    Lambda error although the ledger is right (Powertools 3.23.0, the public layer once deployed, lacked
    `EphemeralMetrics.add_dimensions` and raised AttributeError on every job). A metric that cannot be emitted is
    logged with its traceback; the graphs miss one point, the ledger and report stay complete.
    """
    try:
        run_metrics.emit(row, deployment=deployment, timestamp_ms=int(time.time() * 1000))
    except Exception:  # any failure of the metrics library, by design: the ledger row is what counts
        logger.exception("metrics not emitted", extra={"job_name": row.get("job_name")})


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Compute the job's cost and spot savings, collect what it used, write its ledger row and emit its metrics."""
    request = records.parse(RecordEvent, event)
    config = settings.record_settings()
    job = request["job"]
    final = request.get("status")
    if not final:
        final = training_job.outcome_after_error(aws.client("sagemaker"), job["job_name"], request.get("error") or {})
    # After Classify and Remedy (a failed attempt): its class, evidence and what happens next go on the row.
    row = ledger.job_row(
        job, final, resources_used(job, final), failure=request.get("failure"), remedy=request.get("remedy")
    )
    ledger.put_row(aws.client("dynamodb"), config.table_name, row)
    result = ledger.to_json_value(row)
    emit_metrics(result, deployment=config.job_name_prefix)
    logger.info("job recorded", extra={k: result[k] for k in ("job_name", "status", "cost_usd", "spot_savings_pct")})
    return result
