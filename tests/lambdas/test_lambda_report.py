"""Report: ranking by cost per accuracy point, best per criterion, Markdown, S3 objects, SUMMARY row, message."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

from lambdas import aws, ledger, report
from lambdas.handlers import report as report_handler
from tests.support.dynamodb_local import create_ledger_table
from tests.support.lambdas import BUCKET, TABLE, one_job

SVG = "{http://www.w3.org/2000/svg}"


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
        "attempts": 4,
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
    assert "| 1 | - | 99.0% | 0.900 | 0.950 | 120.0 | 1000 | 300 | 70.0% | - | - | - |" in markdown
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


def scored(job: str, cost_usd: float, accuracy: float, **extra: Any) -> dict[str, Any]:
    return {**row(job, "mistral-7b", job, "Completed", cost_usd, accuracy), **extra}


def test_wilson_interval_matches_hand_computed_numbers() -> None:
    # p = 0.9, n = 500, z = 1.96: centre (0.9 + 3.8416 / 1000) / 1.0076832 = 0.896950,
    # half 1.96 x sqrt(0.09 / 500 + 3.8416 / 1e6) / 1.0076832 = 0.026373 -> [0.87058, 0.92332]
    low, high = report.wilson_interval(0.9, 500)
    assert (round(low, 4), round(high, 4)) == (0.8706, 0.9233)
    # p = 1 of 60: the interval stays inside [0, 1] and is not zero-width (the normal approximation's would be)
    low, high = report.wilson_interval(1.0, 60)
    assert high == 1.0 and round(low, 4) == 0.9398  # 60 / (60 + 3.8416)
    # the study's figure: ~93.5% on 500 samples is about +-2.2 points
    low, high = report.wilson_interval(0.935, 500)
    assert 0.042 < high - low < 0.045


def test_interval_uses_the_recorded_sample_size() -> None:
    entry = report.job_entry(scored("lora", 3.0, 0.9, metrics={"eval_intent_accuracy": 0.9, "eval_samples": 60}))
    assert (entry["eval_samples"], entry["eval_samples_assumed"]) == (60, False)
    assert entry["accuracy_ci_high"] - entry["accuracy_ci_low"] > 0.14  # 60 samples: about +-7.5 points
    hyper = report.job_entry(scored("lora", 3.0, 0.9, hyperparameters={"eval_samples": 100}))
    assert hyper["eval_samples"] == 100


def test_pareto_front_is_the_jobs_nothing_beats_on_both_cost_and_accuracy() -> None:
    rows = [
        scored("a", 1.0, 0.50),  # cheapest
        scored("b", 2.0, 0.80),
        scored("c", 3.0, 0.70),  # dominated by b (cheaper and more accurate)
        scored("d", 5.0, 0.90),  # most accurate
        scored("e", 5.0, 0.85),  # same cost as d, less accurate
        scored("f", 2.0, 0.80),  # identical to b: neither beats the other
    ]
    entries = report.build_report("run-1", rows)["jobs"]
    assert report.pareto_front(entries) == {"a", "b", "d", "f"}
    assert {e["job_name"] for e in entries if e["on_pareto_front"]} == {"a", "b", "d", "f"}


def test_a_cheap_job_that_learned_nothing_does_not_win_on_dollars_per_point() -> None:
    # Given a job that cost a cent for 2% accuracy ($0.005 per point) and a good one at $3 for 92% ($0.0326)
    rows = [scored("useless", 0.01, 0.02), scored("good", 3.0, 0.92)]
    document = report.build_report("run-1", rows)
    # Then the good job ranks first and is the best value, though the useless one is on the front too
    assert [e["job_name"] for e in document["jobs"]] == ["good", "useless"]
    assert document["best"]["cost_per_accuracy_point"]["job_name"] == "good"
    assert all(e["on_pareto_front"] for e in document["jobs"])


def test_estimate_vs_actual_reads_the_rows_estimate_and_tolerates_its_absence() -> None:
    rows = [scored("lora", 3.0, 0.92, estimated_cost_usd=2.5, estimated_hours=0.5), scored("old", 2.0, 0.9)]
    document = report.build_report("run-1", rows)
    by_name = {e["job_name"]: e for e in document["jobs"]}
    assert by_name["lora"]["estimated_cost_usd"] == 2.5 and by_name["lora"]["cost_vs_estimate"] == 1.2
    assert by_name["old"]["estimated_cost_usd"] is None and by_name["old"]["cost_vs_estimate"] is None
    assert document["totals"]["estimated_cost_usd"] == 2.5
    markdown = report.render_markdown(document)
    assert "| $3.00 | $2.50 | 1.20x |" in markdown


def test_pareto_chart_is_valid_svg_with_one_point_per_scored_job() -> None:
    rows = [*ROWS, row("odd", "org/<model>", "lora", "Completed", 1.0, 0.8)]
    document = report.build_report("run-1", rows)
    svg = report.render_pareto_svg(document)
    root = ElementTree.fromstring(svg)  # well-formed XML
    points = root.findall(f"{SVG}circle")
    assert len(points) == 4  # four completed, scored jobs; the failed one has no point
    front = {e["job_name"] for e in document["jobs"] if e["on_pareto_front"]}
    red = {p.find(f"{SVG}title").text for p in points if p.get("fill") == "#d9534f"}
    assert red == front == {"odd", "lora", "full"}  # qlora (2.50, 50%) is beaten by odd (1.00, 80%)
    assert len(root.findall(f"{SVG}polyline")) == 1 and "&lt;model&gt;" in svg
    assert "No completed job" in report.render_pareto_svg(report.build_report("run-1", []))


def test_time_split_chart_draws_what_each_row_recorded() -> None:
    split = {"waiting": 60, "downloading": 120, "training": 900, "uploading": 30}
    rows = [scored("lora", 3.0, 0.92, time_split_seconds=split), scored("old", 2.0, 0.9)]
    svg = report.render_time_split_svg(report.build_report("run-1", rows))
    root = ElementTree.fromstring(svg)
    segments = [r for r in root.findall(f"{SVG}rect") if r.get("class") == "segment"]
    assert len(segments) == 4  # one job with four phases; the row without a split draws nothing
    widths = [float(r.get("width")) for r in segments]
    assert widths[2] == max(widths)  # training is the longest phase
    assert "18.5 min" in svg  # 1,110 s
    empty = report.render_time_split_svg(report.build_report("run-1", ROWS))
    assert "No job recorded a time split" in empty and ElementTree.fromstring(empty) is not None


def test_job_rows_carry_the_model_approach_index_key() -> None:
    job = one_job()
    item = ledger.job_row(job, {"status": "Completed", "creation_time": "2026-11-26T00:00:00+00:00"})
    assert item[ledger.MODEL_APPROACH_KEY] == "mistral-7b#lora"


def test_report_places_jobs_next_to_earlier_runs_of_the_same_model_and_approach(
    moto_aws: None, lambda_context: Any
) -> None:
    # Given earlier runs of mistral-7b lora in the ledger (and an unrelated model), then this run's rows
    dynamodb = aws.client("dynamodb")
    for day, accuracy in ((1, 0.90), (2, 0.91), (3, 0.93)):
        earlier = row(f"old-{day}", "mistral-7b", "lora", "Completed", 2.0 + day, accuracy)
        earlier.update(
            pk=f"RUN#run-0{day}",
            run_id=f"run-0{day}",
            model_approach="mistral-7b#lora",
            created_at=f"2026-11-0{day}T10:00:00+00:00",
            estimated_cost_usd=2.5,
        )
        ledger.put_row(dynamodb, TABLE, earlier)
    other = {**row("x", "llama2-7b", "lora", "Completed", 1.0, 0.5), "pk": "RUN#run-09", "run_id": "run-09"}
    ledger.put_row(dynamodb, TABLE, {**other, "model_approach": "llama2-7b#lora", "created_at": "2026-11-09"})
    for item in ROWS:
        ledger.put_row(
            dynamodb,
            TABLE,
            {**item, "model_approach": f"{item['model']}#{item['approach']}", "created_at": "2026-11-20"},
        )
    # When: the index query returns the newest first, bounded by the limit
    newest = ledger.model_approach_rows(dynamodb, TABLE, "mistral-7b", "lora", limit=2)
    assert [r["run_id"] for r in newest] == ["run-1", "run-03"]
    # and the report is built
    report_handler.handler({"run_id": "run-1"}, lambda_context)
    document = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key="reports/run-1/report.json")["Body"].read())
    # Then mistral-7b lora lists its three earlier runs newest first, and nothing of other models
    group = next(g for g in document["comparison"] if (g["model"], g["approach"]) == ("mistral-7b", "lora"))
    assert [line["run_id"] for line in group["earlier"]] == ["run-03", "run-02", "run-01"]
    assert [line["job_name"] for line in group["jobs"]] == ["lora"]
    assert group["earlier"][0]["accuracy_ci_low"] < 0.93 < group["earlier"][0]["accuracy_ci_high"]
    markdown = aws.client("s3").get_object(Bucket=BUCKET, Key="reports/run-1/report.md")["Body"].read().decode()
    assert "## Earlier runs of the same model x approach" in markdown
    assert "| mistral-7b | lora | run-1 (this run) | Completed |" in markdown
    assert "| llama2-7b | qlora | no earlier run |" in markdown
    for name in (report.PARETO_CHART_NAME, report.TIME_SPLIT_CHART_NAME):
        body = aws.client("s3").get_object(Bucket=BUCKET, Key=f"reports/run-1/{name}")["Body"].read()
        assert ElementTree.fromstring(body) is not None


def test_a_job_that_never_started_is_written_without_joining_the_index(moto_aws: None) -> None:
    # DynamoDB refuses a NULL index key: the row goes in without created_at and the index does not list it
    dynamodb = aws.client("dynamodb")
    item = ledger.job_row(one_job(), {"status": "Failed", "failure_reason": "ResourceLimitExceeded"})
    assert item["created_at"] is None
    ledger.put_row(dynamodb, TABLE, item)
    assert len(ledger.run_rows(dynamodb, TABLE, item["run_id"])) == 1
    assert ledger.model_approach_rows(dynamodb, TABLE, "mistral-7b", "lora") == []


def test_report_is_written_even_when_the_index_cannot_be_queried(moto_aws: None, lambda_context: Any) -> None:
    # Given a ledger table without the index (e.g. while a deploy backfills it)
    dynamodb = aws.client("dynamodb")
    dynamodb.delete_table(TableName=TABLE)
    create_ledger_table(dynamodb, TABLE)
    for item in ROWS:
        ledger.put_row(dynamodb, TABLE, item)
    # When the report is built, then it is written with an empty comparison
    result = report_handler.handler({"run_id": "run-1"}, lambda_context)
    document = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key="reports/run-1/report.json")["Body"].read())
    assert result["report_md_uri"].endswith("report.md")
    assert all(group["earlier"] == [] for group in document["comparison"])


def test_first_run_says_there_is_nothing_to_compare_with() -> None:
    markdown = report.render_markdown(report.build_report("run-1", ROWS, history={}))
    assert "None in the ledger yet" in markdown and "no earlier run |" not in markdown
    assert "## Earlier runs" not in report.render_markdown(report.build_report("run-1", ROWS))  # no history asked


def test_a_zero_shot_baseline_is_a_reference_row_that_shows_what_fine_tuning_bought() -> None:
    # Given a run with mistral-7b's zero-shot baseline (cheap, 15%) beside its fine-tuned jobs
    rows = [*ROWS, row("zero-shot", "mistral-7b", "baseline", "Completed", 0.01, 0.15)]

    document = report.build_report("run-1", rows)

    # Then the baseline is ranked last, as a reference, never best on cost or per point, and off the Pareto front
    jobs = {e["job_name"]: e for e in document["jobs"]}
    assert document["jobs"][-1]["job_name"] == "zero-shot"
    assert report.TIERS[jobs["zero-shot"]["tier"]] == "zero-shot baseline"
    assert jobs["zero-shot"]["on_pareto_front"] is None
    best = document["best"]
    assert best["cost"]["job_name"] == "qlora" and best["cost_per_accuracy_point"]["job_name"] == "lora"
    # And each trained job of the same model shows its gain in points; other models' jobs have no baseline to compare
    assert jobs["full"]["gain_over_baseline_pts"] == 79.0 and jobs["lora"]["gain_over_baseline_pts"] == 77.0
    assert jobs["qlora"]["gain_over_baseline_pts"] is None and jobs["zero-shot"]["gain_over_baseline_pts"] is None
    markdown = report.render_markdown(document)
    assert "| reference |" in markdown and "+77.0 pts" in markdown


def test_report_shows_each_jobs_estimate_error_by_part_and_the_calibration_in_force() -> None:
    # Given a job estimated (with one earlier job's calibration) at 240 s startup and 600 s training, which started in
    # 60 s and trained 1200 s (its phases printed), and an older row without an estimate by part
    key = "g5#lora#single"
    in_force = {"key": key, "samples": 1, "factors": {"startup": 0.8}, "source": "ledger: 1 completed job(s)"}
    estimated = {"startup": 240.0, "install": 0.0, "train": 600.0, "evaluate": 100.0, "upload": 0.0, "total": 940.0}
    calibrated = {
        **row("lora", "mistral-7b", "lora", "Completed", 3.0, 0.92),
        "estimated_cost_usd": 2.0,
        "estimated_seconds": estimated,
        "calibration_key": key,
        "calibration": in_force,
        "time_split_seconds": {"waiting": 50, "downloading": 10, "training": 1400, "uploading": 20},
        "metrics": {"eval_intent_accuracy": 0.92, "time_train_seconds": 1200.0, "time_evaluate_seconds": 150.0},
    }
    document = report.build_report("run-1", [calibrated, ROWS[0]])
    # When the report is built
    [entry] = [e for e in document["jobs"] if e["job_name"] == "lora"]
    # Then the job's error is given per part known on both sides (install has no estimate to divide by)
    assert entry["seconds_vs_estimate"] == {"startup": 0.25, "train": 2.0, "evaluate": 1.5, "total": 1.574}
    assert entry["actual_seconds"]["install"] == 50.0 and entry["cost_vs_estimate"] == 1.5
    # And the calibration in force is listed by key, with the run's error under it
    assert document["calibration"] == [
        {
            "key": key,
            "samples": 1,
            "factors": {"startup": 0.8},
            "source": "ledger: 1 completed job(s)",
            "jobs": 1,
            "cost_vs_estimate": 1.5,
        }
    ]
    markdown = report.render_markdown(document)
    assert "## Estimate error" in markdown and "| 60 / 240 | 50 / 0 | - | 1200 / 600 |" in markdown
    assert f"| {key} | 1 | startup 0.80 | 1.50x |" in markdown
    # And report.json carries it all (plain JSON)
    assert json.loads(json.dumps(document))["calibration"][0]["key"] == key


def test_report_of_rows_without_estimates_by_part_has_no_estimate_error_section() -> None:
    document = report.build_report("run-1", ROWS)
    assert document["calibration"] == [] and "## Estimate error" not in report.render_markdown(document)


def test_a_baseline_that_answered_nothing_right_still_measures_the_gain_of_fine_tuning() -> None:
    # Given a zero-shot baseline that scored 0% (usual for exact match on chat answers) beside its fine-tuned jobs
    rows = [*ROWS, row("zero-shot", "mistral-7b", "baseline", "Completed", 0.01, 0.0)]

    jobs = {e["job_name"]: e for e in report.build_report("run-1", rows)["jobs"]}

    # Then each trained job's gain is its whole accuracy in points (0% is a measurement, not a missing one)
    assert jobs["full"]["gain_over_baseline_pts"] == 94.0 and jobs["lora"]["gain_over_baseline_pts"] == 92.0
