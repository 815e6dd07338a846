"""What a training job used, read after it ended: GPU utilization of its hosts (CloudWatch) and its model artifact
(S3). Record puts both on the job's ledger row; the Banking77 study reports the same figures.

SageMaker publishes each host's instance metrics in the `/aws/sagemaker/TrainingJobs` namespace with the dimension
`Host = <job name>/algo-<n>`. GPUUtilization and GPUMemoryUtilization are the instance's sum over its GPUs (AWS:
"Amazon SageMaker AI metrics in Amazon CloudWatch": 0-400% on four GPUs), so they are divided by the GPUs per
instance here, giving a per-GPU percentage that compares across instance types.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

from lambdas import naming

TRAINING_JOB_NAMESPACE = "/aws/sagemaker/TrainingJobs"
GPU_UTILIZATION = "GPUUtilization"
GPU_MEMORY_UTILIZATION = "GPUMemoryUtilization"
PERIOD_SECONDS = 60  # SageMaker publishes instance metrics every minute
# CloudWatch's datapoints are stamped at the start of their minute: widen the window so the first and last minutes
# of the job are inside it.
_MARGIN = timedelta(minutes=1)
# Query ids (GetMetricData: `^[a-z][a-zA-Z0-9_]*$`), one per metric and host: `gpu_1`, `memory_1`, ...
_UTILIZATION_ID, _MEMORY_ID = "gpu_", "memory_"


def host(job_name: str, index: int) -> str:
    """The `Host` dimension of a job's `index`-th instance (1-based), as SageMaker names it."""
    return f"{job_name}/algo-{index}"


def metric_queries(job_name: str, instance_count: int) -> list[dict[str, Any]]:
    """GetMetricData queries: both GPU metrics of every host, 1-minute averages."""
    queries = []
    for index in range(1, instance_count + 1):
        for query_id, metric in (
            (f"{_UTILIZATION_ID}{index}", GPU_UTILIZATION),
            (f"{_MEMORY_ID}{index}", GPU_MEMORY_UTILIZATION),
        ):
            queries.append(
                {
                    "Id": query_id,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": TRAINING_JOB_NAMESPACE,
                            "MetricName": metric,
                            "Dimensions": [{"Name": "Host", "Value": host(job_name, index)}],
                        },
                        "Period": PERIOD_SECONDS,
                        "Stat": "Average",
                    },
                    "ReturnData": True,
                }
            )
    return queries


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _rounded(value: float) -> float:
    return round(value, 2)


def summarize(values_by_query: dict[str, list[float]], gpus_per_instance: int) -> dict[str, Any]:
    """Per-GPU percentages from the points of each query: utilization mean and max, memory max, over all hosts;
    None for a metric without points (a CPU instance, or a job that ended before its first minute)."""
    per_gpu = max(int(gpus_per_instance), 1)
    utilization = [v / per_gpu for key, vs in values_by_query.items() if key.startswith(_UTILIZATION_ID) for v in vs]
    memory = [v / per_gpu for key, vs in values_by_query.items() if key.startswith(_MEMORY_ID) for v in vs]
    return {
        "gpu_utilization_pct": (
            {"mean": _rounded(statistics.fmean(utilization)), "max": _rounded(max(utilization))}
            if utilization
            else None
        ),
        "gpu_memory_utilization_pct": {"max": _rounded(max(memory))} if memory else None,
    }


def gpu_utilization(
    cloudwatch: Any,
    job_name: str,
    *,
    instance_count: int,
    gpus_per_instance: int,
    started: str | None,
    ended: str | None,
) -> dict[str, Any]:
    """`{gpu_utilization_pct: {mean, max} | None, gpu_memory_utilization_pct: {max} | None}` of the job's hosts
    between `started` and `ended` (ISO times of the normalised status); both None when the job has no times."""
    start, end = _parse_time(started), _parse_time(ended)
    if start is None or end is None or instance_count < 1:
        return summarize({}, gpus_per_instance)
    values: dict[str, list[float]] = {}
    request: dict[str, Any] = {
        "MetricDataQueries": metric_queries(job_name, instance_count),
        "StartTime": start - _MARGIN,
        "EndTime": end + _MARGIN,
        "ScanBy": "TimestampAscending",
    }
    while True:
        response = cloudwatch.get_metric_data(**request)
        for result in response.get("MetricDataResults", []):
            values.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
        if not response.get("NextToken"):
            break
        request["NextToken"] = response["NextToken"]
    return summarize(values, gpus_per_instance)


def artifact_bytes(s3: Any, uri: str | None) -> int | None:
    """Size of the model artifact at `uri` (DescribeTrainingJob's S3ModelArtifacts); None when there is none (no
    URI, or a job that never uploaded its model).

    Jobs upload their model uncompressed (CompressionType NONE): the URI is a key prefix and the artifact is every
    object under it, summed over all ListObjectsV2 pages. The prefix ends at a `/`, so a neighbouring key that merely
    starts with the same characters (`.../model-other/`) is not counted. A `.tar.gz` URI names the one archive of a
    job launched with GZIP output before, and is listed as its own key.
    """
    if not uri:
        return None
    bucket, key = naming.split_s3_uri(uri)
    prefix = key if key.endswith(("/", ".tar.gz")) else f"{key}/"
    sizes = [
        int(item["Size"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    return sum(sizes) if sizes else None
