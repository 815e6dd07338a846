"""Every table of the report as data: for each column its header, its alignment and how a row's cell is made.

`markdown.py` renders these as Markdown (header, separator and rows all from the same tuple, so they cannot drift
apart) and `finetune report` / `finetune compare` render them as terminal tables (`finetune/tables.py`). A column
shared by several tables (rank, model, the resolved hyperparameters) is defined once here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lambdas.estimate import PARTS
from lambdas.report import formats
from lambdas.report.ranking import TIERS, is_baseline

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """One column: `header`, `cell` (a row -> its text), `align` (right for figures read down a column) and, where
    the cell shows one field of the row, that field's `key` (what a document must keep to render the column)."""

    header: str
    cell: Callable[[Row], str]
    align: Literal["left", "right"] = "left"
    key: str | None = None


def field(key: str, fmt: Callable[[Any], str] = str) -> Callable[[Row], str]:
    """A cell that formats `row[key]` with `fmt`."""
    return lambda row: fmt(row[key])


def optional(key: str, fmt: Callable[[Any], str]) -> Callable[[Row], str]:
    """A cell that formats `row.get(key)`: for documents written before the field existed (report.json in S3)."""
    return lambda row: fmt(row.get(key))


def resolved(name: str, fmt: Callable[[Any], str]) -> Callable[[Row], str]:
    """A cell of what the training code resolved and used (`entry["resolved"][name]`; "-" when it never trained)."""
    return lambda row: fmt((row.get("resolved") or {}).get(name))


def _pareto(entry: Row) -> str:
    if is_baseline(entry):
        return "reference"
    return {True: "front", False: "dominated", None: "-"}[entry["on_pareto_front"]]


def _artifact_mb(entry: Row) -> str:
    size = entry["artifact_bytes"]
    return formats.num(None if size is None else size / 1e6, 1)


def _part_seconds(part: str) -> Column:
    """Actual / estimated seconds of one part of the time model ("-" unless both are known)."""

    def cell(entry: Row) -> str:
        actual, estimated = entry["actual_seconds"], entry["estimated_seconds"]
        if part not in actual or part not in estimated:
            return formats.MISSING
        return f"{actual[part]:.0f} / {estimated[part]:.0f}"

    return Column(part, cell)


RANK = Column("#", field("rank"))
MODEL = Column("model", field("model"))
APPROACH = Column("approach", field("approach"))
STATUS = Column("status", field("status"))
# What the training code used (Record's `resolved`), shared by report.md and `finetune report`.
RESOLVED = (
    Column("LR used", resolved("learning_rate", formats.learning_rate), "right"),
    Column("eff. batch", resolved("effective_batch_size", formats.plain), "right"),
    Column("seq len", resolved("max_seq_length", formats.plain), "right"),
    Column("strategy", resolved("strategy", formats.plain)),
)

# report.md: the ranked jobs.
JOBS = (
    RANK,
    MODEL,
    APPROACH,
    Column("instance", formats.instance),
    STATUS,
    Column("accuracy (95% CI)", formats.interval),
    Column("cost", formats.job_cost),
    Column("expected", field("estimated_cost_usd", formats.usd)),
    Column("actual / expected", field("cost_vs_estimate", formats.ratio)),
    Column("$/accuracy point", field("cost_per_accuracy_point", formats.per_point)),
    Column("Pareto", _pareto),
)
# report.md: the same jobs' other metrics, resources and resolved hyperparameters.
JOB_DETAILS = (
    RANK,
    Column("vs zero-shot", field("gain_over_baseline_pts", formats.points)),
    Column("parse rate", field("parse_rate", formats.pct)),
    Column("ROUGE-L", field("rouge_l", formats.num)),
    Column("BERTScore F1", field("bertscore_f1", formats.num)),
    Column("inference s", field("inference_seconds", lambda v: formats.num(v, 1))),
    Column("training s", field("training_seconds")),
    Column("billable s", field("billable_seconds")),
    Column("spot savings", field("spot_savings_pct", formats.savings)),
    Column("GPU util mean/max", field("gpu_utilization_pct", formats.utilization)),
    Column("peak GPU GB", field("peak_memory_gb", lambda v: formats.num(v, 1))),
    Column("artifact MB", _artifact_mb),
    *RESOLVED,
)
# report.md: each job paired with the best job (`document.paired`).
PAIRED = (
    Column("job", lambda c: f"`{c['job_name']}`"),
    Column("vs best", lambda c: f"`{c['best_job_name']}`"),
    Column("n", field("samples")),
    Column("b", field("best_only_right")),
    Column("c", field("other_only_right")),
    Column("difference", lambda c: f"{c['difference_pts']:+.1f} pts"),
    Column("p", lambda c: f"{c['p_value']:.4f}"),
    Column("tied", lambda c: "yes" if c["tied"] else "no"),
    Column("samples needed", lambda c: str(c["samples_needed"] or "-")),
)
# report.md: the attempts of each remedied job (rows: an attempt with its job's `base_job_name`).
ATTEMPTS = (
    Column("job", lambda a: f"`{a['base_job_name']}`"),
    Column("attempt", field("attempt")),
    Column("instance", lambda a: f"{a['instance_type']}{' (spot)' if a['spot'] else ''}"),
    Column("status", field("status")),
    Column("failure", lambda a: a["failure_class"] or ""),
    Column("remedy", lambda a: a["remedy"] or ""),
    Column("cost", field("cost_usd", formats.usd)),
)
# report.md: actual / estimated seconds per part of the time model.
ESTIMATE_ERROR = (
    RANK,
    Column("key", lambda e: e["calibration_key"] or "-"),
    *(_part_seconds(part) for part in (*PARTS, "total")),
    Column("cost", field("cost_vs_estimate", formats.ratio)),
)
# report.md: the calibration each key's estimates were made with (`document.calibration`).
CALIBRATION = (
    Column("key", field("key")),
    Column("recorded jobs", field("samples")),
    Column(
        "factors",
        lambda c: ", ".join(f"{part} {factor:.2f}" for part, factor in c["factors"].items()) or "none (the table)",
    ),
    Column("run's actual / expected cost", field("cost_vs_estimate", formats.ratio)),
)


