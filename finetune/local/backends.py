"""Training backends for the local account: a scripted one (workflow tests) and the real one (`make demo`)."""

from __future__ import annotations

import contextlib
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from finetune.local.services import ServiceError, model_artifact_uri, utcnow
from lambdas import naming
from lambdas.catalog import parse_metric_lines, training_quota_name

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
    # When set, every DescribeTrainingJob of the job fails with this error code (a 400, so botocore does not retry)
    # after the first `describe_error_after` calls, which answer as usual.
    describe_error: str = ""
    describe_error_after: int = 0
    # When set, the job's wall time by SageMaker phase ({"waiting", "downloading", "training", "uploading"}: seconds),
    # reported as SecondaryStatusTransitions (Starting, Downloading, Training, Uploading) the way SageMaker does;
    # else the emulated account's default (Starting until the job started, then Training).
    time_split: dict[str, float] | None = None


# SageMaker's SecondaryStatus for each phase of the time split (lambdas/training_job.TIME_SPLIT_PHASES, inverted).
_PHASE_STATUSES = (
    ("waiting", "Starting", "Preparing the instances for training"),
    ("downloading", "Downloading", "Downloading input data"),
    ("training", "Training", "Training image download completed. Training in progress."),
    ("uploading", "Uploading", "Uploading generated training model"),
)


def phase_transitions(
    created: datetime, time_split: dict[str, float], final_status: str | None
) -> list[dict[str, Any]]:
    """SecondaryStatusTransitions of a job that spent `time_split` seconds in each phase from `created` (phases of
    0 s are left out, as SageMaker lists only the statuses a job went through), then `final_status` (None: still
    in its last phase, whose EndTime is then absent)."""
    transitions: list[dict[str, Any]] = []
    clock = created
    for phase, status, message in _PHASE_STATUSES:
        seconds = float(time_split.get(phase) or 0)
        if seconds <= 0:
            continue
        transitions.append(
            {
                "Status": status,
                "StartTime": clock,
                "EndTime": clock + timedelta(seconds=seconds),
                "StatusMessage": message,
            }
        )
        clock += timedelta(seconds=seconds)
    if final_status is None:
        if transitions:
            transitions[-1].pop("EndTime")
        return transitions
    transitions.append({"Status": final_status, "StartTime": clock, "EndTime": clock, "StatusMessage": final_status})
    return transitions


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


# -- Failure injection (demo only) ------------------------------------------------------------------------------------
# An experiment's `inject_failure` (execution input; Plan refuses it outside the offline runner) reaches the job as a
# tag (lambdas/training_job.tags). The backend then fails the job's first attempt as SageMaker would, with the shape
# of SageMaker's own texts, so Classify and Remedy see what they would see in AWS; the remedied attempt runs as
# normal. user_code and data failures fail every attempt (no remedy fixes them); spot_wait fails every spot attempt.
INJECT_FAILURE_TAG = "inject_failure"
ATTEMPT_TAG = "attempt"
INJECTABLE_FAILURES = ("quota", "capacity", "spot_wait", "oom", "runtime", "user_code", "data", "throttled")


def _tags(request: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in request.get("Tags", [])}


