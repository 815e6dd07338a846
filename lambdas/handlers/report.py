"""Report Lambda: `{"run_id"}` -> report.json + report.md + charts in S3, a SUMMARY ledger row, and a short message.

Earlier runs of each job's model x approach come from the ledger's model x approach index (a Query, never a scan).

Output: `{run_id, report_json_uri, report_md_uri, message}`; the state machine publishes `message` to SNS.
"""

from __future__ import annotations

from typing import Any, TypedDict

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambdas import aws, ledger, paired, records, report, settings
from lambdas.handlers.observability import instrumented, logger


class ReportEvent(TypedDict):
    """The Report step's event (stacks/constructs/workflow.py): the run to report."""

    run_id: str


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Rank the run's jobs, compare them with earlier runs, write the report, record the summary."""
    run_id = records.parse(ReportEvent, event)["run_id"]
    config = settings.report_settings()
    dynamodb = aws.client("dynamodb")
    rows = ledger.run_rows(dynamodb, config.table_name, run_id)

    def earlier(model: str, approach: str, limit: int) -> list[dict[str, Any]]:
        # The comparison is an extra: an index still backfilling after a deploy must not cost the run its report.
        try:
            return ledger.model_approach_rows(dynamodb, config.table_name, model, approach, limit)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("no earlier runs for the comparison", extra={"model": model, "error": str(exc)})
            return []

    s3 = aws.client("s3")
    # Per-sample answers for the paired test; a job without them is compared by its Wilson interval instead.
    answers = paired.fetch_answers(rows, lambda uri: paired.read_answers(s3, uri))
    document = report.build_report(run_id, rows, history=report.fetch_history(rows, earlier), answers=answers)
    json_uri, md_uri = report.write_report(s3, config.bucket_name, document)
    summary = report.summary_fields(document, json_uri, md_uri)
    ledger.put_row(dynamodb, config.table_name, ledger.summary_row(run_id, summary))
    message = report.summary_message(document, md_uri)
    logger.info("run reported", extra={"run_id": run_id, **document["totals"]})
    return {"run_id": run_id, "report_json_uri": json_uri, "report_md_uri": md_uri, "message": message}
