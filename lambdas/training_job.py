"""SageMaker training jobs: the CreateTrainingJob request for a JobSpec, launching it, describing it.

The request mirrors what the SageMaker Python SDK's Hugging Face estimator sends (JSON-encoded hyperparameters,
`sagemaker_program`/`sagemaker_submit_directory`, torch distributed flags), so the training toolkit inside the DLC
treats our jobs exactly like SDK-launched ones.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas import catalog, failures
from lambdas.errors import (
    InvalidHyperparameter,
    JobNameConflict,
    JobStatusUnavailable,
    LaunchRejected,
    QuotaExhausted,
    ResourceLimitReached,
    Throttled,
    TrainingJobNotFound,
)
from lambdas.job_spec import JobSpec

logger = logging.getLogger(__name__)

ENDED_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
_THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})
FAILURE_REASON_MAX = 1024  # SageMaker's own limit; keeps ledger rows and SFN payloads small
CONTAINER_LOG_LEVEL = 20  # logging.INFO, the SDK's default
# What a hyperparameter value may contain once the toolkit has JSON-decoded it: toolkits before the exec-based launcher
# join the command line through a shell (aws/sagemaker-training-toolkit#128), where whitespace splits a value and
# quotes, `$`, `;`, `|`, `&`, globs and the like change it. Model ids, ARNs, S3 URIs and numbers need none of them.
SAFE_HYPERPARAMETER_VALUE = re.compile(r"[A-Za-z0-9_.:/@+,=-]*")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", str(exc)))


def is_not_found(exc: ClientError) -> bool:
    """SageMaker's "no such job": `ValidationException: Requested resource not found` (moto: "Could not find")."""
    message = _error_message(exc).lower()
    return _error_code(exc) in ("ValidationException", "ResourceNotFound") and (
        "not found" in message or "could not find" in message
    )


def uses_torch_distributed(job: JobSpec) -> bool:
    """Whether the toolkit launches torchrun (one process per GPU): exactly for the strategies that run a process per
    GPU (ddp, fsdp, fsdp_offload) over more than one GPU in total. `single`, `split` and `lean` are one process (split
    spreads its model over the node's GPUs itself); a baseline evaluates in one process."""
    if job["approach"] == catalog.BASELINE or job.get("strategy") not in catalog.TORCHRUN_STRATEGIES:
        return False
    return job["gpus_per_instance"] * job["instance_count"] > 1


def _as_argument(value: Any) -> str:
    """The text the toolkit puts on the command line for a value: it JSON-decodes each hyperparameter, then `str`s it
    (sagemaker_training.mapping.to_cmd_args)."""
    return str(value)


def hyperparameters(job: JobSpec, *, hf_token_secret_arn: str, code_s3_uri: str, region: str) -> dict[str, str]:
    """Training-code hyperparameters from the catalog's table, each JSON-encoded as the SDK does (the DLC toolkit
    JSON-decodes them); `InvalidHyperparameter` when a value could not pass a shell unchanged.

    Unset values (None: e.g. an automatic learning rate) are left out, so the training code's own
    default applies and no empty argument reaches the command line. The HF token travels as its Secrets Manager ARN;
    the training code fetches the value itself with the training role, so the token never appears in the job
    description, CloudTrail or the console.
    """
    # The spec's hyperparameter fields, and the deployment's own (JobSpec's keys are the table's names).
    settings: dict[str, Any] = {**job, "hf_token_secret_arn": hf_token_secret_arn}
    # A fixed setting a spec from before its time lacks takes the table's default (specs travel through executions).
    settings.update(
        {
            hp.name: hp.default
            for hp in catalog.HYPERPARAMETERS
            if hp.name not in settings and hp.source is catalog.Source.FIXED
        }
    )
    values: dict[str, Any] = {
        hp.training_name: settings[hp.name]
        for hp in catalog.HYPERPARAMETERS
        if hp.training_name is not None
        and settings[hp.name] not in (None, "")
        and catalog.applies(hp.name, job["approach"])  # a baseline gets no training settings
    }
    # What the toolkit needs to find and run the code (the SDK sets the same keys).
    values.update(
        {
            "sagemaker_program": catalog.TRAINING_ENTRY_POINT,
            "sagemaker_submit_directory": code_s3_uri,
            "sagemaker_region": region,
            "sagemaker_container_log_level": CONTAINER_LOG_LEVEL,
            "sagemaker_job_name": job["job_name"],
        }
    )
    if uses_torch_distributed(job):
        values["sagemaker_torch_distributed_enabled"] = True
        values["sagemaker_instance_type"] = job["instance_type"]
    for key, value in values.items():
        if not SAFE_HYPERPARAMETER_VALUE.fullmatch(_as_argument(value)):
            raise InvalidHyperparameter(
                f"hyperparameter {key}={_as_argument(value)!r} contains whitespace or a shell metacharacter; "
                "SageMaker training toolkits may pass it through a shell. Allowed: letters, digits and _.:/@+,=-"
            )
    return {key: json.dumps(value) for key, value in values.items()}


