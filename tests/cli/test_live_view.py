"""What `watch` / `start --wait` show: a live table of the jobs in a terminal (status, secondary status, elapsed,
cost so far), plain change lines elsewhere; and `estimate`'s expected-cost columns."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console

import finetune.cli as cli
from finetune import live
from finetune.local.backends import ScriptedOutcome
from tests.support.cli import finetune
from tests.support.workflow import GOOD_METRICS

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _job(**fields) -> dict:
    return {
        "TrainingJobName": "run-mistral-lora",
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training",
        "CreationTime": NOW - timedelta(minutes=40),
        "TrainingStartTime": NOW - timedelta(minutes=30),
        "ResourceConfig": {"InstanceCount": 2, "InstanceType": "ml.g5.12xlarge"},
        "Tags": [{"Key": "hourly_price_usd", "Value": "1.5"}],
        **fields,
    }


def test_a_running_jobs_cost_so_far_is_instances_times_price_times_elapsed() -> None:
    state = live.job_state(_job(), None, NOW)

    assert state.state == "InProgress/Training" and state.elapsed_seconds == 1800
    assert state.cost_usd == pytest.approx(2 * 1.5 * 0.5) and not state.cost_final


def test_an_ended_job_costs_its_billable_seconds_and_a_recorded_job_the_ledgers_cost() -> None:
    ended = _job(
        TrainingJobStatus="Completed",
        SecondaryStatus="Completed",
        TrainingEndTime=NOW - timedelta(minutes=10),
        BillableTimeInSeconds=600,
    )

    assert live.job_state(ended, None, NOW).cost_usd == pytest.approx(2 * 1.5 * 600 / 3600)
    assert live.job_state(ended, None, NOW).elapsed_seconds == 1200
    recorded = live.job_state(ended, {"cost_usd": Decimal("0.4321")}, NOW)
    assert (recorded.cost_usd, recorded.cost_final) == (pytest.approx(0.4321), True)
    untagged = live.job_state(_job(Tags=[]), None, NOW)
    assert untagged.cost_usd is None


def test_the_live_table_shows_each_job_with_its_times_and_cost() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    states = [live.job_state(_job(), None, NOW), live.job_state(_job(TrainingJobName="other", Tags=[]), None, NOW)]

    console.print(live.jobs_table("execution RUNNING", states))

    text = console.file.getvalue()
    assert "run-mistral-lora" in text and "InProgress" in text and "Training" in text
    assert "0:30:00" in text and "1.5000 so far" in text
    [other] = [line for line in text.splitlines() if "other" in line]
    assert other.rstrip(" │").endswith("-")


def test_start_wait_in_a_terminal_redraws_a_table_of_the_jobs(account_with, monkeypatch) -> None:
    # Given a terminal (Rich live display) and a job that trains well
    screen = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=screen, width=250, force_terminal=True, highlight=False))
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))

    # When the user starts it and waits
    result = finetune(account, "start", "--model", "mistral-7b", "--approach", "qlora", "--name", "live-1", "--wait")

    # Then the screen held the live table with the job, its status and its recorded cost; no change lines
    assert result.exit_code == 0, result.output
    text = screen.getvalue()
    [job] = account.services.create_calls
    assert "execution SUCCEEDED: 1/1 job(s) recorded" in text
    assert job in text and "Completed" in text and "secondary" in text
    assert f"recorded {job}" not in text and "execution SUCCEEDED: run live-1" in text


def test_estimate_shows_expected_hours_and_cost_and_their_total(monkeypatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=screen, width=250, highlight=False))
    config = cli.deployment_config()
    estimate = cli.estimate_input({"experiments": [{"model": "mistral-7b", "approach": "lora"}]}, config)
    for job in estimate.jobs:
        job["estimated_seconds"] = {**job["estimated_seconds"], "train": 4500.0}
        job["estimated_cost_usd"] = 0.8

    cli.print_estimate(estimate)

    text = screen.getvalue()
    assert "train" in text and "exp $" in text and "75.0" in text and "0.80" in text  # 4,500 s = 75.0 minutes
    assert "total expected: $0.80 (low $" in text and "for 1 jobs" in text


def test_estimate_prints_expected_cost_and_its_assumptions(monkeypatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=screen, width=250, highlight=False))
    estimate = cli.estimate_input({}, cli.deployment_config())

    cli.print_estimate(estimate)

    expected = sum(job["estimated_cost_usd"] for job in estimate.jobs)
    assert f"total expected: ${expected:.2f} (low $" in screen.getvalue() and "for 8 jobs" in screen.getvalue()
    assert expected < estimate.total_usd
    assert "peak dense bf16 per GPU" in screen.getvalue() and "spot_price_fraction" in screen.getvalue()
