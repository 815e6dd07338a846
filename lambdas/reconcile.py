"""The reconciler: the last line of defence against a training job that bills with nobody watching or recording it.

The invariant it enforces (docs/architecture.md, "Nothing bills unwatched"): every training job with this
deployment's name prefix is either watched by a RUNNING execution of the state machine (its run's), or it has ended
and the ledger holds a row for it. On a schedule (and from `finetune reconcile`) it compares:
- SageMaker's jobs with the prefix (ListTrainingJobs: every InProgress one, and those created within the lookback),
- the running executions (ListExecutions, RUNNING), whose names give their run ids,
- the ledger's rows of each run the jobs belong to;
then it stops every running job no execution watches, records every ended (or just stopped) job the ledger lacks
with its cost (lambdas/cleanup.py's rows: SageMaker's billable time, or the elapsed time while still stopping), and
reports and publishes both. Jobs of a run whose execution still runs are the workflow's: never touched.

Idempotent: a stopped job is no longer InProgress, a recorded job is skipped, so a second pass does nothing. Pure
logic: clients are parameters; `dry_run` reports what it would do without stopping or writing anything.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdas import cleanup, cost, ledger, naming, report, training_job
from lambdas.errors import ConfigurationError

logger = logging.getLogger(__name__)

SUBJECT = "Fine-tuning reconciler: jobs stopped or recorded"


@dataclass(frozen=True)
class ReconcileSettings:
    """What the reconciler needs: whose jobs (prefix), which state machine watches them, the ledger, the topic, how
    far back to look for ended jobs, and how long to wait for the jobs it stops."""

    table_name: str
    topic_arn: str
    job_name_prefix: str
    state_machine_arn: str
    lookback_days: int = 14
    stop_wait_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcileSettings:
        """Parse from `env` (default: `os.environ`); `ConfigurationError` naming a missing or malformed variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field, name in (
            ("table_name", "TABLE_NAME"),
            ("topic_arn", "TOPIC_ARN"),
            ("job_name_prefix", "JOB_NAME_PREFIX"),
            ("state_machine_arn", "STATE_MACHINE_ARN"),
        ):
            if not env.get(name, "").strip():
                raise ConfigurationError(f"environment variable {name} is missing or empty")
            values[field] = env[name].strip()
        for field, name, default in (
            ("lookback_days", "RECONCILE_LOOKBACK_DAYS", "14"),
            ("stop_wait_seconds", "CLEANUP_STOP_WAIT_SECONDS", "300"),
        ):
            raw = env.get(name, default).strip()
            if not raw.isdigit():
                raise ConfigurationError(f"environment variable {name} must be an integer >= 0, got {raw!r}")
            values[field] = int(raw)
        return cls(**values)

    def as_cleanup(self) -> Any:
        """The same places as Cleanup's settings, for the shared recording helpers."""
        from lambdas.settings import CleanupSettings

        return CleanupSettings(
            table_name=self.table_name,
            bucket_name="",
            topic_arn=self.topic_arn,
            job_name_prefix=self.job_name_prefix,
            stop_wait_seconds=self.stop_wait_seconds,
        )


def running_run_ids(stepfunctions: Any, state_machine_arn: str) -> set[str]:
    """The run ids of the state machine's RUNNING executions (the runs whose jobs are being watched)."""
    pages = stepfunctions.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn, statusFilter="RUNNING"
    )
    return {naming.run_id_from_execution_name(e["name"]) for page in pages for e in page.get("executions", [])}


def deployment_jobs(sagemaker: Any, job_name_prefix: str, since: datetime) -> list[dict[str, Any]]:
    """Every job with the prefix that may bill or lack a row: all InProgress/Stopping ones, whatever their age, and
    every job created since `since`; described, with tags, by name."""
    jobs: dict[str, dict[str, Any]] = {}
    for status in ("InProgress", "Stopping"):
        for job in cleanup.list_deployment_jobs(sagemaker, job_name_prefix, status=status):
            jobs[job["TrainingJobName"]] = job
    for job in cleanup.list_deployment_jobs(sagemaker, job_name_prefix, created_after=since):
        jobs.setdefault(job["TrainingJobName"], job)
    return [jobs[name] for name in sorted(jobs)]


@dataclass
class Findings:
    """What one pass found among the deployment's jobs (by the ledger and the running executions)."""

    watched: list[str] = dataclass_field(default_factory=list)  # names of jobs a running execution still watches
    unwatched: list[dict[str, Any]] = dataclass_field(default_factory=list)  # running, nobody watching: to stop
    unrecorded: list[dict[str, Any]] = dataclass_field(default_factory=list)  # no ledger row: to record
    # (job, its stale row)
    under_recorded: list[tuple[dict[str, Any], dict[str, Any]]] = dataclass_field(default_factory=list)


def _findings(
    jobs: list[dict[str, Any]], watched_runs: set[str], run_items: Callable[[str], list[dict[str, Any]]]
) -> Findings:
    """Sort the jobs into watched, unwatched, unrecorded and under-recorded (ledger rows read once per run)."""
    found = Findings()
    rows_by_run: dict[str, dict[str, dict[str, Any]]] = {}
    for job in jobs:
        run_id = cleanup.job_run_id(job) or ""
        if run_id in watched_runs:
            found.watched.append(job["TrainingJobName"])
            continue
        if run_id not in rows_by_run:
            items = run_items(run_id) if run_id else []
            rows_by_run[run_id] = {str(i.get("job_name")): i for i in items if str(i.get("sk", "")).startswith("JOB#")}
        row = rows_by_run[run_id].get(job["TrainingJobName"])
        if job.get("TrainingJobStatus") in cleanup.RUNNING_STATUSES:
            found.unwatched.append(job)
        if row is None:
            found.unrecorded.append(job)
        elif int(row.get("billable_seconds") or 0) < int(job.get("BillableTimeInSeconds") or 0):
            # Recorded while it still ran (a workflow that stopped watching it wrote its cost so far): the bill
            # grew since. Only the time and cost are brought up to SageMaker's final numbers.
            found.under_recorded.append((job, row))
    return found