def injected_failure(request: dict[str, Any]) -> ScriptedOutcome | None:
    """How the job of `request` fails by its `inject_failure` tag, or None when it runs as normal."""
    tags = _tags(request)
    kind = tags.get(INJECT_FAILURE_TAG)
    if not kind:
        return None
    if kind not in INJECTABLE_FAILURES:
        raise ServiceError("ValidationException", f"unknown inject_failure {kind!r}")
    first_attempt = tags.get(ATTEMPT_TAG, "1") == "1"
    spot = bool(request.get("EnableManagedSpotTraining"))
    instance_type = request["ResourceConfig"]["InstanceType"]
    count = int(request["ResourceConfig"]["InstanceCount"])
    quota = training_quota_name(instance_type, spot)
    outcomes = {
        "quota": ScriptedOutcome(
            launch_error="ResourceLimitExceeded",
            failure_reason=(
                f"The account-level service limit '{quota}' is 0 Instances, with current "
                f"utilization of 0 Instances and a request delta of {count} Instances. Please use AWS Service Quotas "
                "to request an increase for this quota. If AWS Service Quotas is not available, contact AWS support "
                "to request an increase for this quota."
            ),
        ),
        "throttled": ScriptedOutcome(launch_error="ThrottlingException", failure_reason="Rate exceeded"),
        "capacity": ScriptedOutcome(
            status="Failed",
            secondary_status="Failed",
            training_seconds=0,
            billable_seconds=0,
            failure_reason="CapacityError: Unable to provision requested ML compute capacity. Please retry using a "
            "different ML instance type.",
            polls_in_progress=0,
        ),
        "spot_wait": ScriptedOutcome(
            status="Stopped",
            secondary_status="MaxWaitTimeExceeded",
            training_seconds=180,
            billable_seconds=60,
            failure_reason="",
            polls_in_progress=0,
        ),
        "oom": ScriptedOutcome(
            status="Failed",
            secondary_status="Failed",
            training_seconds=120,
            billable_seconds=120,
            failure_reason=(
                'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "torch.OutOfMemoryError: CUDA out '
                "of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 22.06 GiB of which 1.21 GiB "
                'is free."\nCommand "/opt/conda/bin/python3.12 train.py"'
            ),
            polls_in_progress=0,
        ),
        "runtime": ScriptedOutcome(
            status="Stopped",
            secondary_status="MaxRuntimeExceeded",
            training_seconds=300,
            billable_seconds=300,
            failure_reason="",
            polls_in_progress=0,
        ),
        "user_code": ScriptedOutcome(
            status="Failed",
            secondary_status="Failed",
            training_seconds=60,
            billable_seconds=60,
            failure_reason=(
                'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "Traceback (most recent call '
                "last):\n  File \"/opt/ml/code/train.py\", line 88, in <module>\nNameError: name 'tokenzier' is "
                'not defined"'
            ),
            polls_in_progress=0,
        ),
        "data": ScriptedOutcome(
            status="Failed",
            secondary_status="Failed",
            training_seconds=60,
            billable_seconds=60,
            failure_reason="AlgorithmError: DataError: the train channel needs at least 2 distinct labels, found "
            "['card_arrival']",
            polls_in_progress=0,
        ),
    }
    fails = {
        "user_code": True,
        "data": True,
        "spot_wait": spot,
    }.get(kind, first_attempt)
    return outcomes[kind] if fails else None


class ScriptedTrainingBackend:
    """Jobs end as `outcome_for(request)` says, without training anything."""

    def __init__(self, outcome_for: Callable[[dict[str, Any]], ScriptedOutcome]) -> None:
        self._outcome_for = outcome_for
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create(self, request: dict[str, Any]) -> None:
        outcome = injected_failure(request) or self._outcome_for(request)
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
            job["describes"] = job.get("describes", 0) + 1
            if outcome.describe_error and job["describes"] > outcome.describe_error_after:
                raise ServiceError(outcome.describe_error, f"DescribeTrainingJob {job_name} cannot be answered")
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
            if outcome.time_split is None:
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
            # The job started training after waiting for its instances and ended after its upload.
            split = outcome.time_split
            return {
                **describe_fields(
                    outcome.status,
                    outcome.secondary_status,
                    started=job["started"] + timedelta(seconds=float(split.get("waiting") or 0)),
                    ended=job["started"] + timedelta(seconds=sum(float(v or 0) for v in split.values())),
                    training_seconds=outcome.training_seconds,
                    billable_seconds=outcome.billable_seconds,
                    metrics=outcome.metrics,
                    failure_reason=outcome.failure_reason,
                ),
                "SecondaryStatusTransitions": phase_transitions(job["started"], split, outcome.secondary_status),
            }

    def stop(self, job_name: str) -> None:
        with self._lock:
            job = self._jobs[job_name]
            job["outcome"] = ScriptedOutcome(status="Stopped", secondary_status="Stopped", polls_in_progress=0)


