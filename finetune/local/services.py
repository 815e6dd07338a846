"""Local stand-ins for the AWS APIs moto lacks or fakes too thinly for this app:
SageMaker training jobs (Create/Describe/Stop, and Search by tag), Service Quotas lookups and the Price List API.

They plug into botocore exactly where `botocore.stub.Stubber` does (the `before-call` event), so every request is
first validated against the real service model, and callers get real `ClientError`s. Everything else still goes
to moto. The hook is registered once per process and answers only while a `LocalServices` is active.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import botocore.handlers
from botocore.awsrequest import AWSResponse

Response = tuple[AWSResponse, dict[str, Any]]


class TrainingBackend(Protocol):
    """Runs training jobs. `create` gets the validated CreateTrainingJob request; `describe` returns the
    DescribeTrainingJob fields that change while a job runs (status, times, metrics, failure reason)."""

    def create(self, request: dict[str, Any]) -> None: ...

    def describe(self, job_name: str) -> dict[str, Any] | None: ...

    def stop(self, job_name: str) -> None: ...


class ServiceError(Exception):
    """An AWS error response (turned into botocore's ClientError by the hook)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _ok(body: dict[str, Any]) -> Response:
    return AWSResponse(None, 200, {}, None), {**body, "ResponseMetadata": {"HTTPStatusCode": 200}}


def _error(error: ServiceError) -> Response:
    parsed = {
        "Error": {"Code": error.code, "Message": error.message},
        "ResponseMetadata": {"HTTPStatusCode": error.status},
    }
    return AWSResponse(None, error.status, {}, None), parsed


@dataclass
class Fault:
    """An error the next `times` calls of one operation get instead of their answer (fault injection): what a caller
    sees after botocore's own retries gave up, e.g. ThrottlingException on CreateTrainingJob."""

    service: str
    operation: str
    code: str
    times: int = 1
    message: str = "injected fault"
    status: int = 400
    hits: int = 0


class LocalServices:
    """The local account: a training backend, generous quotas, and no Price List access (catalog prices apply)."""

    def __init__(self, backend: TrainingBackend, account_id: str, region: str, quota_value: float = 10.0) -> None:
        self.backend = backend
        self.account_id = account_id
        self.region = region
        self.quota_value = quota_value
        self.training_jobs: dict[str, dict[str, Any]] = {}
        self.create_calls: list[str] = []
        self.stop_calls: list[str] = []
        # SageMaker Search's index is eventually consistent: a job shows in Search only this long after its creation
        # (0: at once). ListTrainingJobs and DescribeTrainingJob see it from its creation on.
        self.search_lag_seconds = 0.0
        # Called with each CreateTrainingJob request before it is served (a call still in flight, for scenarios).
        self.before_create: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        # Injected errors, for any operation (moto's too): `inject` adds them, `answer` serves them first. Their own
        # lock: `answer` runs again inside CreateTrainingJob, which holds `_lock` while the backend reads S3.
        self.faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._operations: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
            ("sagemaker", "CreateTrainingJob"): self._create_training_job,
            ("sagemaker", "DescribeTrainingJob"): self._describe_training_job,
            ("sagemaker", "StopTrainingJob"): self._stop_training_job,
            ("sagemaker", "Search"): self._search,
            ("sagemaker", "ListTrainingJobs"): self._list_training_jobs,
            ("sagemaker", "ListTags"): self._list_tags,
            ("service-quotas", "ListServiceQuotas"): self._list_quotas,
            ("service-quotas", "ListAWSDefaultServiceQuotas"): self._list_quotas,
            ("pricing", "GetProducts"): lambda _params: {"PriceList": [], "FormatVersion": "aws_v1"},
        }

    def inject(self, service: str, operation: str, code: str, *, times: int = 1, **fields: Any) -> Fault:
        """Answer the next `times` calls of `service`/`operation` (e.g. "sagemaker", "CreateTrainingJob") with the
        error `code`; the returned `Fault` counts its hits."""
        fault = Fault(service, operation, code, times, **fields)
        with self._faults_lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, service: str, operation: str) -> Fault | None:
        with self._faults_lock:
            for fault in self.faults:
                if (fault.service, fault.operation) == (service, operation) and fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def answer(self, service: str, operation: str, params: dict[str, Any]) -> Response | None:
        """The response for an emulated operation, or None to let the request through (to moto)."""
        fault = self._take_fault(service, operation)
        if fault is not None:
            return _error(ServiceError(fault.code, fault.message, fault.status))
        handler = self._operations.get((service, operation))
        if handler is None:
            return None
        try:
            return _ok(handler(params))
        except ServiceError as error:
            return _error(error)

    def _create_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TrainingJobName"]
        if self.before_create is not None:
            # Outside the lock: a scenario may hold this call in flight while other calls go on (tests/leaks).
            self.before_create(params)
        with self._lock:
            self.create_calls.append(name)
            if name in self.training_jobs:
                raise ServiceError("ResourceInUse", f"Training job names must be unique; {name} already exists")
            # The backend may refuse (e.g. ResourceLimitExceeded) before the job exists.
            self.backend.create(params)
            arn = f"arn:aws:sagemaker:{self.region}:{self.account_id}:training-job/{name.lower()}"
            self.training_jobs[name] = {"request": params, "arn": arn, "created": datetime.now(UTC)}
        return {"TrainingJobArn": arn}

    def _describe_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TrainingJobName"]
        job = self.training_jobs.get(name)
        state = self.backend.describe(name) if job else None
        if job is None or state is None:
            raise ServiceError("ValidationException", f"Requested resource not found: {name}")
        request = job["request"]
        return {
            "TrainingJobName": name,
            "TrainingJobArn": job["arn"],
            "CreationTime": job["created"],
            "AlgorithmSpecification": request["AlgorithmSpecification"],
            "RoleArn": request["RoleArn"],
            "ResourceConfig": request["ResourceConfig"],
            "StoppingCondition": request["StoppingCondition"],
            "HyperParameters": request.get("HyperParameters", {}),
            **({"CheckpointConfig": request["CheckpointConfig"]} if "CheckpointConfig" in request else {}),
            "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
            "ModelArtifacts": {"S3ModelArtifacts": model_artifact_uri(request["OutputDataConfig"], name)},
            "SecondaryStatusTransitions": _transitions(job["created"], state),
            **state,
        }

    def _stop_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        # As SageMaker: only an InProgress job can be stopped; any other status is a ValidationException naming it.
        name = params["TrainingJobName"]
        status = self._describe_training_job({"TrainingJobName": name})["TrainingJobStatus"]
        if status != "InProgress":
            raise ServiceError(
                "ValidationException", f"The request was rejected because the training job is in status {status}."
            )
        self.backend.stop(name)
        with self._lock:
            self.stop_calls.append(name)
        return {}

    def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        """SageMaker Search over training jobs: `Filters` (ANDed) with Equals/NotEquals/Contains/Exists on
        `TrainingJobName`, `TrainingJobStatus` and `Tags.<key>`; pages of `MaxResults` (default 10) with NextToken.
        Like the real index, it returns each job's full description with its Tags."""
        if params.get("Resource") != "TrainingJob":
            raise ServiceError("ValidationException", f"local Search supports Resource=TrainingJob only: {params}")
        expression = params.get("SearchExpression", {})
        if set(expression) - {"Filters"}:
            raise ServiceError("ValidationException", "local Search supports SearchExpression.Filters only")
        matches = []
        indexed_before = utcnow() - timedelta(seconds=self.search_lag_seconds)
        for name in sorted(self.training_jobs):
            if self.search_lag_seconds and self.training_jobs[name]["created"] > indexed_before:
                continue  # not in the search index yet
            job = {**self._describe_training_job({"TrainingJobName": name}), "Tags": self._tags(name)}
            if all(_filter_matches(job, f) for f in expression.get("Filters", [])):
                matches.append(job)
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 10)
        page = matches[start : start + size]
        response: dict[str, Any] = {
            "Results": [{"TrainingJob": job} for job in page],
            "TotalHits": {"Value": len(matches), "Relation": "Equal"},
        }
        if start + size < len(matches):
            response["NextToken"] = str(start + size)
        return response

    def _list_training_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListTrainingJobs with NameContains, StatusEquals and CreationTimeAfter/Before, newest first (SageMaker's
        default order), paged by MaxResults/NextToken."""
        summaries = []
        for name, job in self.training_jobs.items():
            described = self._describe_training_job({"TrainingJobName": name})
            if params.get("NameContains") and params["NameContains"] not in name:
                continue
            if params.get("StatusEquals") and described["TrainingJobStatus"] != params["StatusEquals"]:
                continue
            if params.get("CreationTimeAfter") and not job["created"] > params["CreationTimeAfter"]:
                continue
            if params.get("CreationTimeBefore") and not job["created"] < params["CreationTimeBefore"]:
                continue
            summaries.append(
                {
                    "TrainingJobName": name,
                    "TrainingJobArn": job["arn"],
                    "CreationTime": job["created"],
                    "TrainingJobStatus": described["TrainingJobStatus"],
                }
            )
        summaries.sort(key=lambda summary: summary["CreationTime"], reverse=True)
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 10)
        response: dict[str, Any] = {"TrainingJobSummaries": summaries[start : start + size]}
        if start + size < len(summaries):
            response["NextToken"] = str(start + size)
        return response

    def _list_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        by_arn = {job["arn"]: name for name, job in self.training_jobs.items()}
        name = by_arn.get(params["ResourceArn"])
        if name is None:
            raise ServiceError("ValidationException", f"Resource not found: {params['ResourceArn']}")
        return {"Tags": self._tags(name)}

    def _tags(self, name: str) -> list[dict[str, str]]:
        return list(self.training_jobs[name]["request"].get("Tags", []))

    def _list_quotas(self, params: dict[str, Any]) -> dict[str, Any]:
        from lambdas.catalog import INSTANCES, training_quota_name

        quotas: list[dict[str, Any]] = []
        for instance_type in sorted(INSTANCES):
            for spot in (False, True):
                code = f"L-LOCAL-{len(quotas):04d}"
                quotas.append(
                    {
                        "ServiceCode": "sagemaker",
                        "QuotaCode": code,
                        "QuotaName": training_quota_name(instance_type, spot),
                        "QuotaArn": f"arn:aws:servicequotas:{self.region}:{self.account_id}:sagemaker/{code}",
                        "Value": self.quota_value,
                        "Adjustable": True,
                    }
                )
        return {"Quotas": quotas}


def model_artifact_uri(output_data_config: dict[str, Any], job_name: str) -> str:
    """Where SageMaker puts a completed job's `/opt/ml/model`, as DescribeTrainingJob's
    `ModelArtifacts.S3ModelArtifacts` names it, for the request's OutputDataConfig.

    GZIP (the API's default): one archive, `<S3OutputPath>/<job>/output/model.tar.gz` (API reference,
    "ModelArtifacts": "The path of the S3 object that contains the model artifacts", e.g. `.../model.tar.gz`).
    NONE: the folder's files uploaded as they are (AWS, "Uncompressed model output",
    docs.aws.amazon.com/sagemaker/latest/dg/model-train-storage-uncompressed.html), each at its path relative to
    /opt/ml/model under the key prefix `<S3OutputPath>/<job>/output/model/`, which S3ModelArtifacts then names: the
    SageMaker Python SDK's `Estimator.model_data` reads S3ModelArtifacts of a NONE job as an S3Prefix model source
    and adds the trailing `/` when it is missing. AWS's pages show no NONE example of the key itself, so the app
    never derives it: Record lists whatever prefix S3ModelArtifacts names.
    """
    job_output = f"{output_data_config['S3OutputPath'].rstrip('/')}/{job_name}/output"
    if output_data_config.get("CompressionType", "GZIP") == "NONE":
        return f"{job_output}/model/"
    return f"{job_output}/model.tar.gz"


def _transitions(created: datetime, state: dict[str, Any]) -> list[dict[str, Any]]:
    """SecondaryStatusTransitions as SageMaker reports them, from what a backend says of a job: Starting until its
    training started, Training until it ended, then its final secondary status (a backend may give its own)."""
    started, ended = state.get("TrainingStartTime"), state.get("TrainingEndTime")
    if not isinstance(started, datetime):
        return [{"Status": "Starting", "StartTime": created, "StatusMessage": "Preparing the instances for training"}]
    transitions: list[dict[str, Any]] = [
        {
            "Status": "Starting",
            "StartTime": created,
            "EndTime": max(started, created),
            "StatusMessage": "Preparing the instances for training",
        },
        {"Status": "Training", "StartTime": max(started, created), "StatusMessage": "Training in progress."},
    ]
    if isinstance(ended, datetime):
        transitions[-1]["EndTime"] = ended
        final = str(state.get("SecondaryStatus") or state.get("TrainingJobStatus") or "Completed")
        transitions.append({"Status": final, "StartTime": ended, "EndTime": ended, "StatusMessage": final})
    return transitions


def _filter_matches(job: dict[str, Any], search_filter: dict[str, str]) -> bool:
    name, operator, expected = (
        search_filter["Name"],
        search_filter.get("Operator", "Equals"),
        search_filter.get("Value"),
    )
    if name.startswith("Tags."):
        value = {t["Key"]: t["Value"] for t in job.get("Tags", [])}.get(name.removeprefix("Tags."))
    elif name in ("TrainingJobName", "TrainingJobStatus"):
        value = job.get(name)
    else:
        raise ServiceError("ValidationException", f"local Search does not support the property {name}")
    if operator == "Equals":
        return value == expected
    if operator == "NotEquals":
        return value != expected
    if operator == "Contains":
        return value is not None and str(expected) in str(value)
    if operator == "Exists":
        return value is not None
    if operator == "NotExists":
        return value is None
    raise ServiceError("ValidationException", f"local Search does not support the operator {operator}")


_active: LocalServices | None = None


_API_PARAMS = "local_services_api_params"


def _remember_api_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # before-call only sees the serialized request; keep the API parameters (validated right after this event).
    context[_API_PARAMS] = params


def _before_call(model: Any, context: dict[str, Any], **_: Any) -> Response | None:
    if _active is None:
        return None
    return _active.answer(model.service_model.service_name, model.name, context.get(_API_PARAMS, {}))


# Registered for every botocore session created from now on (moto registers its own hook the same way).
_HOOKS: list[tuple[str, Callable[..., Any]]] = [
    ("before-parameter-build.*.*", _remember_api_params),
    ("before-call.*.*", _before_call),
]
botocore.handlers.BUILTIN_HANDLERS.extend(_HOOKS)


@contextmanager
def local_services(services: LocalServices) -> Iterator[LocalServices]:
    """Answer the emulated operations with `services` inside the block."""
    global _active
    previous, _active = _active, services
    try:
        yield services
    finally:
        _active = previous


def utcnow() -> datetime:
    """Aware UTC now (DescribeTrainingJob timestamps)."""
    return datetime.now(UTC)
