"""Cleanup after an execution that ended FAILED, TIMED_OUT or ABORTED (EventBridge delivers its status change).

The Map's own Record/Report/Notify never run for such an execution, while its training jobs run on (and bill) until
their MaxRuntime. So, for the run of that execution:
1. find its training jobs two ways: by their `run_id` tag (SageMaker Search, whose index is eventually consistent:
   a job created moments ago may be missing) and by name (ListTrainingJobs on this deployment's job-name prefix since
   the execution started, each candidate confirmed by its checkpoint prefix `checkpoints/<run id>/`);
2. stop those still running (an already ended or stopping job is fine);
3. wait a bounded time for them to reach Stopped, then record every job the ledger does not hold yet, with its cost
   so far (SageMaker's billable seconds once ended; the elapsed training time, an upper bound, if still stopping);
4. look again once `resweep_seconds` have passed since it started (a Launch that was mid-call when the execution
   ended creates its job after the first look; Launch's own timeout bounds how late), and stop and record what is
   new, until a look finds nothing new;
5. write a partial report (lambdas/report/, marked `partial`) and a SUMMARY row, unless Report already ran;
6. publish the execution's cause, and every job stopped and recorded, to the run topic.

Every step is idempotent (stop tolerates ended jobs, recorded jobs are skipped, the report is overwritten), so
Lambda's async retries and a re-delivered event are safe. Pure logic: clients are parameters.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from lambdas import catalog, cost, ledger, naming, report, settings, training_job

logger = logging.getLogger(__name__)

# The execution statuses the EventBridge rule forwards (stacks/constructs/lifecycle.py); anything else is ignored.
LIFECYCLE_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
EVENT_SOURCE = "aws.states"
EVENT_DETAIL_TYPE = "Step Functions Execution Status Change"
# Jobs SageMaker may still be billing. `Stopping` needs no StopTrainingJob, but it is waited for like the others.
RUNNING_STATUSES = frozenset({"InProgress", "Stopping"})
SEARCH_PAGE_SIZE = 100  # SageMaker Search's maximum
STOP_POLL_SECONDS = 10
SUBJECT_MAX = 100  # SNS subject limit
# Looks for the run's jobs: the first, then again after resweep_seconds until one finds nothing new (bounded).
MAX_SWEEPS = 3


@dataclass(frozen=True)
class ExecutionEnd:
    """The parts of an EventBridge "Step Functions Execution Status Change" event that Cleanup uses."""

    execution_arn: str
    name: str
    status: str
    error: str | None
    cause: str | None
    start_date: datetime | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ExecutionEnd:
        """Parse the event as EventBridge delivers it; ValueError when it is not an execution status change."""
        if event.get("source") != EVENT_SOURCE or event.get("detail-type") != EVENT_DETAIL_TYPE:
            raise ValueError(f"not a Step Functions execution status change: {event.get('detail-type')!r}")
        detail = event.get("detail") or {}
        return cls(
            execution_arn=str(detail.get("executionArn", "")),
            name=str(detail["name"]),
            status=str(detail["status"]),
            error=detail.get("error") or None,
            cause=detail.get("cause") or None,
            # Epoch milliseconds, as EventBridge carries it; bounds the name lookup (no job of the run is older).
            start_date=(
                datetime.fromtimestamp(int(detail["startDate"]) / 1000, UTC)
                if isinstance(detail.get("startDate"), int | float)
                else None
            ),
        )

    @property
    def run_id(self) -> str:
        """The run id Plan derived from the same execution name."""
        return naming.run_id_from_execution_name(self.name)

    @property
    def reason(self) -> str:
        """Why the run ended early, for ledger rows and the notification (at most FAILURE_REASON_MAX)."""
        if self.status == "TIMED_OUT" and not (self.error or self.cause):
            text = "execution TIMED_OUT: it ran past the state machine's timeout (execution_timeout_hours)"
        elif self.status == "ABORTED" and not (self.error or self.cause):
            text = "execution ABORTED: stopped (StopExecution) without an error or cause"
        else:
            detail = training_job.workflow_error_text({"Error": self.error or "", "Cause": self.cause or ""})
            text = f"execution {self.status}: {detail}"
        return text[: training_job.FAILURE_REASON_MAX]


# --------------------------------------------------------------------------------------------------------------------
# Finding and stopping the run's jobs
# --------------------------------------------------------------------------------------------------------------------
def find_run_jobs(sagemaker: Any, run_id: str, job_name_prefix: str, page_size: int = SEARCH_PAGE_SIZE) -> list[dict]:
    """Every training job tagged `run_id` = `run_id` whose name carries this deployment's prefix, by name.

    The prefix check keeps another deployment's run of the same execution name (same run id) out of reach.
    """
    jobs: dict[str, dict[str, Any]] = {}
    pages = sagemaker.get_paginator("search").paginate(
        Resource="TrainingJob",
        SearchExpression={"Filters": [{"Name": "Tags.run_id", "Operator": "Equals", "Value": run_id}]},
        PaginationConfig={"PageSize": page_size},
    )
    for page in pages:
        for result in page.get("Results", []):
            job = result.get("TrainingJob") or {}
            name = job.get("TrainingJobName", "")
            if name.startswith(f"{job_name_prefix}-") and _tags(job).get("run_id") == run_id:
                jobs[name] = job
    return [jobs[name] for name in sorted(jobs)]


# ListTrainingJobs lists only what the control plane holds, so a job is listed from its creation on; its time filter
# is applied with a margin for clock skew between the execution's start and SageMaker's CreationTime.
LIST_TIME_MARGIN = timedelta(minutes=5)
LIST_PAGE_SIZE = 100  # ListTrainingJobs' maximum


def list_deployment_jobs(
    sagemaker: Any,
    job_name_prefix: str,
    *,
    created_after: datetime | None = None,
    status: str | None = None,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """This deployment's training jobs by name (ListTrainingJobs, not the Search index), each described and with its
    tags, like a Search result; only those of `run_id` when given (by their checkpoint prefix, which Plan puts under
    `checkpoints/<run id>/` for every attempt). `created_after` and `status` narrow the listing."""
    arguments: dict[str, Any] = {"NameContains": f"{job_name_prefix}-", "MaxResults": LIST_PAGE_SIZE}
    if created_after is not None:
        arguments["CreationTimeAfter"] = created_after - LIST_TIME_MARGIN
    if status is not None:
        arguments["StatusEquals"] = status
    jobs = []
    for page in sagemaker.get_paginator("list_training_jobs").paginate(**arguments):
        for summary in page.get("TrainingJobSummaries", []):
            name = summary.get("TrainingJobName", "")
            if not name.startswith(f"{job_name_prefix}-"):
                continue
            try:
                description = sagemaker.describe_training_job(TrainingJobName=name)
            except ClientError as exc:
                if training_job.is_not_found(exc):
                    continue
                raise
            tags = sagemaker.list_tags(ResourceArn=description["TrainingJobArn"]).get("Tags", [])
            job = {**description, "Tags": tags}
            if run_id is None or job_run_id(job) == run_id:
                jobs.append(job)
    return jobs


def job_run_id(job: Mapping[str, Any]) -> str | None:
    """The run a job belongs to: its `run_id` tag, else the run of its checkpoint prefix (`checkpoints/<run id>/`)."""
    if run_id := _tags(job).get("run_id"):
        return run_id
    uri = (job.get("CheckpointConfig") or {}).get("S3Uri", "")
    found = _CHECKPOINT_RUN.search(uri)
    return found.group(1) if found else None


_CHECKPOINT_RUN = re.compile(r"^s3://[^/]+/checkpoints/([^/]+)/")


def find_all_run_jobs(
    sagemaker: Any, run_id: str, job_name_prefix: str, created_after: datetime | None = None
) -> list[dict[str, Any]]:
    """The run's jobs by tag (Search) and by name (ListTrainingJobs), merged by name."""
    jobs = {job["TrainingJobName"]: job for job in find_run_jobs(sagemaker, run_id, job_name_prefix)}
    for job in list_deployment_jobs(sagemaker, job_name_prefix, created_after=created_after, run_id=run_id):
        jobs.setdefault(job["TrainingJobName"], job)
    return [jobs[name] for name in sorted(jobs)]