# Tags that carry Plan's price on the job itself (Cleanup prices jobs the workflow never recorded with them).
PRICE_TAG = "hourly_price_usd"
PRICE_SOURCE_TAG = "price_source"
ATTEMPT_TAG = "attempt"
BASE_JOB_TAG = "base_job_name"
INJECT_FAILURE_TAG = "inject_failure"


def tags(job: JobSpec, project: str) -> list[dict[str, str]]:
    """Tags for cost allocation, for finding a run's jobs (Cleanup searches by `run_id`) and for pricing them: Cleanup
    records a job that the workflow never reached with the hourly price Plan used, carried by these tags."""
    return [
        {"Key": "project", "Value": project},
        {"Key": "run_id", "Value": job["run_id"]},
        {"Key": "model", "Value": job["model_key"]},
        {"Key": "approach", "Value": job["approach"]},
        {"Key": PRICE_TAG, "Value": f"{job['hourly_price_usd']:g}"},
        {"Key": PRICE_SOURCE_TAG, "Value": job["price_source"]},
        # Attempts of one job share its base name (lambdas/remedies.py).
        {"Key": ATTEMPT_TAG, "Value": str(job.get("attempt", 1))},
        {"Key": BASE_JOB_TAG, "Value": job.get("base_job_name") or job["job_name"]},
    ] + (
        # Demo only: Plan refuses the field outside the offline runner, whose training backend reads this tag.
        [{"Key": INJECT_FAILURE_TAG, "Value": job["inject_failure"]}] if job.get("inject_failure") else []
    )


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "ContentType": "application/jsonlines",
        "CompressionType": "None",
    }


# SageMaker uploads `/opt/ml/model` as it is, not as model.tar.gz: gzipping a full fine-tune's 13-29 GB folder on one
# core is billed instance time for nothing (AWS, "Uncompressed model output",
# docs.aws.amazon.com/sagemaker/latest/dg/model-train-storage-uncompressed.html: CompressionType NONE "to output an
# uncompressed model, recommended for large model outputs"; botocore's model: GZIP | NONE, default GZIP). The files
# land under `<S3OutputPath>/<job>/output/model/` and DescribeTrainingJob's S3ModelArtifacts names that prefix
# (finetune/local/services.py `model_artifact_uri` has the sources); Record sizes it as a prefix.
MODEL_COMPRESSION = "NONE"


# The Hugging Face cache (the model download, datasets) on the instance's NVMe: `/tmp` (like /opt/ml) is on the
# instance store on g5/p4d, while the default `/root/.cache` is on the container's root volume, which a 70B-class
# download would fill.
HF_HOME = "/tmp/huggingface"


