"""The ledger: one DynamoDB table, one item per job (`RUN#<run>` / `JOB#<job>`) and one `SUMMARY` per run.

Rows are built here and only here (the ledger contract). Numbers are `Decimal` all the way to DynamoDB; the boto3
serializer refuses floats, which is what keeps floats-as-strings out. Row content is a pure function of the job and
its final status (no "recorded at now"), so a retried Record writes the same item again: idempotent without
conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from lambdas import calibration, catalog, cost, naming
from lambdas.errors import Throttled

if TYPE_CHECKING:
    # Read by mypy only (typing.ReadOnly is Python 3.13+); nothing evaluates these annotations at run time.
    from typing_extensions import ReadOnly

SUMMARY_SK = "SUMMARY"
# The global secondary index that compares runs: partition `model_approach` ("<model>#<approach>"), sort `created_at`
# (ISO time, so newest first is one Query). Rows without a creation time (a job that never started) stay out of it.
MODEL_APPROACH_INDEX = "model-approach"
MODEL_APPROACH_KEY = "model_approach"
MODEL_APPROACH_SORT_KEY = "created_at"
# The index that calibrates estimates (lambdas/calibration.py): partition `calibration_key` ("<family>#<approach>#
# <strategy>"), sort `created_at`, so Plan reads the newest jobs of a key in one Query. Rows of specs planned before
# calibration existed carry no key and stay out of it.
CALIBRATION_INDEX = "calibration"
CALIBRATION_KEY = "calibration_key"
_INDEX_KEYS = frozenset({MODEL_APPROACH_KEY, MODEL_APPROACH_SORT_KEY, CALIBRATION_KEY})
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class LedgerJob(TypedDict):
    """What a job row is built from: a JobSpec (Record), or the fields Cleanup rebuilds from a training job's request
    and tags (lambdas/cleanup.job_spec), which has only the required ones and Decimal prices. Read-only, so a JobSpec
    is a LedgerJob: its fields may be required where these are not, and `float` where these take `float | Decimal`.
    The catalog's hyperparameters are read by name from whichever of them the job holds (`job_hyperparameters`)."""

    run_id: ReadOnly[str]
    job_name: ReadOnly[str]
    model_key: ReadOnly[str]
    model_id: ReadOnly[str]
    approach: ReadOnly[str]
    instance_type: ReadOnly[str]
    instance_count: ReadOnly[int]
    spot: ReadOnly[bool]
    hourly_price_usd: ReadOnly[float | Decimal]
    price_source: ReadOnly[str]
    estimated_max_cost_usd: ReadOnly[float | Decimal]
    # Plan's specs only (a rebuilt job has none): the dataset, the strategy, the estimate, the attempt.
    train_s3_uri: NotRequired[ReadOnly[str]]
    strategy: NotRequired[ReadOnly[str]]
    estimated_cost_usd: NotRequired[ReadOnly[float]]
    estimated_hours: NotRequired[ReadOnly[float]]
    estimated_seconds: NotRequired[ReadOnly[dict[str, float]]]
    calibration_key: NotRequired[ReadOnly[str]]
    calibration: NotRequired[ReadOnly[dict[str, Any]]]
    attempt: NotRequired[ReadOnly[int]]
    base_job_name: NotRequired[ReadOnly[str]]
    remedies_applied: NotRequired[ReadOnly[list[str]]]


def run_pk(run_id: str) -> str:
    """Partition key of a run."""
    return f"RUN#{run_id}"


def job_sk(job_name: str) -> str:
    """Sort key of a job row."""
    return f"JOB#{job_name}"


def model_approach_key(model: str, approach: str) -> str:
    """Partition key of a job row in the model x approach index."""
    return f"{model}#{approach}"