def _tags(job: Mapping[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in job.get("Tags", []) if "Key" in tag and "Value" in tag}


def _already_ended(exc: ClientError) -> bool:
    # StopTrainingJob on a job that is Completed/Failed/Stopped(/Stopping): ValidationException naming its status.
    error = exc.response.get("Error", {})
    return error.get("Code") == "ValidationException" and "status" in str(error.get("Message", "")).lower()


def stop_running_jobs(sagemaker: Any, jobs: list[dict[str, Any]]) -> list[str]:
    """StopTrainingJob for every job still InProgress; the names actually stopped. Ended jobs are left alone."""
    stopped = []
    for job in jobs:
        name = job["TrainingJobName"]
        if job.get("TrainingJobStatus") != "InProgress":
            continue
        try:
            sagemaker.stop_training_job(TrainingJobName=name)
            stopped.append(name)
        except ClientError as exc:
            if not _already_ended(exc):
                raise
            logger.info("training job %s had already ended: %s", name, exc)
    return stopped


def wait_until_ended(
    sagemaker: Any,
    names: list[str],
    wait_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll_seconds: float = STOP_POLL_SECONDS,
) -> dict[str, dict[str, Any]]:
    """Describe each job until it has ended or `wait_seconds` have passed; the last raw description of each."""
    deadline = clock() + wait_seconds
    described: dict[str, dict[str, Any]] = {}
    pending = list(names)
    while True:
        for name in pending:
            described[name] = sagemaker.describe_training_job(TrainingJobName=name)
        pending = [n for n in pending if described[n].get("TrainingJobStatus") in RUNNING_STATUSES]
        if not pending or clock() >= deadline:
            return described
        sleep(min(poll_seconds, max(0.0, deadline - clock())))


# --------------------------------------------------------------------------------------------------------------------
# Ledger rows
# --------------------------------------------------------------------------------------------------------------------
def job_spec(job: Mapping[str, Any]) -> ledger.LedgerJob:
    """The fields `ledger.job_row` needs (a `LedgerJob`), rebuilt from the training job itself (request, tags).

    Launch tags each job with Plan's price (`hourly_price_usd`/`price_source`); a job without those tags gets the
    catalog's on-demand price (price_source `catalog`), which is what Plan falls back to as well.
    """
    tags = _tags(job)
    resources = job.get("ResourceConfig") or {}
    instance_type = resources.get("InstanceType", "")
    count = int(resources.get("InstanceCount") or 1)
    if training_job.PRICE_TAG in tags:
        price = cost.to_decimal(tags[training_job.PRICE_TAG])
        source = tags.get(training_job.PRICE_SOURCE_TAG, cost.PRICE_SOURCE_API)
    elif instance_type in catalog.INSTANCES:
        price, source = cost.to_decimal(catalog.INSTANCES[instance_type].hourly_price_usd), cost.PRICE_SOURCE_CATALOG
    else:
        price, source = cost.to_decimal(0), "unknown"
    hyperparameters = job.get("HyperParameters") or {}
    try:
        model_id = json.loads(hyperparameters.get("model_id", '""'))
    except ValueError:
        model_id = hyperparameters.get("model_id", "")
    runtime = int((job.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or 0)
    return {
        "run_id": tags.get("run_id", ""),
        "job_name": job["TrainingJobName"],
        "model_key": tags.get("model", model_id),
        "model_id": model_id,
        "approach": tags.get("approach", ""),
        "instance_type": instance_type,
        "instance_count": count,
        "spot": bool(job.get("EnableManagedSpotTraining")),
        "hourly_price_usd": price,
        "price_source": source,
        "estimated_max_cost_usd": cost.estimated_max_cost_usd(runtime, count, price),
    }


def status_so_far(description: Mapping[str, Any], reason: str, stopped_by_cleanup: bool, now: datetime) -> dict:
    """The status to record for a job: SageMaker's own once it has ended; the cost so far if it is still stopping.

    A job Cleanup stopped is recorded `Stopped` with the execution's reason. One still `Stopping` at the deadline
    has no billable time yet: the elapsed training time stands in for it (billable <= training, so never less than
    the bill), and the reason says so.
    """
    status = training_job.normalise_description(dict(description))
    if status["ended"]:
        if stopped_by_cleanup:
            status["failure_reason"] = reason
        return status
    started = description.get("TrainingStartTime")
    elapsed = max(0, int((now - started).total_seconds())) if isinstance(started, datetime) else 0
    note = f"{reason} (still {status['status']} when recorded: cost so far estimated from {elapsed} s of training)"
    return {
        **status,
        "status": "Stopped",
        "ended": True,
        "training_seconds": elapsed,
        "billable_seconds": elapsed,
        "failure_reason": note[: training_job.FAILURE_REASON_MAX],
        "end_time": now.isoformat(),
    }


def record_jobs(
    jobs: list[dict[str, Any]],
    stopped: list[str],
    reason: str,
    config: settings.CleanupSettings,
    *,
    sagemaker: Any,
    dynamodb: Any,
    now: Callable[[], datetime],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> list[dict[str, Any]]:
    """Wait (bounded) for `jobs` to end, then write a ledger row for each with its cost so far; the rows as JSON.
    A job in `stopped` was stopped by the caller and is recorded `Stopped` with `reason`."""
    described = wait_until_ended(
        sagemaker, [job["TrainingJobName"] for job in jobs], config.stop_wait_seconds, sleep=sleep, clock=clock
    )
    recorded = []
    for job in jobs:
        name = job["TrainingJobName"]
        status = status_so_far(described.get(name, job), reason, name in stopped, now())
        row = ledger.job_row(job_spec(job), status)
        ledger.put_row(dynamodb, config.table_name, row)
        recorded.append(ledger.to_json_value(row))
        logger.info("job recorded", extra={"job_name": name, "status": row["status"]})
    return recorded


# --------------------------------------------------------------------------------------------------------------------
# Report and notification
# --------------------------------------------------------------------------------------------------------------------
def write_partial_report(s3: Any, bucket: str, end: ExecutionEnd, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """report.json, report.md and chart.svg, marked partial (report.md opens with the banner that says why); the
    document and its URIs."""
    document = report.build_report(end.run_id, rows)
    document.update(
        {"partial": True, "execution_name": end.name, "execution_status": end.status, "partial_reason": end.reason}
    )
    json_uri, md_uri = report.write_report(s3, bucket, document)
    return {"document": document, "report_json_uri": json_uri, "report_md_uri": md_uri}


def notification(end: ExecutionEnd, stopped: list[str], recorded: list[dict[str, Any]], md_uri: str | None) -> str:
    """The message published to the run topic (at most report.MESSAGE_MAX_BYTES)."""
    total = sum(cost.to_decimal(row["cost_usd"]) for row in recorded)
    parts = [f"Fine-tuning run {end.run_id} did not finish: {end.reason}"]
    parts.append(
        f"Cleanup stopped {len(stopped)} training job(s) and recorded {len(recorded)} job(s) with their cost so far "
        f"(${total:.4f})."
    )
    if stopped:
        parts.append("Stopped: " + ", ".join(stopped) + ".")
    if md_uri:
        parts.append(f"Partial report: {md_uri}")
    message = "\n".join(parts).encode()
    if len(message) <= report.MESSAGE_MAX_BYTES:
        return message.decode()
    return message[: report.MESSAGE_MAX_BYTES - 3].decode(errors="ignore") + "..."


# --------------------------------------------------------------------------------------------------------------------
# The whole cleanup
# --------------------------------------------------------------------------------------------------------------------
def cleanup_run(
    end: ExecutionEnd,
    config: settings.CleanupSettings,
    *,
    sagemaker: Any,
    dynamodb: Any,
    s3: Any,
    sns: Any,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Stop, record, report and notify for one ended execution; a JSON summary of what was done."""
    run_id = end.run_id
    started = clock()
    jobs: dict[str, dict[str, Any]] = {}
    stopped: list[str] = []
    recorded: list[dict[str, Any]] = []
    summary_exists = False
    for sweep in range(MAX_SWEEPS):
        if sweep > 0:
            # Look again once an in-flight Launch has certainly returned (resweep_seconds after Cleanup started).
            sleep(max(0.0, config.resweep_seconds - (clock() - started)))
        found = find_all_run_jobs(sagemaker, run_id, config.job_name_prefix, end.start_date)
        new = [job for job in found if job["TrainingJobName"] not in jobs]
        if sweep > 0 and not new:
            break
        jobs.update({job["TrainingJobName"]: job for job in new})
        stopped_now = stop_running_jobs(sagemaker, new)
        stopped += stopped_now
        items = ledger.run_items(dynamodb, config.table_name, run_id)
        recorded_names = {item.get("job_name") for item in items if str(item.get("sk", "")).startswith("JOB#")}
        summary_exists = any(item.get("sk") == ledger.SUMMARY_SK and not item.get("partial") for item in items)
        unrecorded = [job for job in new if job["TrainingJobName"] not in recorded_names]
        recorded += record_jobs(
            unrecorded,
            stopped_now,
            end.reason,
            config,
            sagemaker=sagemaker,
            dynamodb=dynamodb,
            now=now,
            sleep=sleep,
            clock=clock,
        )
        if sweep > 0:
            logger.warning("cleanup found jobs on a later look", extra={"jobs": [j["TrainingJobName"] for j in new]})

    md_uri = None
    if jobs and not summary_exists and end.status in LIFECYCLE_STATUSES:
        rows = ledger.run_rows(dynamodb, config.table_name, run_id)
        written = write_partial_report(s3, config.bucket_name, end, rows)
        md_uri = written["report_md_uri"]
        fields = report.summary_fields(written["document"], written["report_json_uri"], md_uri)
        fields.update({"partial": True, "execution_status": end.status, "partial_reason": end.reason})
        ledger.put_row(dynamodb, config.table_name, ledger.summary_row(run_id, fields))

    message = notification(end, stopped, recorded, md_uri)
    subject = f"Fine-tuning run {end.status}: {run_id}"[:SUBJECT_MAX]
    sns.publish(TopicArn=config.topic_arn, Subject=subject, Message=message)
    return {
        "run_id": run_id,
        "execution_status": end.status,
        "reason": end.reason,
        "jobs_found": sorted(jobs),
        "stopped": stopped,
        "recorded": [row["job_name"] for row in recorded],
        "report_md_uri": md_uri,
        "message": message,
    }