def _comparison_accuracy(line: Row) -> str:
    if line["accuracy"] is None:
        return formats.MISSING
    if line["accuracy_ci_low"] is None:
        return formats.pct(line["accuracy"])
    return f"{formats.pct(line['accuracy'])} ({line['accuracy_ci_low'] * 100:.1f}-{line['accuracy_ci_high'] * 100:.1f})"


# report.md: this run's and earlier runs' jobs of each model x approach (rows: a line with its group's model and
# approach, and `mark`, " (this run)" for this run's jobs).
COMPARISON = (
    MODEL,
    APPROACH,
    Column("run", lambda line: f"{line['run_id']}{line['mark']}"),
    STATUS,
    Column("accuracy (95% CI)", _comparison_accuracy),
    Column("cost", field("cost_usd", formats.usd)),
    Column("expected", field("estimated_cost_usd", formats.usd)),
)


def _terminal_number(value: Any) -> str:
    return "" if value is None else f"{float(value):.3f}"


def _terminal_money(value: Any) -> str:
    return "" if value is None else f"{float(value):.4f}"


def _terminal_interval(entry: Row) -> str:
    low, high = entry.get("accuracy_ci_low"), entry.get("accuracy_ci_high")
    return "" if low is None or high is None else f"{low:.3f}-{high:.3f}"


def _terminal_cost(entry: Row) -> str:
    attempts = entry.get("attempts", 1)
    total = _terminal_money(entry.get("attempts_cost_usd", entry["cost_usd"]))
    return total + (f" ({attempts} attempts)" if attempts > 1 else "")


# `finetune report`'s terminal table: the ranked jobs with plain numbers (no units: columns say them).
TERMINAL_JOBS = (
    RANK,
    MODEL,
    APPROACH,
    Column("instance", lambda e: f"{e['instance_count']} x {e['instance_type']}"),
    STATUS,
    Column("accuracy", field("accuracy", _terminal_number)),
    Column("95% CI", _terminal_interval),
    Column("parse", field("parse_rate", _terminal_number)),
    Column("cost $", _terminal_cost),
    Column("expected $", optional("estimated_cost_usd", _terminal_money)),
    Column("$/point", field("cost_per_accuracy_point", _terminal_money)),
    Column("tier", lambda e: TIERS[e["tier"]] if "tier" in e else ""),
    *RESOLVED,
)


def _run_figure(key: str, header: str, template: str) -> Column:
    """A figure of one run's entry for a model x approach; "-" where the run lacks the pair or the figure."""

    def cell(entry: Row | None) -> str:
        value = None if entry is None else entry.get(key)
        return formats.MISSING if value is None else template.format(value)

    return Column(header, cell, key=key)


# `finetune compare`: the figures shown for each run, side by side (finetune/compare.py prefixes each with the run).
RUN_FIGURES = (
    _run_figure("status", "status", "{}"),
    _run_figure("accuracy", "acc", "{:.3f}"),
    _run_figure("parse_rate", "parse", "{:.3f}"),
    _run_figure("cost_usd", "$", "{:.2f}"),
    _run_figure("cost_per_accuracy_point", "$/pt", "{:.4f}"),
)
