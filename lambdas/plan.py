"""Plan: turn an execution input into fully resolved job specs, or refuse with a typed error. Launches nothing.

Order of checks, cheapest and most certain first: schema -> catalog semantics -> dataset exists -> prices and
budget -> quotas. Each refusal names the field or resource and what would be accepted, because the person reading
it is looking at a failed execution in the console, not at this code.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate
from botocore.exceptions import BotoCoreError, ClientError

from lambdas import catalog, cost, naming
from lambdas.errors import BudgetExceeded, DatasetNotFound, InvalidExecutionInput, QuotaExceeded

logger = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).parent / "schema" / "execution_input.v1.json"
DEFAULT_DATASET: dict[str, str] = {"name": "banking77"}
# SageMaker's ceiling for both MaxRuntimeInSeconds and MaxWaitTimeInSeconds.
MAX_SECONDS = catalog.MAX_RUNTIME_HOURS_LIMIT * 3600
_EXPERIMENT_FIELDS_FOR_NAME = (
    "instance_type",
    "instance_count",
    "epochs",
    "batch_size",
    "learning_rate",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "max_seq_length",
    "merge_adapter",
    "max_steps",
    "max_runtime_seconds",
)


@functools.cache
def load_schema() -> dict[str, Any]:
    """The execution-input JSON Schema v1 (the one source for input validation; the CLI uses it too)."""
    return json.loads(SCHEMA_PATH.read_text())


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------
def _field_path(name: str | None) -> str:
    # fastjsonschema names the data `data`, e.g. `data.experiments[0].approach`.
    text = name or "data"
    return text[len("data") :].lstrip(".") if text.startswith("data") else text


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe_schema_error(exc: SchemaValidationError) -> list[tuple[str, str]]:
    """(path, why) problems for a schema violation, phrased with what is allowed."""
    path = _field_path(exc.name)
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    value = exc.value
    if exc.rule == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(definition.get("properties", {}))
        unknown = sorted(set(value) - set(allowed))
        return [(_join(path, key), f"unknown field; allowed fields: {', '.join(allowed)}") for key in unknown]
    if exc.rule == "required" and isinstance(value, dict):
        missing = [key for key in (exc.rule_definition or []) if key not in value]
        return [(_join(path, key), "required field is missing") for key in missing]
    if exc.rule == "enum":
        allowed = ", ".join(str(v) for v in exc.rule_definition or [])
        return [(path or "input", f"must be one of: {allowed} (got {value!r})")]
    # Everything else: fastjsonschema's own words (without the `data.x` name) plus the field's description.
    why = exc.validation_message or str(exc)
    if exc.name and why.startswith(exc.name):
        why = why[len(exc.name) :].strip()
    why = f"{why} (got {json.dumps(value, default=str)[:200]})"
    if definition.get("description"):
        why += f"; {definition['description']}"
    return [(path or "input", why)]


def validate_schema(execution_input: Any) -> dict[str, Any]:
    """Validate against the JSON Schema; a copy is validated because fastjsonschema fills in defaults in place."""
    if execution_input is None:
        execution_input = {}
    data = copy.deepcopy(execution_input)
    try:
        validate(event=data, schema=load_schema())
    except SchemaValidationError as exc:
        raise InvalidExecutionInput(_describe_schema_error(exc)) from None
    return data


def _models_allowed() -> str:
    return ", ".join(catalog.MODELS) + ", or a Hugging Face model id 'org/name'"


def _resolve_experiment(
    index: int,
    experiment: dict[str, Any],
    doc: dict[str, Any],
    problems: list[tuple[str, str]],
    runtime_cap_hours: float | None,
) -> dict[str, Any] | None:
    """One experiment with every setting decided (catalog defaults filled in); None when it has problems."""
    path = f"experiments[{index}]"
    approach = experiment["approach"]
    try:
        model = catalog.resolve_model(experiment["model"], experiment.get("params_billion"))
    except KeyError:
        problems.append((f"{path}.model", f"unknown model {experiment['model']!r}; allowed: {_models_allowed()}"))
        return None
    if "params_billion" in experiment and experiment["model"] in catalog.MODELS:
        problems.append(
            (
                f"{path}.params_billion",
                f"only for Hugging Face ids; {model.key} is a catalog model of {model.params_billion}B",
            )
        )
        return None
    defaults = catalog.job_defaults(model.params_billion, approach)
    instance_type = experiment.get("instance_type", defaults.instance_type)
    instance = catalog.INSTANCES.get(instance_type)
    if instance is None:
        problems.append(
            (
                f"{path}.instance_type",
                f"unknown instance type {instance_type!r}; allowed: {', '.join(catalog.INSTANCES)}",
            )
        )
        return None
    if approach in catalog.GPU_ONLY_APPROACHES and not instance.has_gpu:
        gpu_types = ", ".join(name for name, spec in catalog.INSTANCES.items() if spec.has_gpu)
        problems.append(
            (
                f"{path}.instance_type",
                f"{approach} needs a GPU instance and {instance_type} has none; GPU types: {gpu_types}",
            )
        )
        return None
    # The default count belongs to the default type (two p4ds for 20B full); any other type starts at one.
    default_count = defaults.instance_count if instance_type == defaults.instance_type else 1
    # An explicit input value wins; otherwise the catalog's bound for this size/approach, capped by the deployment's.
    hours = doc.get("max_runtime_hours") or min(defaults.max_runtime_hours, runtime_cap_hours or math.inf)
    runtime = min(max(1, round(hours * 3600)), MAX_SECONDS)
    instance_count = experiment.get("instance_count", default_count)
    return {
        "model_key": model.key,
        "model_id": model.hf_id,
        "approach": approach,
        "instance_type": instance_type,
        "instance_count": instance_count,
        "gpus_per_instance": instance.gpus,
        "fsdp": catalog.needs_fsdp(model.params_billion, approach, instance_type, instance_count),
        "epochs": experiment.get("epochs", catalog.DEFAULT_EPOCHS),
        "batch_size": experiment.get("batch_size", defaults.batch_size),
        # Present-and-null means "auto" (the training code chooses); absent means the catalog default.
        "learning_rate": experiment.get("learning_rate", defaults.learning_rate),
        "lora_r": experiment.get("lora_r", catalog.DEFAULT_LORA_R),
        "lora_alpha": experiment.get("lora_alpha", catalog.DEFAULT_LORA_ALPHA),
        "lora_dropout": experiment.get("lora_dropout", catalog.DEFAULT_LORA_DROPOUT),
        "max_seq_length": experiment.get("max_seq_length", catalog.DEFAULT_MAX_SEQ_LENGTH),
        "merge_adapter": experiment.get("merge_adapter", catalog.DEFAULT_MERGE_ADAPTER),
        "max_steps": experiment.get("max_steps", catalog.DEFAULT_MAX_STEPS),
        "max_runtime_seconds": runtime,
    }


def validate_execution_input(
    execution_input: Any, *, default_max_runtime_hours: float | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Schema + catalog checks without touching AWS (the CLI runs this before starting an execution).

    Returns the validated input (schema defaults filled in) and the resolved experiments (the study matrix when
    `experiments` is omitted). `default_max_runtime_hours` is the deployment's cap on default runtime bounds.
    Raises `InvalidExecutionInput` listing every problem found.
    """
    doc = validate_schema(execution_input)
    experiments = doc.get("experiments") or [
        {"model": model, "approach": approach} for model, approach in catalog.STUDY_MATRIX
    ]
    problems: list[tuple[str, str]] = []
    resolved = [
        _resolve_experiment(i, exp, doc, problems, default_max_runtime_hours) for i, exp in enumerate(experiments)
    ]
    if problems:
        raise InvalidExecutionInput(problems)
    return doc, [r for r in resolved if r is not None]


