"""The report's three charts as standalone SVG text: cost per accuracy point, cost vs accuracy with the Pareto front,
and each job's time split.

Plain SVG text: the Lambda has no plotting library, and a browser or the S3 console renders it as is.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from lambdas.report import formats
from lambdas.report.ranking import is_scored

CHART_NAME = "chart.svg"  # next to report.md, which links it
PARETO_CHART_NAME = "pareto.svg"
TIME_SPLIT_CHART_NAME = "time_split.svg"
# The time split's phases, in the order a job goes through them (the Record step's `time_split_seconds`).
TIME_PHASES: tuple[tuple[str, str], ...] = (
    ("waiting", "#b0b0b0"),
    ("downloading", "#f0ad4e"),
    ("training", "#3b6ea5"),
    ("uploading", "#5cb85c"),
)
FRONT_COLOUR, JOB_COLOUR = "#d9534f", "#3b6ea5"
WIDTH, LABEL_WIDTH, ROW_HEIGHT = 760, 220, 26  # the bar charts: one row per job, labels on the left


def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<text x="10" y="22" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]


def _svg_close(parts: list[str]) -> str:
    return "\n".join([*parts, "</svg>"]) + "\n"


def _label(entry: dict[str, Any]) -> str:
    return html.escape(f"#{entry['rank']} {entry['model']} {entry['approach']}")


def render_chart_svg(report: dict[str, Any]) -> str:
    """A horizontal bar chart of cost per accuracy point (ranked, best on top) as standalone SVG."""
    scored = [e for e in report["jobs"] if e["cost_per_accuracy_point"] is not None]
    top, bar_room = 40, WIDTH - LABEL_WIDTH - 140
    height = top + ROW_HEIGHT * max(len(scored), 1) + 20
    biggest = max((e["cost_per_accuracy_point"] for e in scored), default=0) or 1
    parts = _svg_open(WIDTH, height, f"{report['run_id']}: cost per accuracy point (lower is better)")
    if not scored:
        parts.append(f'<text x="10" y="{top + 14}">No completed job reported an accuracy.</text>')
    for i, e in enumerate(scored):
        y = top + i * ROW_HEIGHT
        length = max(1, round(bar_room * e["cost_per_accuracy_point"] / biggest))
        label = html.escape(f"{e['model']} {e['approach']}")
        parts += [
            f'<text x="10" y="{y + 15}">{label}</text>',
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{length}" height="{ROW_HEIGHT - 8}" fill="{JOB_COLOUR}"/>',
            f'<text x="{LABEL_WIDTH + length + 6}" y="{y + 15}">{formats.per_point(e["cost_per_accuracy_point"])} '
            f"({formats.pct(e['accuracy'])})</text>",
        ]
    return _svg_close(parts)


def _bounds(e: dict[str, Any]) -> tuple[float, float]:
    """A scored entry's interval, or its value twice where its metric has none (a mean ROUGE or BERTScore)."""
    if e["accuracy_ci_low"] is None:
        return e["accuracy"], e["accuracy"]
    return e["accuracy_ci_low"], e["accuracy_ci_high"]


@dataclass(frozen=True)
class _Plot:
    """The cost-vs-accuracy plot area: cost from 0 to 105% of the dearest job, accuracy from `y_min` to 100%."""

    left: int
    top: int
    width: int
    height: int
    max_cost: float
    y_min: float

    def x(self, cost_usd: float) -> float:
        return round(self.left + self.width * cost_usd / (self.max_cost * 1.05), 1)

    def y(self, accuracy: float) -> float:
        return round(self.top + self.height * (1 - (accuracy - self.y_min) / max(1.0 - self.y_min, 1e-9)), 1)


def _pareto_axes(plot: _Plot, svg_height: int) -> list[str]:
    """Both axes, their titles and ticks (cost at 0, half and full; accuracy every 10 points)."""
    axis_y, middle = plot.top + plot.height, plot.top + plot.height / 2
    parts = [
        f'<line x1="{plot.left}" y1="{axis_y}" x2="{plot.left + plot.width}" y2="{axis_y}" stroke="#333"/>',
        f'<line x1="{plot.left}" y1="{plot.top}" x2="{plot.left}" y2="{axis_y}" stroke="#333"/>',
        f'<text x="{plot.left + plot.width / 2}" y="{svg_height - 12}" text-anchor="middle">cost (USD)</text>',
        f'<text x="14" y="{middle}" transform="rotate(-90 14 {middle})" text-anchor="middle">accuracy</text>',
    ]
    for share in (0.0, 0.5, 1.0):
        value = plot.max_cost * share
        parts.append(f'<text x="{plot.x(value)}" y="{axis_y + 16}" text-anchor="middle">{formats.usd(value)}</text>')
    for tick in range(round(plot.y_min * 10), 11):
        value = tick / 10
        parts.append(f'<text x="{plot.left - 6}" y="{plot.y(value) + 4}" text-anchor="end">{value * 100:.0f}%</text>')
    return parts