def to_dynamo_value(value: Any) -> Any:
    """Recursively turn floats into Decimals (via str, so 0.1 stays 0.1); leave everything else as is."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return cost.to_decimal(value)
    if isinstance(value, dict):
        return {key: to_dynamo_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo_value(item) for item in value]
    return value


def to_json_value(value: Any) -> Any:
    """Recursively turn Decimals into ints (when integral) or floats, for JSON and Step Functions."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    return value


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else cost.to_decimal(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def job_hyperparameters(job: LedgerJob) -> dict[str, Any]:
    """Every hyperparameter of the catalog's table that the job spec holds, by name (what shaped the job)."""
    fields: Mapping[str, object] = job  # looked up by the catalog's names, which no TypedDict key check can follow
    return {hp.name: to_dynamo_value(fields[hp.name]) for hp in catalog.HYPERPARAMETERS if hp.name in fields}


def job_dataset(job: LedgerJob, metrics: dict[str, Any]) -> dict[str, Any]:
    """The dataset's name (from the S3 layout) and its row counts, when the training code reported them (a job
    Cleanup rebuilt from SageMaker has no train URI: no name)."""
    return {
        "name": naming.dataset_name(job.get("train_s3_uri") or ""),
        "train_rows": _optional_int(metrics.get("dataset_train_rows")),
        "test_rows": _optional_int(metrics.get("dataset_test_rows")),
    }


# The hyperparameters a job reports it actually used (catalog metrics `resolved_<name>`, printed by the training code
# once when decided), as the row's `resolved` map. Read by the report and the CLI: the field name and shape are a
# contract ({"learning_rate": Decimal, "effective_batch_size": int, "max_seq_length": int, "strategy": str}).
def _printed_decimal(value: float) -> Decimal:
    """A metric value as the training code printed it: 6 significant digits (training_code/telemetry.format_value).
    A scraped value need not round-trip (SageMaker may hand back 2e-4 as 0.00019999999494757503)."""
    return Decimal(format(float(value), ".6g"))


RESOLVED_NUMBERS: dict[str, Callable[[Any], Decimal | int]] = {
    "learning_rate": _printed_decimal,
    "effective_batch_size": int,
    "max_seq_length": int,
}
# training_code/config.effective_strategy (which Lambda code cannot import): ddp with one process trains as single.
_ONE_PROCESS_STRATEGIES = {"ddp": "single"}


def job_resolved(job: LedgerJob, metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The row's `resolved` map from the job's `resolved_*` metrics: each value the job reported (a baseline reports
    no learning rate or batch: those keys are absent), and the strategy it trained with (the spec's, unless it
    reports a single process for a strategy that becomes another with one). None when the job reported none (it
    never reached training: `learning_rate: null` stays unresolved rather than guessed)."""
    reported = {name: metrics.get(f"resolved_{name}") for name in (*RESOLVED_NUMBERS, "world_size")}
    if all(value is None for value in reported.values()):
        return None
    resolved: dict[str, Any] = {
        name: convert(reported[name]) for name, convert in RESOLVED_NUMBERS.items() if reported[name] is not None
    }
    strategy = job.get("strategy")
    if reported["world_size"] is not None and int(reported["world_size"]) == 1:
        strategy = _ONE_PROCESS_STRATEGIES.get(strategy or "", strategy)
    if strategy is not None:
        resolved["strategy"] = strategy
    return resolved


def job_row(
    job: LedgerJob,
    status: Mapping[str, Any],
    resources: Mapping[str, Any] | None = None,
    *,
    failure: Mapping[str, Any] | None = None,
    remedy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ledger row for a JobSpec and its final (normalised) status, with cost and spot savings, and what the job
    used (`resources`: Record's GPU utilization and artifact size; absent figures are None).

    Every field added since the first ledger contract is read with `.get`, so rows of statuses and specs written
    before it still build. Every attempt of a job is a row of its own (lambdas/remedies.py): `attempt`,
    `base_job_name` (the first attempt's name: the job the attempts belong to), the `failure` Classify found and the
    `remedy` decided for it."""
    billable = int(status.get("billable_seconds") or 0)
    training = int(status.get("training_seconds") or 0)
    price = cost.to_decimal(job["hourly_price_usd"])
    resources = resources or {}
    split = status.get("time_split_seconds")
    return {
        "pk": run_pk(job["run_id"]),
        "sk": job_sk(job["job_name"]),
        "run_id": job["run_id"],
        "job_name": job["job_name"],
        "model": job["model_key"],
        "model_id": job["model_id"],
        "approach": job["approach"],
        MODEL_APPROACH_KEY: model_approach_key(job["model_key"], job["approach"]),
        "instance_type": job["instance_type"],
        "instance_count": job["instance_count"],
        "spot": job["spot"],
        "status": status["status"],
        "secondary_status": status.get("secondary_status"),
        "failure_reason": status.get("failure_reason"),
        "training_seconds": training,
        "billable_seconds": billable,
        "hourly_price_usd": price,
        "price_source": job["price_source"],
        "cost_usd": cost.job_cost_usd(billable, job["instance_count"], price),
        "spot_savings_pct": cost.spot_savings_pct(billable, training),
        "estimated_max_cost_usd": cost.to_decimal(job["estimated_max_cost_usd"]),
        "metrics": {name: cost.to_decimal(value) for name, value in sorted((status.get("metrics") or {}).items())},
        "created_at": status.get("creation_time"),
        "ended_at": status.get("end_time"),
        "hyperparameters": job_hyperparameters(job),
        "dataset": job_dataset(job, status.get("metrics") or {}),
        "resolved": job_resolved(job, status.get("metrics") or {}),
        "artifact_uri": status.get("artifact_uri"),
        "artifact_bytes": _optional_int(resources.get("artifact_bytes")),
        "gpu_utilization_pct": to_dynamo_value(resources.get("gpu_utilization_pct")),
        "gpu_memory_utilization_pct": to_dynamo_value(resources.get("gpu_memory_utilization_pct")),
        "time_split_seconds": {phase: int(seconds) for phase, seconds in split.items()} if split else None,
        "interruptions": int(status.get("interruptions") or 0),
        "estimated_cost_usd": _optional_decimal(job.get("estimated_cost_usd")),
        "estimated_hours": _optional_decimal(job.get("estimated_hours")),
        **calibration_fields(job, status),
        **attempt_fields(job, failure, remedy),
    }


def calibration_fields(job: LedgerJob, status: Mapping[str, Any]) -> dict[str, Any]:
    """What calibrates later estimates: the estimate's seconds by part and its key (from the spec; absent on specs
    planned before them), the calibration that was in force when it was planned, and what the job actually spent
    per part (`calibration.actual_seconds` of the row's time split and metrics)."""
    estimated = job.get("estimated_seconds")
    return {
        "estimated_seconds": to_dynamo_value({k: float(v) for k, v in estimated.items()}) if estimated else None,
        CALIBRATION_KEY: job.get("calibration_key"),
        "calibration": to_dynamo_value(job.get("calibration")) if job.get("calibration") else None,
        "actual_seconds": to_dynamo_value(
            calibration.actual_seconds(
                {"time_split_seconds": status.get("time_split_seconds"), "metrics": status.get("metrics")}
            )
        )
        or None,
    }


def attempt_fields(
    job: LedgerJob, failure: Mapping[str, Any] | None = None, remedy: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A row's attempt fields: number, the job it belongs to, its failure class and evidence, and what came next."""
    fields: dict[str, Any] = {
        "attempt": job.get("attempt") or 1,
        "base_job_name": job.get("base_job_name") or job["job_name"],
        "failure_class": (failure or {}).get("failure_class"),
        "failure_evidence": (failure or {}).get("failure_evidence"),
    }
    if remedy:
        fields["remedy"] = {
            "action": remedy.get("action"),
            "remedy": remedy.get("remedy"),
            "cause": remedy.get("cause"),
            "hint": remedy.get("hint") or None,
            "next_job_name": (remedy.get("job") or {}).get("job_name"),
        }
    if job.get("remedies_applied"):
        fields["remedies_applied"] = list(job["remedies_applied"])
    return fields


# DynamoDB errors that a later attempt gets past (botocore retries them first; these are what is left after it gave
# up). Record's state catches anything else into "Unrecorded", where a billed job would silently miss the ledger.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "InternalServerError",
    }
)


def put_row(dynamodb: Any, table_name: str, row: dict[str, Any]) -> None:
    """Write (or overwrite with identical content) one item; `Throttled` (retried by the state machine) when DynamoDB
    is throttling or conflicting after the SDK's own retries.

    An index key attribute may be absent but never NULL (DynamoDB refuses the write), so a row without a creation
    time (a job that never started) is written without `created_at` and stays out of the indexes, and one without
    a calibration key (a spec planned before calibration) stays out of the calibration index."""
    item = {
        key: _serializer.serialize(value)
        for key, value in to_dynamo_value(row).items()
        if not (value is None and key in _INDEX_KEYS)
    }
    try:
        dynamodb.put_item(TableName=table_name, Item=item)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in TRANSIENT_ERROR_CODES:
            raise Throttled(f"PutItem {row.get('pk')}/{row.get('sk')} on {table_name}: {code}") from None
        raise


def run_rows(dynamodb: Any, table_name: str, run_id: str) -> list[dict[str, Any]]:
    """Every job row of a run, sorted by job name. Strongly consistent: Record wrote the last one moments ago."""
    return run_items(dynamodb, table_name, run_id, sk_prefix=job_sk(""))


def run_items(dynamodb: Any, table_name: str, run_id: str, *, sk_prefix: str = "") -> list[dict[str, Any]]:
    """Every item of a run whose sort key starts with `sk_prefix` (all of them, SUMMARY included, by default),
    sorted by sort key; strongly consistent."""
    condition, values = "pk = :pk", {":pk": {"S": run_pk(run_id)}}
    if sk_prefix:
        condition, values = f"{condition} AND begins_with(sk, :sk)", {**values, ":sk": {"S": sk_prefix}}
    rows: list[dict[str, Any]] = []
    paginator = dynamodb.get_paginator("query")
    for page in paginator.paginate(
        TableName=table_name, KeyConditionExpression=condition, ExpressionAttributeValues=values, ConsistentRead=True
    ):
        for item in page.get("Items", []):
            rows.append({key: _deserializer.deserialize(value) for key, value in item.items()})
    return rows


def model_approach_rows(
    dynamodb: Any, table_name: str, model: str, approach: str, limit: int = 10
) -> list[dict[str, Any]]:
    """The newest `limit` job rows of any run for one model x approach, newest first: one Query on the
    model x approach index (eventually consistent, as every GSI read is; earlier runs are long written)."""
    return _newest_on_index(
        dynamodb, table_name, MODEL_APPROACH_INDEX, MODEL_APPROACH_KEY, model_approach_key(model, approach), limit
    )


def _newest_on_index(
    dynamodb: Any, table_name: str, index: str, key_name: str, key: str, limit: int
) -> list[dict[str, Any]]:
    """The newest `limit` items of one partition of an index sorted by `created_at`: one Query, newest first."""
    response = dynamodb.query(
        TableName=table_name,
        IndexName=index,
        KeyConditionExpression="#key = :key",
        ExpressionAttributeNames={"#key": key_name},
        ExpressionAttributeValues={":key": {"S": key}},
        ScanIndexForward=False,
        Limit=limit,
    )
    return [{k: _deserializer.deserialize(v) for k, v in item.items()} for item in response.get("Items", [])]


def calibration_rows(dynamodb: Any, table_name: str, key: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `limit` job rows recorded under one calibration key, newest first: one Query on the calibration
    index (eventually consistent; Plan calibrates from jobs of earlier runs)."""
    return _newest_on_index(dynamodb, table_name, CALIBRATION_INDEX, CALIBRATION_KEY, key, limit)


def summary_rows(dynamodb: Any, table_name: str) -> list[dict[str, Any]]:
    """Every run's SUMMARY item, by run id (a filtered scan: the ledger has no index by time, and `finetune runs`
    reads it rarely)."""
    rows: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table_name,
        FilterExpression="sk = :summary",
        ExpressionAttributeValues={":summary": {"S": SUMMARY_SK}},
    ):
        for item in page.get("Items", []):
            rows.append({key: _deserializer.deserialize(value) for key, value in item.items()})
    return sorted(rows, key=lambda row: row["run_id"])


def summary_row(run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's SUMMARY item: the report's totals and bests, plus where the report lives."""
    return {"pk": run_pk(run_id), "sk": SUMMARY_SK, "run_id": run_id, **summary}
