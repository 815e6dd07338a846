"""How the report prints a value: one function per kind of figure, "-" for a value a job does not have.

Shared by the Markdown tables (`columns.py`), the charts and the plain-text summary, so a figure reads the same
wherever it appears.
"""

from __future__ import annotations

from typing import Any

MISSING = "-"


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal: 0.915 -> "91.5%"."""
    return MISSING if value is None else f"{value * 100:.1f}%"


def num(value: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals."""
    return MISSING if value is None else f"{value:.{digits}f}"


def usd(value: float | None) -> str:
    """Dollars: cents from $0.10 up, four decimals below (a LoRA job on a small model costs cents)."""
    if value is None:
        return MISSING
    return f"${value:,.2f}" if abs(value) >= 0.1 else f"${value:.4f}"


def per_point(value: float | None) -> str:
    """Dollars per accuracy point, always four decimals."""
    # Cents hide the differences that matter here (a LoRA job is often $0.03 per point).
    return MISSING if value is None else f"${value:.4f}"


def savings(value: float | None) -> str:
    """A spot saving in percent (already x100)."""
    return MISSING if value is None else f"{value:.1f}%"


def points(value: float | None) -> str:
    """A signed difference in accuracy points."""
    return MISSING if value is None else f"{value:+.1f} pts"


def utilization(value: dict[str, Any] | None) -> str:
    """GPU utilization as mean / max percent."""
    return MISSING if not value else f"{value['mean']:.0f}% / {value['max']:.0f}%"


def ratio(value: float | None) -> str:
    """Actual / expected as a multiple: 1.234 -> "1.23x"."""
    return MISSING if value is None else f"{value:.2f}x"


def learning_rate(value: float | None) -> str:
    """A learning rate in scientific notation with three digits: 0.000141 -> "1.41e-04" (an auto rate is not round)."""
    return MISSING if value is None else f"{value:.2e}"


def plain(value: Any) -> str:
    """A value as is ("-" when absent)."""
    return MISSING if value is None else str(value)


def interval(entry: dict[str, Any]) -> str:
    """Accuracy with its 95% interval in points; `~` marks an interval over the assumed (default) sample size."""
    if entry["accuracy"] is None:
        return MISSING
    if entry["accuracy_ci_low"] is None:  # a mean metric (ROUGE, BERTScore): no interval is claimed
        return f"{entry['accuracy'] * 100:.1f}% (n={entry['eval_samples']})"
    approx = "~" if entry["eval_samples_assumed"] else ""
    return (
        f"{entry['accuracy'] * 100:.1f}% ({approx}{entry['accuracy_ci_low'] * 100:.1f}-"
        f"{entry['accuracy_ci_high'] * 100:.1f}, n={entry['eval_samples']})"
    )


def job_cost(entry: dict[str, Any]) -> str:
    """A job's cost; with its attempts' total when it took more than one."""
    if entry.get("attempts", 1) == 1:
        return usd(entry["cost_usd"])
    return f"{usd(entry['cost_usd'])} ({entry['attempts']} attempts: {usd(entry['attempts_cost_usd'])})"


def instance(entry: dict[str, Any]) -> str:
    """`<count>x <type>` (the count only when above one), `(spot)` for a spot job."""
    count = entry["instance_count"] or 1
    kind = entry["instance_type"] if count == 1 else f"{count}x {entry['instance_type']}"
    return f"{kind}{' (spot)' if entry['spot'] else ''}"
