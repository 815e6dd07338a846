"""Training backends for the local account: a scripted one (workflow tests) and the real one (`make demo`)."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from finetune.local.services import ServiceError, utcnow
from lambdas.catalog import parse_metric_lines

ENDED = {"Completed", "Failed", "Stopped"}


@dataclass(frozen=True)
class ScriptedOutcome:
    """How a scripted job ends, after `polls_in_progress` describes that say InProgress/Training."""

    status: str = "Completed"
    secondary_status: str = "Completed"
    training_seconds: int = 600
    billable_seconds: int = 600
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str = ""
    polls_in_progress: int = 1
    # When set, CreateTrainingJob itself fails with this error code (e.g. ResourceLimitExceeded).
    launch_error: str = ""


def describe_fields(
    status: str,
    secondary_status: str,
    *,
    started: Any,
    ended: Any | None,
    training_seconds: int,
    billable_seconds: int,
    metrics: dict[str, float],
    failure_reason: str = "",
) -> dict[str, Any]:
    """The DescribeTrainingJob fields a running or ended job has, shaped as SageMaker returns them."""
    fields: dict[str, Any] = {
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary_status,
        "TrainingStartTime": started,
        "FinalMetricDataList": [
            {"MetricName": name, "Value": float(value), "Timestamp": ended or started}
            for name, value in metrics.items()
        ],
    }
    if ended is not None:
        fields["TrainingEndTime"] = ended
        # SageMaker reports both times only once a job has ended; failed jobs may lack them (then 0 here).
        fields["TrainingTimeInSeconds"] = training_seconds
        fields["BillableTimeInSeconds"] = billable_seconds
    if failure_reason:
        fields["FailureReason"] = failure_reason[:1024]
    return fields


class ScriptedTrainingBackend:
    """Jobs end as `outcome_for(request)` says, without training anything."""

    def __init__(self, outcome_for: Callable[[dict[str, Any]], ScriptedOutcome]) -> None:
        self._outcome_for = outcome_for
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create(self, request: dict[str, Any]) -> None:
        outcome = self._outcome_for(request)
        if outcome.launch_error:
            raise ServiceError(outcome.launch_error, outcome.failure_reason or outcome.launch_error)
        with self._lock:
            self._jobs[request["TrainingJobName"]] = {
                "outcome": outcome,
                "polls": 0,
                "started": utcnow(),
            }

    def describe(self, job_name: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_name)
            if job is None:
                return None
            outcome: ScriptedOutcome = job["outcome"]
            job["polls"] += 1
            if job["polls"] <= outcome.polls_in_progress:
                return describe_fields(
                    "InProgress",
                    "Training",
                    started=job["started"],
                    ended=None,
                    training_seconds=0,
                    billable_seconds=0,
                    metrics={},
                )
            return describe_fields(
                outcome.status,
                outcome.secondary_status,
                started=job["started"],
                ended=job["started"] + timedelta(seconds=outcome.training_seconds),
                training_seconds=outcome.training_seconds,
                billable_seconds=outcome.billable_seconds,
                metrics=outcome.metrics,
                failure_reason=outcome.failure_reason,
            )

    def stop(self, job_name: str) -> None:
        with self._lock:
            job = self._jobs[job_name]
            job["outcome"] = ScriptedOutcome(status="Stopped", secondary_status="Stopped", polls_in_progress=0)


@dataclass
class _LocalJob:
    request: dict[str, Any]
    directory: Path
    state: str = "Starting"  # Starting (queued for the one local "instance") → Training → ended status
    started: Any = None
    ended: Any = None
    step: int | None = None
    loss: float | None = None
    return_code: int | None = None
    failure_reason: str = ""
    log: list[str] = field(default_factory=list)
    stop_requested: bool = False
    process: subprocess.Popen | None = None


class SubprocessTrainingBackend:
    """Runs each job's `train.py` as a subprocess with SageMaker's contract, one job at a time (one local
    "instance": later jobs wait in Starting, as spot jobs wait for capacity).

    As in the DLC: the code tar.gz named by `sagemaker_submit_directory` is downloaded and extracted, channels are
    downloaded to `input/data/<channel>`, hyperparameters are JSON-decoded and passed as `--name value`, and
    `SM_*` variables point at the job's folders; `CheckpointConfig.LocalPath` maps to the job's checkpoint folder.
    `model_paths` plays the Hub: model ids resolve to local folders. `extra_hyperparameters` are added to every
    job (the BERTScore encoder's local path, since the Hub's default encoder cannot be downloaded here).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        model_paths: dict[str, str],
        extra_hyperparameters: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.work_dir = work_dir
        self.model_paths = model_paths
        self.extra_hyperparameters = dict(extra_hyperparameters or {})
        self.python = python
        self.jobs: dict[str, _LocalJob] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run_queue, name="local-training", daemon=True)
        self._worker.start()

    # -- TrainingBackend ------------------------------------------------------------------------------------------
    def create(self, request: dict[str, Any]) -> None:
        name = request["TrainingJobName"]
        directory = self.work_dir / name
        self._prepare(request, directory)
        with self._lock:
            self.jobs[name] = _LocalJob(request=request, directory=directory)
        self._queue.put(name)

    def describe(self, job_name: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.jobs.get(job_name)
            if job is None:
                return None
            ended = job.state in ENDED
            seconds = round((job.ended - job.started).total_seconds()) if ended and job.started else 0
            status = job.state if ended else "InProgress"
            secondary = {"Stopped": "Stopped", "Failed": "Failed", "Completed": "Completed"}.get(job.state, job.state)
            metrics = parse_metric_lines("\n".join(job.log)) if ended else {}
            return describe_fields(
                status,
                secondary,
                started=job.started or utcnow(),
                ended=job.ended if ended else None,
                # No spot discount locally: billable = training time. The cost is an estimate for the catalog
                # instance type, computed exactly as for a real job.
                training_seconds=seconds,
                billable_seconds=seconds,
                metrics=metrics,
                failure_reason=job.failure_reason,
            )

    def stop(self, job_name: str) -> None:
        with self._lock:
            job = self.jobs[job_name]
            job.stop_requested = True
            if job.process is not None:
                # SageMaker sends SIGTERM and gives the script 120 s to checkpoint.
                job.process.send_signal(signal.SIGTERM)

    # -- progress for the terminal --------------------------------------------------------------------------------
    def progress(self) -> list[tuple[str, str, int | None, float | None]]:
        """(job name, state, last step, last loss) of every job, in launch order."""
        with self._lock:
            return [(name, job.state, job.step, job.loss) for name, job in self.jobs.items()]

    def wait_idle(self) -> None:
        """Block until every queued job has ended."""
        self._queue.join()

    # -- internals ------------------------------------------------------------------------------------------------
    def _prepare(self, request: dict[str, Any], directory: Path) -> None:
        import boto3

        s3 = boto3.client("s3")
        hyperparameters = {k: json.loads(v) for k, v in request.get("HyperParameters", {}).items()}
        code_dir = directory / "code"
        code_dir.mkdir(parents=True, exist_ok=True)
        bucket, key = _split_s3(hyperparameters["sagemaker_submit_directory"])
        with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()), mode="r:gz") as tar:
            tar.extractall(code_dir, filter="data")
        for channel in request["InputDataConfig"]:
            target = directory / "input" / "data" / channel["ChannelName"]
            target.mkdir(parents=True, exist_ok=True)
            bucket, prefix = _split_s3(channel["DataSource"]["S3DataSource"]["S3Uri"])
            for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                relative = item["Key"][len(prefix) :].lstrip("/") or Path(item["Key"]).name
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                (target / relative).write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        for folder in ("model", "output/data", "checkpoints"):
            (directory / folder).mkdir(parents=True, exist_ok=True)

    def _command(self, job: _LocalJob) -> tuple[list[str], dict[str, str]]:
        request = job.request
        hyperparameters = {k: json.loads(v) for k, v in request.get("HyperParameters", {}).items()}
        program = hyperparameters.get("sagemaker_program", "train.py")
        checkpoint_local = request.get("CheckpointConfig", {}).get("LocalPath", "/opt/ml/checkpoints")
        arguments: list[str] = []
        for name, value in {**hyperparameters, **self.extra_hyperparameters}.items():
            if name.startswith("sagemaker_"):
                continue
            if name == "model_id":
                value = self.model_paths.get(value, value)
            if value == checkpoint_local:
                value = str(job.directory / "checkpoints")
            arguments += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
        environment = {
            **os.environ,
            "SM_CHANNEL_TRAIN": str(job.directory / "input" / "data" / "train"),
            "SM_CHANNEL_TEST": str(job.directory / "input" / "data" / "test"),
            "SM_MODEL_DIR": str(job.directory / "model"),
            "SM_OUTPUT_DATA_DIR": str(job.directory / "output" / "data"),
            "SM_OUTPUT_DIR": str(job.directory / "output"),
            "SM_NUM_GPUS": "0",
            "SM_CURRENT_HOST": "algo-1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        return [self.python, str(job.directory / "code" / program), *arguments], environment

    def _run_queue(self) -> None:
        while True:
            name = self._queue.get()
            try:
                self._run(self.jobs[name])
            finally:
                self._queue.task_done()

    def _run(self, job: _LocalJob) -> None:
        command, environment = self._command(job)
        with self._lock:
            if job.stop_requested:
                job.state, job.started, job.ended = "Stopped", utcnow(), utcnow()
                return
            job.state, job.started = "Training", utcnow()
        log_path = job.directory / "training.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                command,
                cwd=job.directory / "code",
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            with self._lock:
                job.process = process
            assert process.stdout is not None
            for line in process.stdout:
                log_file.write(line)
                self._observe(job, line.rstrip("\n"))
            return_code = process.wait()
        with self._lock:
            job.return_code, job.ended, job.process = return_code, utcnow(), None
            if job.stop_requested:
                job.state = "Stopped"
            elif return_code == 0:
                job.state = "Completed"
            else:
                job.state = "Failed"
                job.failure_reason = _failure_reason(job, return_code)

    def _observe(self, job: _LocalJob, line: str) -> None:
        progress = _PROGRESS.search(line)
        with self._lock:
            job.log.append(line)
            if progress:
                job.step, job.loss = int(progress.group(1)), float(progress.group(2))


_PROGRESS = re.compile(r"\btrain_step=(\d+);\s*train_loss=([-+0-9.eE]+|nan|inf);")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _failure_reason(job: _LocalJob, return_code: int) -> str:
    """As SageMaker: the script's own `failure` file if it wrote one, else the exit code and the log's tail."""
    failure_file = job.directory / "output" / "failure"
    if failure_file.is_file() and failure_file.read_text().strip():
        message = failure_file.read_text().strip()
    else:
        message = "\n".join(job.log[-5:])
    return f'AlgorithmError: ExecuteUserScriptError:\nExitCode {return_code}\nErrorMessage "{message}"'[:1024]
