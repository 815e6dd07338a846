"""The run report: rank a run's jobs, say which job wins on what, and show how sure and how expected each figure is.

Per job: accuracy with its 95% Wilson interval from the evaluated sample size, cost next to the pre-launch expected
cost (`lambdas/estimate.py`) and, part by part, its actual seconds next to the estimate's, whether it is on the
cost-vs-accuracy Pareto front, its time split and the hyperparameters its training code resolved and used; the
calibration each estimate was made with. Charts: cost per accuracy point, cost vs accuracy with the front marked,
time split per job. Optionally, earlier runs of each job's model x approach from the ledger's index.

One module per job:
- `entries.py`: a ledger row -> a report entry (`job_entry`, shared with `finetune compare`)
- `ranking.py`: Wilson intervals, the Pareto front, ties with the best (`lambdas/paired.py`), tiers, attempts, order
- `history.py`: earlier runs of each model x approach (the ledger's index, through a query function)
- `document.py`: `build_report`, the report document (bests, totals, attempts, calibration)
- `columns.py`: every table as data (header, alignment, cell), for Markdown and the CLI's terminal tables
- `markdown.py`: `render_markdown`, report.md from those columns
- `charts.py`: the three SVG charts
- `summary.py`: the ledger's SUMMARY row and the SNS message
- `storage.py`: `write_report`, the S3 writes

`build_report` and `render_markdown` are pure (ledger rows in, dict/str out) so the offline demo and the CLI print
the very same table the Report Lambda writes to S3. This package re-exports what the handler, the CLI, Cleanup and
the tests use.
"""

from lambdas.report.charts import (
    CHART_NAME,
    PARETO_CHART_NAME,
    TIME_PHASES,
    TIME_SPLIT_CHART_NAME,
    charts,
    render_chart_svg,
    render_pareto_svg,
    render_time_split_svg,
)
from lambdas.report.document import attempts_section, build_report, calibration_section
from lambdas.report.entries import estimate_error_fields, job_entry, primary_metric, resolved_fields, resource_fields
from lambdas.report.history import COMPARISON_RUNS, comparison, fetch_history
from lambdas.report.markdown import render_attempts, render_estimate_error, render_markdown, render_paired
from lambdas.report.ranking import (
    BASELINE_TIER,
    RANKING,
    TIERS,
    Z_95,
    attempts_by_job,
    final_attempts,
    is_baseline,
    pareto_front,
    wilson_interval,
)
from lambdas.report.storage import write_report
from lambdas.report.summary import MESSAGE_MAX_BYTES, summary_fields, summary_message

__all__ = [
    "BASELINE_TIER",
    "CHART_NAME",
    "COMPARISON_RUNS",
    "MESSAGE_MAX_BYTES",
    "PARETO_CHART_NAME",
    "RANKING",
    "TIERS",
    "TIME_PHASES",
    "TIME_SPLIT_CHART_NAME",
    "Z_95",
    "attempts_by_job",
    "attempts_section",
    "build_report",
    "calibration_section",
    "charts",
    "comparison",
    "estimate_error_fields",
    "fetch_history",
    "final_attempts",
    "is_baseline",
    "job_entry",
    "pareto_front",
    "primary_metric",
    "render_attempts",
    "render_chart_svg",
    "render_estimate_error",
    "render_markdown",
    "render_paired",
    "render_pareto_svg",
    "render_time_split_svg",
    "resolved_fields",
    "resource_fields",
    "summary_fields",
    "summary_message",
    "wilson_interval",
    "write_report",
]
