"""What `finetune watch` and `start --wait` show while a run goes: one line per training job with its status,
secondary status (Starting, Downloading, Training, Interrupted …), elapsed time and cost so far.

In a terminal the jobs are a Rich table redrawn on each poll (`rich.live.Live`); anywhere else (CI logs, a pipe)
the same facts print as one line per change, so a log reads top to bottom without control codes.

Cost so far = instance count × hourly price × hours: an ended job's `BillableTimeInSeconds` (what SageMaker bills;
for spot, the seconds trained), a running job's elapsed time since it started training (an upper bound for spot,
whose interruptions are not billed). The hourly price is the one Plan used, carried on the job by Launch's
`hourly_price_usd` tag (lambdas/training_job.py); a job recorded in the ledger shows the ledger's cost instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lambdas.training_job import PRICE_TAG


@dataclass(frozen=True)
class JobState:
    """One training job as the view shows it."""

    name: str
    status: str
    secondary_status: str
    elapsed_seconds: float
    cost_usd: float | None
    cost_final: bool

    @property
    def state(self) -> str:
        """`Status/SecondaryStatus`, the change the plain view prints."""
        return f"{self.status}/{self.secondary_status}"


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def job_state(job: dict[str, Any], recorded: dict[str, Any] | None, now: datetime) -> JobState:
    """A job's view from its SageMaker Search/DescribeTrainingJob fields (with Tags) and its ledger row if any."""
    started = _aware(job.get("TrainingStartTime")) or _aware(job.get("CreationTime"))
    ended = _aware(job.get("TrainingEndTime"))
    elapsed = max(0.0, ((ended or now) - started).total_seconds()) if started else 0.0
    tags = {tag["Key"]: tag["Value"] for tag in job.get("Tags", [])}
    count = int(job.get("ResourceConfig", {}).get("InstanceCount", 1))
    cost: float | None = None
    final = False
    if recorded is not None and recorded.get("cost_usd") is not None:
        cost, final = float(recorded["cost_usd"]), True
    elif PRICE_TAG in tags:
        billable = job.get("BillableTimeInSeconds")
        seconds = float(billable) if billable is not None else elapsed
        cost = count * float(tags[PRICE_TAG]) * seconds / 3600
    return JobState(
        name=job["TrainingJobName"],
        status=str(job.get("TrainingJobStatus")),
        secondary_status=str(job.get("SecondaryStatus")),
        elapsed_seconds=elapsed,
        cost_usd=cost,
        cost_final=final,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _cost(state: JobState) -> str:
    if state.cost_usd is None:
        return "-"
    return f"{state.cost_usd:.4f}" + ("" if state.cost_final else " so far")


def jobs_table(title: str, states: list[JobState]) -> Table:
    """The live table: one row per job."""
    table = Table(title=title)
    for column in ("job", "status", "secondary", "elapsed", "cost $"):
        table.add_column(column, justify="right" if column in ("elapsed", "cost $") else "left")
    for state in states:
        table.add_row(state.name, state.status, state.secondary_status, _duration(state.elapsed_seconds), _cost(state))
    if not states:
        table.add_row("(no training job yet)", "", "", "", "")
    return table


class RunView(Protocol):
    """Shows a run's jobs on each poll."""

    def show(self, execution_status: str, states: list[JobState], recorded: dict[str, dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class ChangeLines:
    """One line per job state change and per newly recorded job (CI logs, pipes)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seen: dict[str, str] = {}
        self.recorded: set[str] = set()

    def show(self, execution_status: str, states: list[JobState], recorded: dict[str, dict[str, Any]]) -> None:
        """Print what changed since the last poll."""
        for state in states:
            if self.seen.get(state.name) != state.state:
                self.seen[state.name] = state.state
                self.console.print(f"  {state.name}: {state.state}")
        for name, row in recorded.items():
            if name not in self.recorded:
                self.recorded.add(name)
                self.console.print(f"  recorded {name}: {row['status']}, ${float(row['cost_usd']):.4f}")

    def close(self) -> None:
        """Nothing to tidy."""


class LiveTable:
    """A Rich table of the jobs, redrawn in place on each poll (terminals)."""

    def __init__(self, console: Console) -> None:
        self.live = Live(jobs_table("starting", []), console=console, auto_refresh=False)
        self.live.start()

    def show(self, execution_status: str, states: list[JobState], recorded: dict[str, dict[str, Any]]) -> None:
        """Redraw the table."""
        total = sum(state.cost_usd or 0.0 for state in states)
        title = f"execution {execution_status}: {len(recorded)}/{len(states)} job(s) recorded, ${total:.4f} so far"
        self.live.update(jobs_table(title, states), refresh=True)

    def close(self) -> None:
        """Leave the last table on screen."""
        self.live.stop()


def run_view(console: Console) -> RunView:
    """The live table in a terminal, change lines elsewhere."""
    return LiveTable(console) if console.is_terminal else ChangeLines(console)
