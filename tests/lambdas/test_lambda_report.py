"""Report: ranking by cost per accuracy point, best per criterion, Markdown, S3 objects, SUMMARY row, message."""

from __future__ import annotations

import json
from typing import Any

from lambdas import aws, ledger, report
from lambdas.handlers import report as report_handler
from tests.lambdas.lambda_testkit import BUCKET, TABLE


def row(job: str, model: str, approach: str, state: str, cost_usd: float, accuracy: float | None) -> dict[str, Any]:
    metrics = (
        {}
        if accuracy is None
        else {
            "eval_intent_accuracy": accuracy,
            "eval_parse_rate": 0.99,
            "eval_rougeL": 0.9,
            "eval_bertscore_f1": 0.95,
            "eval_inference_seconds": 120.0,
        }
    )
    return {
        "pk": "RUN#run-1",
        "sk": f"JOB#{job}",
        "run_id": "run-1",
        "job_name": job,
        "model": model,
        "approach": approach,
        "instance_type": "ml.g5.2xlarge",
        "instance_count": 1,
        "spot": True,
        "status": state,
        "failure_reason": None if state == "Completed" else "AlgorithmError: boom",
        "training_seconds": 1000,
        "billable_seconds": 300,
        "hourly_price_usd": 1.5,
        "price_source": "catalog",
        "cost_usd": cost_usd,
        "spot_savings_pct": 70.0,
        "metrics": metrics,
    }


ROWS = [
    row("full", "mistral-7b", "full", "Completed", 20.0, 0.94),  # 20 / 94 = 0.2128 per point
    row("lora", "mistral-7b", "lora", "Completed", 3.0, 0.92),  # 3 / 92 = 0.0326 per point
    row("qlora", "llama2-7b", "qlora", "Completed", 2.5, 0.50),  # 2.5 / 50 = 0.05 per point
    row("broken", "gpt-neox-20b", "lora", "Failed", 7.0, None),
]


def test_jobs_as_accurate_as_the_best_rank_first_by_cost_per_point_and_failures_come_last() -> None:
    document = report.build_report("run-1", ROWS)
    # lora (92%) is within the evidence of full (94%) on 500 samples and cheaper per point; qlora (50%) is cheaper per
    # point than full but far less accurate, so it ranks below both although it is on the Pareto front.
    assert [e["job_name"] for e in document["jobs"]] == ["lora", "full", "qlora", "broken"]
    assert [report.TIERS[e["tier"]] for e in document["jobs"]] == [
        "tied with the best",
        "tied with the best",
        "Pareto front",
        "no accuracy",
    ]
    assert [e["rank"] for e in document["jobs"]] == [1, 2, 3, 4]
    assert document["jobs"][0]["cost_per_accuracy_point"] == 0.0326
    assert document["jobs"][3]["cost_per_accuracy_point"] is None


def test_best_job_per_criterion() -> None:
    best = report.build_report("run-1", ROWS)["best"]
    assert best["accuracy"]["job_name"] == "full"
    assert best["cost"]["job_name"] == "qlora"  # cheapest completed job; the failed one does not count
    assert best["cost_per_accuracy_point"]["job_name"] == "lora"


def test_totals_include_what_failed_jobs_cost() -> None:
    totals = report.build_report("run-1", ROWS)["totals"]
    assert totals == {
        "jobs": 4,
        "completed": 3,
        "failed": 1,
        "stopped": 0,
        "cost_usd": 32.5,
        "billable_instance_seconds": 1200,
        "estimated_cost_usd": None,  # these rows predate estimates
    }


def test_markdown_has_one_table_row_per_job_and_the_winners() -> None:
    markdown = report.render_markdown(report.build_report("run-1", ROWS))
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 2 * (1 + len(ROWS))  # the ranked table and the quality-and-time table
    # The interval over the assumed default of 500 samples (marked ~), no estimate in these rows
    assert (
        "| 1 | mistral-7b | lora | ml.g5.2xlarge (spot) | Completed | 92.0% (~89.3-94.1, n=500) | $3.00 | - | - "
        "| $0.0326 | front |" in markdown
    )
    assert "| 1 | 99.0% | 0.900 | 0.950 | 120.0 | 1000 | 300 | 70.0% |" in markdown
    assert "**Best value (cheapest per point among the most accurate)**: mistral-7b lora" in markdown
    assert "`broken` (Failed): AlgorithmError: boom" in markdown


def test_empty_run_still_reports() -> None:
    document = report.build_report("run-1", [])
    assert document["best"] == {"accuracy": None, "cost": None, "cost_per_accuracy_point": None}
    assert "0 jobs" in report.render_markdown(document)


def test_message_is_short_plain_text() -> None:
    document = report.build_report("run-1", ROWS * 50)
    message = report.summary_message(document, "s3://b/reports/run-1/report.md")
    assert len(message.encode()) <= report.MESSAGE_MAX_BYTES
    assert message.startswith("Fine-tuning run run-1:")


def test_report_handler_writes_report_objects_and_summary_row(moto_aws: None, lambda_context: Any) -> None:
    # Given a run's job rows in the ledger (as Record wrote them)
    dynamodb = aws.client("dynamodb")
    for item in ROWS:
        ledger.put_row(dynamodb, TABLE, item)
    # When the report is built
    result = report_handler.handler({"run_id": "run-1"}, lambda_context)
    # Then both objects exist, the SUMMARY row points at them and the message is ready for SNS
    assert result["report_json_uri"] == f"s3://{BUCKET}/reports/run-1/report.json"
    assert result["report_md_uri"] == f"s3://{BUCKET}/reports/run-1/report.md"
    s3 = aws.client("s3")
    document = json.loads(s3.get_object(Bucket=BUCKET, Key="reports/run-1/report.json")["Body"].read())
    assert document["best"]["cost_per_accuracy_point"]["job_name"] == "lora"
    assert s3.get_object(Bucket=BUCKET, Key="reports/run-1/report.md")["Body"].read().startswith(b"# Fine-tuning run")
    assert s3.get_object(Bucket=BUCKET, Key="reports/run-1/chart.svg")["Body"].read().startswith(b"<svg")
    summary = aws.client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": "RUN#run-1"}, "sk": {"S": "SUMMARY"}})[
        "Item"
    ]
    assert summary["best_cost_per_point_job"] == {"S": "lora"} and summary["cost_usd"] == {"N": "32.5"}
    assert "Best cost per accuracy point: mistral-7b lora" in result["message"]


def test_chart_has_one_bar_per_scored_job_and_escapes_names() -> None:
    rows = [*ROWS, row("odd", "org/<model>", "lora", "Completed", 1.0, 0.8)]
    svg = report.render_chart_svg(report.build_report("run-1", rows))
    assert svg.count("<rect") == 4 and "&lt;model&gt;" in svg and "<model>" not in svg
    assert "No completed job" in report.render_chart_svg(report.build_report("run-1", []))