# ---------------------------------------------------------------------------------------------------------------------
# Job specs
# ---------------------------------------------------------------------------------------------------------------------
def dataset_location(doc: dict[str, Any], bucket: str) -> tuple[str, str]:
    """(train, test) S3 prefixes of the input's dataset (default: the bucket's banking77)."""
    dataset = doc.get("dataset", DEFAULT_DATASET)
    if "name" in dataset:
        return naming.dataset_uris(bucket, dataset["name"])
    return dataset["train_s3_uri"], dataset["test_s3_uri"]


def catalog_price(instance_type: str) -> cost.Price:
    """The catalog's fallback price (offline estimates, e.g. the CLI without credentials)."""
    return cost.Price(cost.to_decimal(catalog.INSTANCES[instance_type].hourly_price_usd), cost.PRICE_SOURCE_CATALOG)


def _max_wait(runtime_seconds: int) -> int:
    return max(runtime_seconds, min(runtime_seconds * catalog.SPOT_MAX_WAIT_FACTOR, MAX_SECONDS))


def build_jobs(
    doc: dict[str, Any],
    experiments: list[dict[str, Any]],
    *,
    run_id: str,
    bucket: str,
    job_name_prefix: str,
    price_of: Callable[[str], cost.Price],
) -> list[dict[str, Any]]:
    """JobSpecs (docs/architecture.md) for resolved experiments; `InvalidExecutionInput` on duplicate experiments."""
    spot = doc.get("spot", catalog.DEFAULT_SPOT)
    eval_samples = doc.get("eval_samples", catalog.DEFAULT_EVAL_SAMPLES)
    train_uri, test_uri = dataset_location(doc, bucket)
    prices: dict[str, cost.Price] = {}
    jobs: list[dict[str, Any]] = []
    first_index_of_name: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    for index, exp in enumerate(experiments):
        # The name hashes everything that makes this job different, so two experiments that differ only in, say,
        # learning rate get two names; two identical ones get one name, and are refused below.
        variant = naming.variant_key(
            {
                **{field: exp[field] for field in _EXPERIMENT_FIELDS_FOR_NAME},
                "spot": spot,
                "eval_samples": eval_samples,
                "train": train_uri,
                "test": test_uri,
            }
        )
        job_name = naming.training_job_name(job_name_prefix, run_id, exp["model_key"], exp["approach"], variant)
        if job_name in first_index_of_name:
            problems.append(
                (
                    f"experiments[{index}]",
                    f"duplicates experiments[{first_index_of_name[job_name]}] (same model, approach and "
                    "settings): it would train the same job twice",
                )
            )
            continue
        first_index_of_name[job_name] = index
        if exp["instance_type"] not in prices:
            prices[exp["instance_type"]] = price_of(exp["instance_type"])
        price = prices[exp["instance_type"]]
        runtime = exp["max_runtime_seconds"]
        estimate = cost.estimated_max_cost_usd(runtime, exp["instance_count"], price.hourly_usd)
        jobs.append(
            {
                "run_id": run_id,
                "job_name": job_name,
                **{key: exp[key] for key in ("model_key", "model_id", "approach", "gpus_per_instance", "fsdp")},
                # The fields that make this job different, as hashed into its name above.
                **{field: exp[field] for field in _EXPERIMENT_FIELDS_FOR_NAME},
                "spot": spot,
                "eval_samples": eval_samples,
                # Waiting for spot capacity is not billed, so allow it generously; SageMaker needs wait >= runtime.
                "max_wait_seconds": _max_wait(runtime) if spot else None,
                "hourly_price_usd": float(price.hourly_usd),
                "price_source": price.source,
                "estimated_max_cost_usd": float(estimate),
                "train_s3_uri": train_uri,
                "test_s3_uri": test_uri,
                "checkpoint_s3_uri": naming.checkpoint_uri(bucket, run_id, job_name),
                "output_s3_uri": naming.output_uri(bucket, exp["model_key"], exp["approach"]),
            }
        )
    if problems:
        raise InvalidExecutionInput(problems)
    return jobs