def _front_staircase(plot: _Plot, scored: list[dict[str, Any]]) -> list[str]:
    """The Pareto front joined as a staircase (nothing for a front of one job)."""
    front = sorted((e for e in scored if e["on_pareto_front"]), key=lambda e: (e["cost_usd"], e["accuracy"]))
    if len(front) <= 1:
        return []
    steps: list[str] = []
    for i, e in enumerate(front):
        if i:  # horizontal at the previous accuracy, then up: nothing between two front jobs does better
            steps.append(f"{plot.x(e['cost_usd'])},{plot.y(front[i - 1]['accuracy'])}")
        steps.append(f"{plot.x(e['cost_usd'])},{plot.y(e['accuracy'])}")
    return [f'<polyline class="front" points="{" ".join(steps)}" fill="none" stroke="{FRONT_COLOUR}"/>']


def _pareto_point(plot: _Plot, e: dict[str, Any]) -> list[str]:
    """One job: its 95% interval as a vertical bar, a circle at (cost, accuracy) and its label."""
    x, y = plot.x(e["cost_usd"]), plot.y(e["accuracy"])
    low, high = _bounds(e)
    colour = FRONT_COLOUR if e["on_pareto_front"] else JOB_COLOUR
    return [
        f'<line class="interval" x1="{x}" y1="{plot.y(low)}" x2="{x}" y2="{plot.y(high)}" stroke="{colour}"/>',
        f'<circle class="job" cx="{x}" cy="{y}" r="5" fill="{colour}">'
        f"<title>{html.escape(e['job_name'] or '')}</title></circle>",
        f'<text x="{x + 8}" y="{y + 4}">{_label(e)} ({formats.usd(e["cost_usd"])}, '
        f"{formats.pct(e['accuracy'])})</text>",
    ]


def render_pareto_svg(report: dict[str, Any]) -> str:
    """Cost (x) vs accuracy (y) as standalone SVG: one circle per completed, scored job with its 95% interval as a
    vertical bar; Pareto-front jobs in red, joined by the front's staircase. Plain SVG text, like the bar chart."""
    scored = [e for e in report["jobs"] if is_scored(e)]
    width, height, left, right, top, bottom = 760, 440, 70, 260, 40, 50  # right: room for the point labels
    parts = _svg_open(width, height, f"{report['run_id']}: cost vs accuracy (red: Pareto front)")
    if not scored:
        return _svg_close([*parts, f'<text x="10" y="{top + 14}">No completed job reported an accuracy.</text>'])
    low = min(_bounds(e)[0] for e in scored)
    plot = _Plot(
        left=left,
        top=top,
        width=width - left - right,
        height=height - top - bottom,
        max_cost=max(e["cost_usd"] for e in scored) or 1.0,
        y_min=math.floor(low * 10) / 10,  # whole tenths: the axis starts at a round number below every interval
    )
    parts += _pareto_axes(plot, height) + _front_staircase(plot, scored)
    for e in scored:
        parts += _pareto_point(plot, e)
    return _svg_close(parts)


def _time_split_bar(e: dict[str, Any], y: int, bar_room: float, longest: float) -> list[str]:
    """One job's stacked bar: its known phases in order, then any other it recorded, and its total in minutes."""
    known, colours = [name for name, _ in TIME_PHASES], dict(TIME_PHASES)
    split = e["time_split_seconds"]
    phases = [p for p in known if p in split] + sorted(p for p in split if p not in known)
    parts = [f'<text x="10" y="{y + 15}">{_label(e)}</text>']
    x = float(LABEL_WIDTH)
    for phase in phases:
        length = bar_room * split[phase] / longest
        if length <= 0:
            continue
        parts.append(
            f'<rect class="segment" x="{round(x, 1)}" y="{y + 3}" width="{round(length, 1)}" height="{ROW_HEIGHT - 8}" '
            f'fill="{colours.get(phase, "#999999")}">'
            f"<title>{html.escape(phase)}: {split[phase]:.0f} s</title></rect>"
        )
        x += length
    parts.append(f'<text x="{round(x, 1) + 6}" y="{y + 15}">{sum(split.values()) / 60:.1f} min</text>')
    return parts


def render_time_split_svg(report: dict[str, Any]) -> str:
    """Each job's wall time split into waiting / downloading / training / uploading (what its ledger row has), as
    stacked horizontal bars on one time scale."""
    jobs = [e for e in report["jobs"] if e.get("time_split_seconds")]
    top = 60
    height = top + ROW_HEIGHT * max(len(jobs), 1) + 20
    parts = _svg_open(WIDTH, height, f"{report['run_id']}: where each job's time went")
    for i, (name, colour) in enumerate(TIME_PHASES):
        parts += [
            f'<rect class="legend" x="{10 + i * 120}" y="32" width="12" height="12" fill="{colour}"/>',
            f'<text x="{26 + i * 120}" y="42">{name}</text>',
        ]
    if not jobs:
        return _svg_close([*parts, f'<text x="10" y="{top + 14}">No job recorded a time split.</text>'])
    longest = max(sum(e["time_split_seconds"].values()) for e in jobs) or 1.0
    for i, e in enumerate(jobs):
        parts += _time_split_bar(e, top + i * ROW_HEIGHT, WIDTH - LABEL_WIDTH - 100, longest)
    return _svg_close(parts)


def charts(report: dict[str, Any]) -> dict[str, str]:
    """Every chart of the report by file name (report.md links them by these names)."""
    return {
        CHART_NAME: render_chart_svg(report),
        PARETO_CHART_NAME: render_pareto_svg(report),
        TIME_SPLIT_CHART_NAME: render_time_split_svg(report),
    }