@dataclass
class _LocalJob:
    request: dict[str, Any]
    directory: Path  # the job's SAGEMAKER_BASE_DIR: what /opt/ml is inside the training container
    state: str = "Starting"  # Starting (queued for the one local "instance") → Training → (Stopping) → ended status
    started: Any = None
    ended: Any = None
    step: int | None = None
    loss: float | None = None
    return_code: int | None = None
    failure_reason: str = ""
    log: list[str] = field(default_factory=list)
    stop_requested: bool = False
    process: subprocess.Popen | None = None
    secondary_status: str = ""  # when it differs from `state` (an injected MaxWaitTimeExceeded, MaxRuntimeExceeded)
    created: Any = None  # CreateTrainingJob
    exited: Any = None  # the container's processes ended; SageMaker's Uploading follows until `ended`

    def time_split(self) -> dict[str, float] | None:
        """Seconds queued for the local "instance" (SageMaker's waiting), in the container (training) and uploading
        the model, once the job ran to its end; None before (or for a job that never ran)."""
        if None in (self.created, self.started, self.exited, self.ended):
            return None
        return {
            "waiting": (self.started - self.created).total_seconds(),
            "training": (self.exited - self.started).total_seconds(),
            "uploading": (self.ended - self.exited).total_seconds(),
        }


# What the Hugging Face PyTorch training DLC sets in its image (aws/deep-learning-containers,
# pytorch/training/docker/2.9/py3/cu130/Dockerfile.gpu, stage `sagemaker`): the toolkit's `train` command hands the
# job to this framework module, which picks the launcher (plain process, or torchrun when
# `sagemaker_torch_distributed_enabled` is set) and runs the user script.
SAGEMAKER_TRAINING_MODULE = "sagemaker_pytorch_container.training:main"
# SageMaker names the containers of a job algo-1 … algo-N; the local backend is one instance.
LOCAL_HOST = "algo-1"
# StopTrainingJob (and a spot reclaim) leaves the container 120 s before it is killed.
SAGEMAKER_STOP_GRACE_SECONDS = 120.0


