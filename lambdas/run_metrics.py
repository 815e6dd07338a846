"""Record's custom metrics, written as CloudWatch Embedded Metric Format (EMF) log lines.

Lambda ships its stdout to CloudWatch Logs, which extracts the metrics: no PutMetricData call, so no IAM grant and
no request that can fail or throttle while a job is being recorded. The dashboard (stacks/constructs/dashboard.py)
graphs exactly these names and dimension sets, so both import them from here.

Two lines per recorded job carry:
- `JobCostUSD` by {Deployment, RunId} (spend per run: the sum over its jobs) and by {Deployment} (all spend);
- `JobsRecorded` (1) by {Deployment, Status}: jobs that ended, by their final SageMaker status.
`Deployment` is the deployment's job-name prefix, so two stacks in one account never mix their figures.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE = "Finetune"
JOB_COST = "JobCostUSD"
JOBS_RECORDED = "JobsRecorded"
DEPLOYMENT = "Deployment"
RUN_ID = "RunId"
STATUS = "Status"


def _metrics(timestamp_ms: int, job_name: Any) -> EphemeralMetrics:
    # EphemeralMetrics: its own metric set, not the module-wide one Powertools' `Metrics` instances share. service="":
    # no `service` dimension from POWERTOOLS_SERVICE_NAME, which would break the dashboard's dimension sets.
    metrics = EphemeralMetrics(namespace=NAMESPACE, service="")
    metrics.set_timestamp(timestamp_ms)
    # Not a dimension: lets a reader of the log line find the job (EMF keeps metadata as log fields).
    metrics.add_metadata("job_name", job_name)
    return metrics


def recorder(row: dict[str, Any], *, deployment: str, timestamp_ms: int) -> list[EphemeralMetrics]:
    """Powertools EMF metric sets for one ledger row (`cost_usd`, `run_id`, `status`): the cost by {Deployment, RunId}
    and by {Deployment}, and one recorded job by {Deployment, Status} (a metric set shares its dimension sets)."""
    cost = row.get("cost_usd") or 0
    spend = _metrics(timestamp_ms, row.get("job_name"))
    spend.add_dimension(DEPLOYMENT, deployment)
    spend.add_dimension(RUN_ID, str(row["run_id"]))
    spend.add_dimensions(**{DEPLOYMENT: deployment})
    spend.add_metric(name=JOB_COST, unit=MetricUnit.NoUnit, value=float(cost) if isinstance(cost, Decimal) else cost)
    recorded = _metrics(timestamp_ms, row.get("job_name"))
    recorded.add_dimension(DEPLOYMENT, deployment)
    recorded.add_dimension(STATUS, str(row["status"]))
    recorded.add_metric(name=JOBS_RECORDED, unit=MetricUnit.Count, value=1)
    return [spend, recorded]


def emf_documents(row: dict[str, Any], *, deployment: str, timestamp_ms: int) -> list[dict[str, Any]]:
    """The EMF documents `emit` prints for one ledger row."""
    return [
        dict(metrics.serialize_metric_set())
        for metrics in recorder(row, deployment=deployment, timestamp_ms=timestamp_ms)
    ]


def emit(row: dict[str, Any], *, deployment: str, timestamp_ms: int) -> None:
    """Print the row's EMF lines to stdout, where the Lambda runtime sends them to CloudWatch Logs (nothing when
    POWERTOOLS_METRICS_DISABLED is set: the offline demo)."""
    for metrics in recorder(row, deployment=deployment, timestamp_ms=timestamp_ms):
        metrics.flush_metrics(raise_on_empty_metrics=True)