# ---------------------------------------------------------------------------------------------------------------------
# Checks against AWS
# ---------------------------------------------------------------------------------------------------------------------
def check_dataset(s3: Any, doc: dict[str, Any], train_uri: str, test_uri: str) -> None:
    """`DatasetNotFound` unless both prefixes hold at least one object.

    Access denied is only a warning: Plan's role may list only `datasets/` of the data bucket while the SageMaker
    role can read the given location, and a truly missing channel still fails the training job.
    """
    empty: list[str] = []
    for uri in (train_uri, test_uri):
        bucket, prefix = naming.split_s3_uri(uri)
        try:
            response = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                empty.append(uri)
                continue
            if code in ("AccessDenied", "403"):
                logger.warning("cannot list %s (%s); assuming the training role can read it", uri, code)
                continue
            raise
        if response.get("KeyCount", 0) == 0:
            empty.append(uri)
    if not empty:
        return
    dataset = doc.get("dataset", DEFAULT_DATASET)
    label = f"dataset {dataset['name']!r}" if "name" in dataset else "the dataset"
    raise DatasetNotFound(
        f"{label} has no objects under {' and '.join(empty)}. Upload JSON Lines files of "
        '{"text": ..., "label": ...} rows there first (the CLI\'s `finetune data` command, or '
        f"`aws s3 cp train.jsonl {empty[0]}`), or set dataset to an existing location."
    )