class SubprocessTrainingBackend:
    """Runs each job through the SageMaker training toolkit (`sagemaker-training`) exactly as the Hugging Face
    PyTorch DLC does, one job at a time (one local "instance": later jobs wait in Starting, as spot jobs wait for
    capacity).

    For each job the backend writes what SageMaker writes into the container's `/opt/ml` — here a per-job folder
    named by `SAGEMAKER_BASE_DIR` —: `input/config/hyperparameters.json` (the request's HyperParameters, still
    JSON-encoded strings), `inputdataconfig.json`, `resourceconfig.json`, the channels under `input/data/<channel>`,
    and the `CheckpointConfig.LocalPath` folder. Then it starts the DLC's entry point, the toolkit's `train` command
    (`python -m sagemaker_training.cli.train`) with `SAGEMAKER_TRAINING_MODULE` as the image sets it. The toolkit
    itself extracts the code, checks `requirements.txt`, JSON-decodes the hyperparameters, builds the script's argv
    and `SM_*` environment and launches `train.py`; so what the container does with our hyperparameters is what
    this backend does.

    Deviations from SageMaker, each because the toolkit runs in its own process on this machine:
    - `sagemaker_submit_directory` is rewritten to a local copy of the code tar.gz (downloaded here from the
      in-process moto S3, which the toolkit's own boto3 cannot see). The toolkit accepts local tarballs
      (`files.download_and_extract`), so only that one value, and the script's `SM_MODULE_DIR`, differ.
    - `model_paths` plays the Hub: `model_id` values resolve to local folders. `extra_hyperparameters` are added to
      every job (the BERTScore encoder's local path, since the default encoder cannot be downloaded here). A
      hyperparameter equal to `CheckpointConfig.LocalPath` is mapped to the job's checkpoint folder, which is not
      synced to `CheckpointConfig.S3Uri`.
    - The toolkit installs `requirements.txt` with pip; here pip runs with `PIP_NO_INDEX` and `PIP_DRY_RUN`, so it
      verifies that the local environment already satisfies the requirements (the job fails with the toolkit's
      `InstallRequirementsError` when it does not) and never changes that environment.
    - `SM_STUDIO_LOCAL_MODE=true` (the toolkits' own switch for local runs) skips their wait for `algo-1` to
      resolve in DNS; there is no container network here.
    - The instance is this CPU: `resourceconfig.json` lists one host whatever the InstanceCount, and the toolkit
      finds no GPU, so it launches one process (torchrun with one process when distribution is enabled).
    - Stopping: SageMaker sends SIGTERM to the container's first process, the image's bash entry script
      (`start_with_right_hostname.sh`), which passes it on to neither the toolkit nor the script (toolkit issues
      #125, #173; aws/deep-learning-containers#632), and kills the container 120 s later. So `stop` sends no
      SIGTERM: the job is Stopping for `stop_grace_seconds`, then its whole process group is killed. A script
      that relies on a SIGTERM save loses its progress here as on SageMaker.

    As SageMaker, a completed job's `/opt/ml/model` is uploaded before the job reports Completed, where
    DescribeTrainingJob's `ModelArtifacts` names it: its files one by one under `<S3OutputPath>/<job>/output/model/`
    with the request's CompressionType NONE (the app's), `<S3OutputPath>/<job>/output/model.tar.gz` with GZIP.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        model_paths: dict[str, str],
        extra_hyperparameters: dict[str, str] | None = None,
        python: str = sys.executable,
        stop_grace_seconds: float = SAGEMAKER_STOP_GRACE_SECONDS,
    ) -> None:
        self.work_dir = work_dir
        self.model_paths = model_paths
        self.extra_hyperparameters = dict(extra_hyperparameters or {})
        self.python = python
        self.stop_grace_seconds = stop_grace_seconds
        self.jobs: dict[str, _LocalJob] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run_queue, name="local-training", daemon=True)
        self._worker.start()

    # -- TrainingBackend ------------------------------------------------------------------------------------------
    def create(self, request: dict[str, Any]) -> None:
        name = request["TrainingJobName"]
        injected = injected_failure(request)
        if injected is not None:
            self._create_injected(request, injected)
            return
        directory = self.work_dir / name
        self._prepare(request, directory)
        with self._lock:
            self.jobs[name] = _LocalJob(request=request, directory=directory, created=utcnow())
        self._queue.put(name)

    def _create_injected(self, request: dict[str, Any], outcome: ScriptedOutcome) -> None:
        """A job that fails as injected (demo only) without training: refused at launch, or ended at once with the
        injected status, reason and (simulated) billable time."""
        if outcome.launch_error:
            raise ServiceError(outcome.launch_error, outcome.failure_reason or outcome.launch_error)
        started = utcnow()
        with self._lock:
            self.jobs[request["TrainingJobName"]] = _LocalJob(
                request=request,
                directory=self.work_dir / request["TrainingJobName"],
                state=outcome.status,
                started=started,
                ended=started + timedelta(seconds=outcome.billable_seconds),
                failure_reason=outcome.failure_reason,
                secondary_status=outcome.secondary_status,
            )

    def describe(self, job_name: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.jobs.get(job_name)
            if job is None:
                return None
            ended = job.state in ENDED
            seconds = round((job.ended - job.started).total_seconds()) if ended and job.started else 0
            status = job.state if ended or job.state == "Stopping" else "InProgress"
            metrics = parse_metric_lines("\n".join(job.log)) if ended else {}
            fields = describe_fields(
                status,
                job.secondary_status or job.state,
                started=job.started or utcnow(),
                ended=job.ended if ended else None,
                # No spot discount locally: billable = training time. The cost is an estimate for the catalog
                # instance type, computed exactly as for a real job.
                training_seconds=seconds,
                billable_seconds=seconds,
                metrics=metrics,
                failure_reason=job.failure_reason,
            )
            split = job.time_split() if ended else None
            if split is not None:
                fields["SecondaryStatusTransitions"] = phase_transitions(
                    job.created, split, job.secondary_status or job.state
                )
            return fields

    def stop(self, job_name: str) -> None:
        with self._lock:
            job = self.jobs[job_name]
            if job.state in ENDED or job.stop_requested:
                return
            job.stop_requested = True
            if job.state == "Starting":
                return  # still queued: it never starts (see _run)
            job.state = "Stopping"
            if job.process is not None:
                self._start_grace_period(job)
            # else _run is starting the container right now and starts the grace period once it exists.

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
        """Write the job's /opt/ml tree as SageMaker does before it starts the container."""
        import boto3

        s3 = boto3.client("s3")
        config_dir = directory / "input" / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        submit_directory = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
        local_code = self._local_copy(s3, submit_directory)
        hyperparameters = self._hyperparameters(request, directory, local_code)
        (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
        (config_dir / "inputdataconfig.json").write_text(json.dumps(_input_data_config(request), indent=2))
        (config_dir / "resourceconfig.json").write_text(json.dumps(_resource_config(request), indent=2))
        for channel in request["InputDataConfig"]:
            target = directory / "input" / "data" / channel["ChannelName"]
            target.mkdir(parents=True, exist_ok=True)
            bucket, prefix = naming.split_s3_uri(channel["DataSource"]["S3DataSource"]["S3Uri"])
            for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                relative = item["Key"][len(prefix) :].lstrip("/") or Path(item["Key"]).name
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                (target / relative).write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        for folder in ("model", "output/data", "checkpoints"):
            (directory / folder).mkdir(parents=True, exist_ok=True)

    def _local_copy(self, s3: Any, uri: str) -> Path:
        """The object at `uri`, downloaded once under work_dir/s3/<bucket>/<key> (jobs share the code tarball)."""
        bucket, key = naming.split_s3_uri(uri)
        target = self.work_dir / "s3" / bucket / key
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            partial.replace(target)
        return target

    def _hyperparameters(self, request: dict[str, Any], directory: Path, local_code: Path) -> dict[str, str]:
        """The request's HyperParameters with the local substitutions, still JSON-encoded as SageMaker writes them."""
        checkpoint_local = request.get("CheckpointConfig", {}).get("LocalPath", "/opt/ml/checkpoints")
        encoded = {
            **request.get("HyperParameters", {}),
            **{k: json.dumps(v) for k, v in self.extra_hyperparameters.items()},
        }
        written: dict[str, str] = {}
        for name, text in encoded.items():
            value = json.loads(text)
            if name == "sagemaker_submit_directory":
                value = str(local_code)
            elif name == "model_id":
                value = self.model_paths.get(value, value)
            elif value == checkpoint_local:
                value = str(directory / "checkpoints")
            written[name] = json.dumps(value)
        return written

    def _command(self, job: _LocalJob) -> tuple[list[str], dict[str, str]]:
        """The DLC's entry point (the toolkit's `train`) and the container environment it runs in."""
        # The request's Environment reaches the container as SageMaker passes it; the Hugging Face cache it names is
        # the instance's NVMe there and the job's own folder here (no job writes outside its folder).
        requested = dict(job.request.get("Environment") or {})
        if "HF_HOME" in requested:
            requested["HF_HOME"] = str(job.directory / "huggingface")
        environment = {
            **os.environ,
            **requested,
            "SAGEMAKER_BASE_DIR": str(job.directory),
            "SAGEMAKER_TRAINING_MODULE": SAGEMAKER_TRAINING_MODULE,
            "TRAINING_JOB_NAME": job.request["TrainingJobName"],
            "SM_STUDIO_LOCAL_MODE": "true",
            # The toolkit runs `torchrun` and `python -m pip` by name / from its own interpreter, as in the image.
            "PATH": os.pathsep.join([str(Path(self.python).parent), os.environ.get("PATH", "")]),
            "PIP_NO_INDEX": "1",
            "PIP_DRY_RUN": "1",
            "PYTHONUNBUFFERED": "1",  # set by the DLC image
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        return [self.python, "-m", "sagemaker_training.cli.train"], environment

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
                cwd=job.directory,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                # Its own process group, so that a stop can kill the toolkit and the script together, as the end
                # of a container does.
                start_new_session=True,
            )
            with self._lock:
                job.process = process
                if job.stop_requested:
                    self._start_grace_period(job)
            assert process.stdout is not None
            for line in process.stdout:
                log_file.write(line)
                self._observe(job, line.rstrip("\n"))
            return_code = process.wait()
        job.exited = utcnow()
        if return_code == 0 and not job.stop_requested:
            self._upload_model(job)
        with self._lock:
            job.return_code, job.ended, job.process = return_code, utcnow(), None
            if job.stop_requested:
                job.state = "Stopped"
            elif return_code == 0:
                job.state = "Completed"
            else:
                job.state = "Failed"
                job.failure_reason = _failure_reason(job, return_code)

    def _upload_model(self, job: _LocalJob) -> None:
        """SageMaker's last step of a job: the model folder to S3, uncompressed or as model.tar.gz as requested."""
        import boto3

        s3 = boto3.client("s3")
        model_dir = job.directory / "model"
        bucket, key = naming.split_s3_uri(
            model_artifact_uri(job.request["OutputDataConfig"], job.request["TrainingJobName"])
        )
        data_dir = job.directory / "output" / "data"
        if key.endswith("/"):
            for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
                s3.upload_file(str(path), bucket, key + path.relative_to(model_dir).as_posix())
            # NONE uploads the output data uncompressed too (AWS, "Uncompressed model output") under a key AWS does not
            # document; nothing here reads it (the report's per-sample answers are read from the model prefix, where
            # the training code also writes predictions.jsonl), so it is not emulated.
            return
        archive = job.directory / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(model_dir.iterdir()):
                tar.add(path, arcname=path.name)
        s3.upload_file(str(archive), bucket, key)
        # And /opt/ml/output/data as output.tar.gz next to it, as SageMaker does (the report's per-sample answers).
        outputs = job.directory / "output.tar.gz"
        with tarfile.open(outputs, "w:gz") as tar:
            for path in sorted(data_dir.iterdir()):
                tar.add(path, arcname=path.name)
        s3.upload_file(str(outputs), bucket, key.removesuffix("model.tar.gz") + "output.tar.gz")

    def _start_grace_period(self, job: _LocalJob) -> None:
        killer = threading.Timer(self.stop_grace_seconds, self._kill, args=(job,))
        killer.daemon = True
        killer.start()

    def _kill(self, job: _LocalJob) -> None:
        """The end of the stop grace period: the container and everything in it is killed."""
        with self._lock:
            if job.process is not None:
                with contextlib.suppress(ProcessLookupError):  # it ended by itself in the meantime
                    os.killpg(job.process.pid, signal.SIGKILL)

    def _observe(self, job: _LocalJob, line: str) -> None:
        progress = _PROGRESS.search(line)
        with self._lock:
            job.log.append(line)
            if progress:
                job.step, job.loss = int(progress.group(1)), float(progress.group(2))


_PROGRESS = re.compile(r"\btrain_step=(\d+);\s*train_loss=([-+0-9.eE]+|nan|inf);")


def _input_data_config(request: dict[str, Any]) -> dict[str, dict[str, str]]:
    """inputdataconfig.json: one entry per channel, in the shape SageMaker documents for the container."""
    default_mode = request["AlgorithmSpecification"].get("TrainingInputMode", "File")
    config = {}
    for channel in request["InputDataConfig"]:
        entry = {
            "TrainingInputMode": channel.get("InputMode", default_mode),
            "S3DistributionType": channel["DataSource"]["S3DataSource"].get(
                "S3DataDistributionType", "FullyReplicated"
            ),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        if "ContentType" in channel:
            entry["ContentType"] = channel["ContentType"]
        config[channel["ChannelName"]] = entry
    return config


def _resource_config(request: dict[str, Any]) -> dict[str, Any]:
    """resourceconfig.json of the one local instance, in the shape SageMaker writes it."""
    instance_type = request["ResourceConfig"]["InstanceType"]
    return {
        "current_host": LOCAL_HOST,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [LOCAL_HOST],
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": instance_type, "hosts": [LOCAL_HOST]}
        ],
        "network_interface_name": "eth0",
    }


def _failure_reason(job: _LocalJob, return_code: int) -> str:
    """As SageMaker: `AlgorithmError: ` and the container's /opt/ml/output/failure file. The script writes it when
    it knows why it failed; otherwise the toolkit writes its own (e.g. `ExecuteUserScriptError:` with the exit
    code and the script's stderr), since it never overwrites one that exists."""
    failure_file = job.directory / "output" / "failure"
    if failure_file.is_file() and failure_file.read_text().strip():
        message = failure_file.read_text().strip()
    else:
        tail = "\n".join(job.log[-5:])
        message = f"the container exited with code {return_code} without writing a failure file:\n{tail}"
    return f"AlgorithmError: {message}"[:1024]
