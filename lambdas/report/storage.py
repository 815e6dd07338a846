"""Writing a report to S3: report.json, report.md and the charts under `reports/<run>/` (`naming.report_keys`)."""

from __future__ import annotations

import json
from typing import Any

from lambdas import naming
from lambdas.report.charts import charts
from lambdas.report.markdown import render_markdown


def write_report(s3: Any, bucket: str, report: dict[str, Any]) -> tuple[str, str]:
    """Put `reports/<run>/report.json`, `report.md` and the charts; returns the JSON and Markdown s3:// URIs."""
    json_key, md_key = naming.report_keys(report["run_id"])
    folder = md_key.rsplit("/", 1)[0]
    s3.put_object(
        Bucket=bucket,
        Key=json_key,
        Body=json.dumps(report, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=bucket, Key=md_key, Body=render_markdown(report).encode(), ContentType="text/markdown; charset=utf-8"
    )
    for name, svg in charts(report).items():
        s3.put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=svg.encode(), ContentType="image/svg+xml")
    return f"s3://{bucket}/{json_key}", f"s3://{bucket}/{md_key}"
