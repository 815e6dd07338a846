"""`finetune reconcile`: the reconciler's pass from the operator's terminal, against the emulated account."""

from __future__ import annotations

from finetune.local.backends import ScriptedOutcome
from tests.support.cli import finetune

STILL_TRAINING = ScriptedOutcome(polls_in_progress=10_000)


def test_reconcile_dry_run_reports_an_orphan_and_touches_nothing(account_with) -> None:
    # Given a training job of this deployment that no execution watches and the ledger lacks
    account = account_with(lambda _request: STILL_TRAINING)
    orphan = account.seed_orphan_job("orphan-cli", "run-gone")

    # When the operator asks for a dry run
    result = finetune(account, "reconcile", "--dry-run")

    # Then it names the job, exits 1 (something needs doing), and nothing was stopped or written
    assert result.exit_code == 1, result.output
    assert f"unwatched and running: {orphan} (would stop)" in result.output
    assert account.services.stop_calls == [] and account.ledger_rows() == []


def test_reconcile_stops_and_records_an_orphan_then_finds_nothing(account_with) -> None:
    account = account_with(lambda _request: STILL_TRAINING)
    orphan = account.seed_orphan_job("orphan-cli", "run-gone")

    first = finetune(account, "reconcile")
    second = finetune(account, "reconcile")

    assert first.exit_code == 1 and f"recorded: {orphan} Stopped" in first.output, first.output
    assert account.services.stop_calls == [orphan]
    [row] = account.ledger_rows()
    assert (row["job_name"], row["status"], row["run_id"]) == (orphan, "Stopped", "run-gone")
    assert second.exit_code == 0 and "nothing to do" in second.output, second.output
