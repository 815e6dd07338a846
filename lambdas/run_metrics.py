"""Record's custom metrics, written as CloudWatch Embedded Metric Format (EMF) log lines.

Lambda ships its stdout to CloudWatch Logs, which extracts the metrics: no PutMetricData call, so no IAM grant and
no request that can fail or throttle while a job is being recorded. The dashboard (stacks/constructs/dashboard.py)
graphs exactly these names and dimension sets, so both import them from here.

One line per recorded job carries:
- `JobCostUSD` by {Deployment, RunId} (spend per run: the sum over its jobs) and by {Deployment} (all spend);
- `JobsRecorded` (1) by {Deployment, Status}: jobs that ended, by their final SageMaker status.
`Deployment` is the deployment's job-name prefix, so two stacks in one account never mix their figures.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

NAMESPACE = "Finetune"
JOB_COST = "JobCostUSD"
JOBS_RECORDED = "JobsRecorded"
DEPLOYMENT = "Deployment"
RUN_ID = "RunId"
STATUS = "Status"


def emf_record(row: dict[str, Any], *, deployment: str, timestamp_ms: int) -> dict[str, Any]:
    """The EMF document for one ledger row (`cost_usd`, `run_id`, `status`)."""
    cost = row.get("cost_usd") or 0
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DEPLOYMENT, RUN_ID], [DEPLOYMENT]],
                    "Metrics": [{"Name": JOB_COST, "Unit": "None"}],
                },
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DEPLOYMENT, STATUS]],
                    "Metrics": [{"Name": JOBS_RECORDED, "Unit": "Count"}],
                },
            ],
        },
        DEPLOYMENT: deployment,
        RUN_ID: str(row["run_id"]),
        STATUS: str(row["status"]),
        JOB_COST: float(cost) if isinstance(cost, Decimal) else cost,
        JOBS_RECORDED: 1,
        # Not a dimension: lets a reader of the log line find the job (EMF keeps other keys as log fields).
        "job_name": row.get("job_name"),
    }


def emit(row: dict[str, Any], *, deployment: str, timestamp_ms: int) -> str:
    """Print the row's EMF line to stdout (where the Lambda runtime sends it to CloudWatch Logs); return it."""
    line = json.dumps(emf_record(row, deployment=deployment, timestamp_ms=timestamp_ms), separators=(",", ":"))
    print(line, flush=True)
    return line