def create_training_job_request(
    job: JobSpec,
    *,
    role_arn: str,
    image_uri: str,
    code_s3_uri: str,
    hf_token_secret_arn: str,
    data_key_arn: str,
    region: str,
    project: str,
) -> dict[str, Any]:
    """The full CreateTrainingJob request for a JobSpec (pure: tests validate it against the service model)."""
    instance = catalog.INSTANCES.get(job["instance_type"])
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": job["max_runtime_seconds"]}
    if job["spot"]:
        # SageMaker requires wait >= runtime for managed spot; Plan already guarantees it, this keeps it true.
        stopping["MaxWaitTimeInSeconds"] = max(job["max_wait_seconds"] or 0, stopping["MaxRuntimeInSeconds"])
    return {
        "TrainingJobName": job["job_name"],
        "HyperParameters": hyperparameters(
            job, hf_token_secret_arn=hf_token_secret_arn, code_s3_uri=code_s3_uri, region=region
        ),
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": catalog.metric_definitions(),
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": role_arn,
        "Environment": {"HF_HOME": HF_HOME},
        "InputDataConfig": [_channel("train", job["train_s3_uri"]), _channel("test", job["test_s3_uri"])],
        # Without KmsKeyId SageMaker encrypts the model with the account's aws/s3 key, not the bucket's: the data key
        # keeps disabling it a way to cut access to everything the stack stores.
        "OutputDataConfig": {
            "S3OutputPath": job["output_s3_uri"],
            "KmsKeyId": data_key_arn,
            "CompressionType": MODEL_COMPRESSION,
        },
        "ResourceConfig": {
            "InstanceType": job["instance_type"],
            "InstanceCount": job["instance_count"],
            "VolumeSizeInGB": instance.volume_size_gb if instance else 200,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": job["spot"],
        # Several instances exchange weights and gradients over the network: encrypt it (SageMaker Developer Guide,
        # "Protect Communications Between ML Compute Instances in a Distributed Training Job"). It has no effect on a
        # single instance, so it is sent only where it protects something.
        **({"EnableInterContainerTrafficEncryption": True} if job["instance_count"] > 1 else {}),
        # Spot interruptions resume from here; SageMaker syncs the local path to S3 continuously.
        "CheckpointConfig": {"S3Uri": job["checkpoint_s3_uri"], "LocalPath": catalog.CHECKPOINT_LOCAL_PATH},
        "Tags": tags(job, project),
    }


def launch(sagemaker: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Create the training job; `{job_name, training_job_arn, already_launched}`.

    `ResourceInUse` means a job of this deterministic name exists. If it was created from this very request (same
    hyperparameters: model, settings, code, run) a previous attempt (a Lambda retry, a Step Functions retry) launched
    it: report it as launched instead of failing a job that is running fine. Otherwise it belongs to something else,
    e.g. an execution name reused with other input or after a redeploy, and adopting it would record someone else's
    job: `JobNameConflict`.
    """
    name = request["TrainingJobName"]
    try:
        response = sagemaker.create_training_job(**request)
        return {"job_name": name, "training_job_arn": response["TrainingJobArn"], "already_launched": False}
    except ClientError as exc:
        code, message = _error_code(exc), _error_message(exc)
        if code == "ResourceInUse":
            return _adopt(sagemaker, request)
        if code == "ResourceLimitExceeded":
            if failures.quota_can_never_fit(message):
                raise QuotaExhausted(f"{name}: {message}") from None
            raise ResourceLimitReached(f"{name}: {message}") from None
        if code in _THROTTLING_CODES:
            raise Throttled(f"CreateTrainingJob {name} throttled: {message}") from None
        raise LaunchRejected(f"CreateTrainingJob {name} refused ({code}): {message}") from None


def _adopt(sagemaker: Any, request: dict[str, Any]) -> dict[str, Any]:
    name = request["TrainingJobName"]
    described = sagemaker.describe_training_job(TrainingJobName=name)
    existing = described.get("HyperParameters") or {}
    differing = sorted(
        key
        for key in set(existing) | set(request["HyperParameters"])
        if existing.get(key) != request["HyperParameters"].get(key)
    )
    if differing:
        raise JobNameConflict(
            f"training job {name} already exists ({described.get('TrainingJobStatus')}, created "
            f"{_iso(described.get('CreationTime'))}) with other hyperparameters ({', '.join(differing)}): it was not "
            "launched for this job spec. Start the execution under a new name."
        )
    logger.info("training job %s already exists with this spec; treating it as launched", name)
    return {"job_name": name, "training_job_arn": described["TrainingJobArn"], "already_launched": True}


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if value else None


# Where a job's wall time went, by SecondaryStatus (botocore's SecondaryStatus enum). Waiting covers everything
# before the instances run our container: provisioning, a spot job queued for capacity, and the way back after a
# spot interruption (Interrupted -> Starting/Restarting -> Downloading ...). Statuses not listed (Stopping, the
# final ones) are not counted: they are not time a reader would attribute to a phase of the job.
TIME_SPLIT_PHASES: dict[str, str] = {
    "Starting": "waiting",
    "Pending": "waiting",
    "LaunchingMLInstances": "waiting",
    "PreparingTrainingStack": "waiting",
    "Interrupted": "waiting",
    "Restarting": "waiting",
    "Downloading": "downloading",
    "DownloadingTrainingImage": "downloading",
    "Training": "training",
    "Uploading": "uploading",
}
TIME_SPLIT_KEYS = ("waiting", "downloading", "training", "uploading")


def time_split(transitions: list[dict[str, Any]], until: datetime | None = None) -> dict[str, int]:
    """Seconds spent waiting / downloading / training / uploading, from DescribeTrainingJob's
    SecondaryStatusTransitions. The transition in progress has no EndTime: it counts up to `until` (the job's end,
    or the time of the description), or not at all without it."""
    split = dict.fromkeys(TIME_SPLIT_KEYS, 0.0)
    for transition in transitions:
        phase = TIME_SPLIT_PHASES.get(str(transition.get("Status")))
        start, end = transition.get("StartTime"), transition.get("EndTime") or until
        if phase is None or not isinstance(start, datetime) or not isinstance(end, datetime):
            continue
        split[phase] += max((end - start).total_seconds(), 0.0)
    return {phase: round(seconds) for phase, seconds in split.items()}


def interruptions(transitions: list[dict[str, Any]]) -> int:
    """How many times spot capacity was reclaimed from the job (each one is an `Interrupted` transition)."""
    return sum(1 for transition in transitions if transition.get("Status") == "Interrupted")


def normalise_description(description: dict[str, Any]) -> dict[str, Any]:
    """DescribeTrainingJob reduced to what the workflow decides on and records (all JSON-able)."""
    status = description.get("TrainingJobStatus", "Unknown")
    metrics = {
        item["MetricName"]: float(item["Value"])
        for item in description.get("FinalMetricDataList", [])
        # NaN/inf are not JSON and not DynamoDB numbers; a diverged loss is visible in the logs anyway.
        if "MetricName" in item and isinstance(item.get("Value"), int | float) and math.isfinite(item["Value"])
    }
    reason = description.get("FailureReason")
    transitions = description.get("SecondaryStatusTransitions") or []
    until = description.get("TrainingEndTime") or description.get("LastModifiedTime")
    return {
        "job_name": description.get("TrainingJobName"),
        "status": status,
        "secondary_status": description.get("SecondaryStatus"),
        "ended": status in ENDED_STATUSES,
        # Failed jobs, and moto, may omit both time fields.
        "training_seconds": int(description.get("TrainingTimeInSeconds") or 0),
        "billable_seconds": int(description.get("BillableTimeInSeconds") or 0),
        "metrics": metrics,
        "failure_reason": reason[:FAILURE_REASON_MAX] if reason else None,
        "creation_time": _iso(description.get("CreationTime")),
        "end_time": _iso(description.get("TrainingEndTime")),
        "time_split_seconds": time_split(transitions, until),
        "interruptions": interruptions(transitions),
        # SageMaker names the path even when nothing was written there (a failed job): Record lists what is there.
        # With CompressionType NONE it is the model folder's key prefix (`model_artifact_uri`).
        "artifact_uri": (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or None,
    }


def describe(sagemaker: Any, job_name: str) -> dict[str, Any] | None:
    """The normalised description, or None when SageMaker does not know the job."""
    try:
        return normalise_description(sagemaker.describe_training_job(TrainingJobName=job_name))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        if _error_code(exc) in _THROTTLING_CODES:
            raise Throttled(f"DescribeTrainingJob {job_name} throttled: {_error_message(exc)}") from None
        raise


def status(sagemaker: Any, job_name: str) -> dict[str, Any]:
    """The Status step: the normalised description; `TrainingJobNotFound` when there is no such job (provably gone).

    Any other failure to describe it is `Throttled` or `JobStatusUnavailable`, both retried by the state machine for
    hours (config `watch_retry`): an unanswered question about a job is never a lost job, since it may be billing.
    """
    try:
        described = describe(sagemaker, job_name)
    except (ClientError, BotoCoreError) as exc:
        raise JobStatusUnavailable(f"DescribeTrainingJob {job_name} failed after botocore's retries: {exc}") from None
    if described is None:
        raise TrainingJobNotFound(f"training job {job_name} does not exist")
    return described


def workflow_error_text(error: Mapping[str, Any]) -> str:
    """`Error: message` from a Step Functions Catch output; a Lambda error's JSON Cause is unwrapped."""
    name = str(error.get("Error") or "Error")
    cause = str(error.get("Cause") or "")
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        name = str(parsed.get("errorType") or name)
        cause = str(parsed["errorMessage"])
    return f"{name}: {cause}"[:FAILURE_REASON_MAX] if cause else name[:FAILURE_REASON_MAX]


def outcome_after_error(sagemaker: Any, job_name: str, error: Mapping[str, Any]) -> dict[str, Any]:
    """What to record for a job whose Launch or Status step failed: ask SageMaker what actually happened.

    - never created (Launch refused): Failed, nothing billed, the workflow's error as reason;
    - ended anyway: exactly what SageMaker says (it may even have Completed);
    - still running: recorded as Failed with what is billed so far and why (the workflow stopped watching it;
      SageMaker still stops it at its MaxRuntime, so its cost stays inside the planned estimate).
    """
    reason = workflow_error_text(error)
    described = describe(sagemaker, job_name)
    if described is None:
        return {
            "job_name": job_name,
            "status": "Failed",
            "secondary_status": None,
            "ended": True,
            "training_seconds": 0,
            "billable_seconds": 0,
            "metrics": {},
            "failure_reason": reason,
            "creation_time": None,
            "end_time": None,
            "time_split_seconds": dict.fromkeys(TIME_SPLIT_KEYS, 0),
            "interruptions": 0,
            "artifact_uri": None,
        }
    if described["ended"]:
        if described["status"] != "Completed" and not described["failure_reason"]:
            described["failure_reason"] = reason
        return described
    lost = (
        f"the workflow stopped watching this job while it was {described['status']}/"
        f"{described['secondary_status']} (it runs on until it ends or hits MaxRuntime): {reason}"
    )
    return {**described, "status": "Failed", "ended": True, "failure_reason": lost[:FAILURE_REASON_MAX]}