def reconcile(
    config: ReconcileSettings,
    *,
    sagemaker: Any,
    dynamodb: Any,
    stepfunctions: Any,
    sns: Any | None,
    dry_run: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """One pass: stop the unwatched running jobs, record the unrecorded ended ones; a JSON summary of what it found
    and did (`unwatched`, `unrecorded`: what it found; `stopped`, `recorded`: what it did; `message`)."""
    # Jobs first, executions second: an execution that starts in between cannot have its new job taken for an
    # unwatched one (the job is not in the list), while one that ended in between has left its jobs to Cleanup and
    # to this pass alike (both idempotent).
    jobs = deployment_jobs(sagemaker, config.job_name_prefix, now() - timedelta(days=config.lookback_days))
    watched_runs = running_run_ids(stepfunctions, config.state_machine_arn)
    found = _findings(jobs, watched_runs, lambda run_id: ledger.run_items(dynamodb, config.table_name, run_id))
    unwatched, unrecorded, under_recorded = found.unwatched, found.unrecorded, found.under_recorded
    result: dict[str, Any] = {
        "checked": len(jobs),
        "watched": found.watched,
        "unwatched": [job["TrainingJobName"] for job in unwatched],
        "unrecorded": [job["TrainingJobName"] for job in unrecorded],
        "under_recorded": [job["TrainingJobName"] for job, _row in under_recorded],
        "stopped": [],
        "recorded": [],
        "corrected": [],
        "dry_run": dry_run,
    }
    if dry_run or not (unwatched or unrecorded or under_recorded):
        result["message"] = message(result, [])
        return result

    for job, row in under_recorded:
        ledger.put_row(dynamodb, config.table_name, corrected_row(row, job))
        result["corrected"].append(job["TrainingJobName"])

    stopped = cleanup.stop_running_jobs(sagemaker, unwatched)
    reason = "reconciler: no running execution was watching this job, so it was stopped and recorded"
    rows = cleanup.record_jobs(
        unrecorded,
        stopped,
        reason,
        config.as_cleanup(),
        sagemaker=sagemaker,
        dynamodb=dynamodb,
        now=now,
        sleep=sleep,
        clock=clock,
    )
    result.update({"stopped": stopped, "recorded": [row["job_name"] for row in rows]})
    result["message"] = message(result, rows)
    for name in stopped:
        logger.warning("reconciler stopped an unwatched training job", extra={"job_name": name})
    if sns is not None:
        sns.publish(TopicArn=config.topic_arn, Subject=SUBJECT, Message=result["message"])
    return result


def corrected_row(row: Mapping[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with SageMaker's final status, times and the cost they make (at the row's own price)."""
    final = training_job.normalise_description(dict(description))
    billable = final["billable_seconds"]
    note = f"reconciler: cost brought up to SageMaker's final {billable} billable s (recorded while it ran)"
    return {
        **row,
        "status": final["status"],
        "training_seconds": final["training_seconds"],
        "billable_seconds": billable,
        "cost_usd": cost.job_cost_usd(billable, int(row.get("instance_count") or 1), row.get("hourly_price_usd") or 0),
        "spot_savings_pct": cost.spot_savings_pct(billable, final["training_seconds"]),
        "failure_reason": (f"{row.get('failure_reason') or ''} | {note}" if row.get("failure_reason") else note)[
            : training_job.FAILURE_REASON_MAX
        ],
    }


def message(result: Mapping[str, Any], rows: list[dict[str, Any]]) -> str:
    """What the pass found and did, for the topic and the CLI (at most report.MESSAGE_MAX_BYTES)."""
    verb = "would stop" if result["dry_run"] else "stopped"
    lines = [
        f"Reconciler checked {result['checked']} training job(s) of this deployment; "
        f"{len(result['watched'])} watched by a running execution."
    ]
    if not (result["unwatched"] or result["unrecorded"]):
        lines.append("Every job is watched or recorded: nothing to do.")
    for name in result["unwatched"]:
        lines.append(f"- unwatched and running: {name} ({verb if name not in result['stopped'] else 'stopped'})")
    for row in rows:
        lines.append(f"- recorded: {row['job_name']} {row['status']} ${float(row['cost_usd']):.4f}")
    lines.extend(f"- cost corrected to SageMaker's final bill: {name}" for name in result.get("corrected", []))
    if result["dry_run"]:
        lines.extend(f"- under-recorded (would correct): {name}" for name in result.get("under_recorded", []))
    if result["dry_run"]:
        lines.extend(f"- unrecorded (would record): {name}" for name in result["unrecorded"])
    text = "\n".join(lines).encode()
    if len(text) <= report.MESSAGE_MAX_BYTES:
        return text.decode()
    return text[: report.MESSAGE_MAX_BYTES - 3].decode(errors="ignore") + "..."