def enforce_budget(jobs: list[dict[str, Any]], budget_usd: float) -> float:
    """Total estimated maximum cost; `BudgetExceeded` with a per-job breakdown when it is above the budget."""
    total = sum((cost.to_decimal(job["estimated_max_cost_usd"]) for job in jobs), cost.to_decimal(0))
    if total <= cost.to_decimal(budget_usd):
        return float(total)
    lines = [
        f"- {job['job_name']} ({job['model_key']} {job['approach']}): "
        f"{job['max_runtime_seconds'] / 3600:g} h x {job['instance_count']} x {job['instance_type']} "
        f"at ${job['hourly_price_usd']:g}/h ({job['price_source']}) = ${job['estimated_max_cost_usd']:.2f}"
        for job in jobs
    ]
    raise BudgetExceeded(
        f"estimated maximum cost ${total:.2f} exceeds the budget ${budget_usd:.2f}. Per job (max runtime x "
        "instances x hourly price):\n" + "\n".join(lines) + "\nRaise budget_usd, lower max_runtime_hours, or run "
        "fewer or smaller experiments."
    )


def _quota_values(quotas: Any) -> dict[str, float] | None:
    """Applied SageMaker quota values by name; None when the Service Quotas API cannot be read."""
    try:
        values: dict[str, float] = {}
        for page in quotas.get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker"):
            for quota in page.get("Quotas", []):
                if "QuotaName" in quota and "Value" in quota:
                    values[quota["QuotaName"]] = float(quota["Value"])
        return values
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "cannot read SageMaker quotas (%s); skipping the quota check, CreateTrainingJob will still "
            "refuse jobs over quota",
            exc,
        )
        return None


def instances_needed(jobs: list[dict[str, Any]], max_concurrency: int | None) -> dict[str, int]:
    """Instances of each type the run holds at once: all its jobs, or the largest `max_concurrency` of them."""
    counts: dict[str, list[int]] = defaultdict(list)
    for job in jobs:
        counts[job["instance_type"]].append(job["instance_count"])
    return {
        instance_type: sum(sorted(per_job, reverse=True)[: max_concurrency or len(per_job)])
        for instance_type, per_job in counts.items()
    }


def check_quotas(quotas: Any, jobs: list[dict[str, Any]], *, spot: bool, max_concurrency: int | None) -> None:
    """`QuotaExceeded` when an applied quota is below what the run's concurrent jobs need.

    Quotas are matched by name (never by code: codes differ per type and are not documented as stable). A quota
    the API does not list, or an API error, counts as unknown: warn and go on.
    """
    needed = instances_needed(jobs, max_concurrency)
    values = _quota_values(quotas)
    if values is None:
        return
    shortfalls = []
    for instance_type, count in sorted(needed.items()):
        name = catalog.training_quota_name(instance_type, spot)
        value = values.get(name)
        if value is None:
            logger.warning("quota %r not listed; skipping its check", name)
        elif value < count:
            shortfalls.append(
                f"{instance_type}: quota '{name}' is {value:g} instances but this run needs {count} at once"
            )
    if shortfalls:
        raise QuotaExceeded(
            "SageMaker quota too low: " + "; ".join(shortfalls) + ". Request an increase in Service Quotas "
            "(service code sagemaker), choose another instance_type, "
            + ("or set spot to false if the on-demand quota is higher." if spot else "or run fewer jobs at once.")
        )


def plan_run(
    execution_input: Any,
    execution_name: str,
    *,
    bucket: str,
    job_name_prefix: str,
    region: str,
    default_budget_usd: float,
    max_concurrency: int | None = None,
    default_max_runtime_hours: float | None = None,
    s3: Any,
    pricing: Any,
    quotas: Any,
) -> dict[str, Any]:
    """The Plan step: `{"run_id", "jobs", "total_estimated_max_cost_usd", "budget_usd"}` or a typed error."""
    doc, experiments = validate_execution_input(execution_input, default_max_runtime_hours=default_max_runtime_hours)
    run_id = naming.run_id_from_execution_name(execution_name)
    train_uri, test_uri = dataset_location(doc, bucket)
    check_dataset(s3, doc, train_uri, test_uri)
    jobs = build_jobs(
        doc,
        experiments,
        run_id=run_id,
        bucket=bucket,
        job_name_prefix=job_name_prefix,
        price_of=lambda instance_type: cost.lookup_hourly_price(pricing, instance_type, region),
    )
    budget = float(doc.get("budget_usd", default_budget_usd))
    total = enforce_budget(jobs, budget)
    check_quotas(quotas, jobs, spot=doc.get("spot", catalog.DEFAULT_SPOT), max_concurrency=max_concurrency)
    return {"run_id": run_id, "jobs": jobs, "total_estimated_max_cost_usd": total, "budget_usd": budget}
