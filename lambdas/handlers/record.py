"""Record Lambda: `{"job", "status"}` or `{"job", "error": {"Error", "Cause"}}` -> one ledger row (returned as JSON).
A failed attempt also carries `failure` (Classify's output) and, when one was decided, `remedy` (Remedy's).

With `error` (the Map's Catch), the job is described here: it may exist and be billed even though the workflow
lost it. The row is a pure function of job and final status, so retries rewrite the same item.
"""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, ledger, settings, training_job
from lambdas.handlers.observability import instrumented, logger
from lambdas.job_spec import JobSpec


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Compute the job's cost and spot savings and write its ledger row."""
    config = settings.record_settings()
    job = cast(JobSpec, event["job"])
    if event.get("status"):
        final = event["status"]
    else:
        final = training_job.outcome_after_error(aws.client("sagemaker"), job["job_name"], event.get("error") or {})
    # After Classify and Remedy (a failed attempt): its class, evidence and what happens next go on the row.
    row = ledger.job_row(job, final, failure=event.get("failure"), remedy=event.get("remedy"))
    ledger.put_row(aws.client("dynamodb"), config.table_name, row)
    result = ledger.to_json_value(row)
    logger.info("job recorded", extra={k: result[k] for k in ("job_name", "status", "cost_usd", "spot_savings_pct")})
    return result
