"""Plan: turn an execution input into fully resolved job specs, or refuse with a typed error. Launches nothing.

Order of checks, cheapest and most certain first: schema -> catalog semantics -> memory fit -> dataset location and
existence -> prices and budget -> execution limits -> the Hub token of gated models -> quotas. Each refusal names the
field or resource and what would be accepted, because the person reading it is looking at a failed execution in the
console, not at this code.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import re
import time
import unicodedata
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import fastjsonschema
from botocore.exceptions import BotoCoreError, ClientError

from lambdas import approaches, calibration, catalog, cost, estimate, ledger, memory, naming
from lambdas.errors import (
    BudgetExceeded,
    ConfigurationError,
    DatasetNotFound,
    ExecutionLimitExceeded,
    HfTokenMissing,
    InfeasibleJob,
    InvalidExecutionInput,
    QuotaExceeded,
)
from lambdas.job_spec import Hyperparameters, JobSpec, PlanOutput
from lambdas.quotas import quota_shortfalls, sagemaker_quotas
from lambdas.remedies import RemedyPolicy, parse_policy
from lambdas.settings import PlanSettings

logger = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).parent / "schema" / "execution_input.v1.json"
DEFAULT_DATASET: dict[str, str] = {"name": "banking77"}
# SageMaker's ceiling for both MaxRuntimeInSeconds and MaxWaitTimeInSeconds.
MAX_SECONDS = catalog.MAX_RUNTIME_HOURS_LIMIT * 3600
# The prefix of the data bucket that the SageMaker execution role may read (S3 layout contract).
DATASETS_PREFIX = "datasets/"


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


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _join(path: str, key: Any) -> str:
    # An unknown key may be anything (empty, a newline, an injection): quote it, so the path still names it and a
    # log line stays one line.
    if not (isinstance(key, str) and _PLAIN_KEY.fullmatch(key)):
        return f"{path}[{json.dumps(key, default=str)}]"
    return f"{path}.{key}" if path else key


@functools.cache
def _schema_validator() -> Callable[[Any], Any]:
    """The schema compiled once per process: compiling it costs ~50 ms, more than validating any input."""
    return fastjsonschema.compile(load_schema())


def _describe_schema_error(exc: fastjsonschema.JsonSchemaValueException) -> list[tuple[str, str]]:
    """(path, why) problems for a schema violation, phrased with what is allowed."""
    path = _field_path(exc.name)
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    value = exc.value
    if exc.rule == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(definition.get("properties", {}))
        unknown = sorted(set(value) - set(allowed), key=str)
        return [(_join(path, key), f"unknown field; allowed fields: {', '.join(allowed)}") for key in unknown]
    if exc.rule == "required" and isinstance(value, dict):
        missing = [key for key in (exc.rule_definition or []) if key not in value]
        return [(_join(path, key), "required field is missing") for key in missing]
    if exc.rule == "enum":
        choices = ", ".join(str(v) for v in exc.rule_definition or [])
        return [(path or "input", f"must be one of: {choices} (got {value!r})")]
    # Everything else: fastjsonschema's own words (without the `data.x` name) plus the field's description.
    why = exc.message or str(exc)
    if exc.name and why.startswith(exc.name):
        why = why[len(exc.name) :].strip()
    why = f"{why} (got {json.dumps(value, default=str)[:200]})"
    if definition.get("description"):
        why += f"; {definition['description']}"
    return [(path or "input", why)]


# Unicode categories no value of an execution input may hold: control and format characters (e.g. the right-to-left
# override), surrogates, private-use and unassigned code points, line and paragraph separators. JSON Schema patterns
# do not stop them everywhere (an S3 URI's key is free text), and AWS APIs refuse or mangle them.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _unrepresentable(value: Any, path: str) -> list[tuple[str, str]]:
    """Problems JSON Schema does not see: NaN and infinities pass every numeric bound (each comparison with NaN is
    false) and are not JSON; unprintable characters pass `.+` patterns."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(path or "input", f"must be a finite number (got {value})")]
    if isinstance(value, str):
        bad = sorted({f"U+{ord(c):04X}" for c in value if unicodedata.category(c) in _UNPRINTABLE_CATEGORIES})
        return [(path or "input", f"contains unprintable characters ({', '.join(bad[:5])})")] if bad else []
    if isinstance(value, dict):
        return [problem for key, item in value.items() for problem in _unrepresentable(item, _join(path, key))]
    if isinstance(value, list):
        return [problem for i, item in enumerate(value) for problem in _unrepresentable(item, f"{path}[{i}]")]
    return []


def validate_schema(execution_input: Any) -> dict[str, Any]:
    """Validate against the JSON Schema; a copy is validated because fastjsonschema fills in defaults in place."""
    if execution_input is None:
        execution_input = {}
    data = copy.deepcopy(execution_input)
    try:
        _schema_validator()(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidExecutionInput(_describe_schema_error(exc)) from None
    problems = _unrepresentable(data, "")
    if problems:
        raise InvalidExecutionInput(problems)
    return data


def _models_allowed() -> str:
    return ", ".join(catalog.MODELS) + ", or a Hugging Face model id 'org/name'"


# Fetches a Hub model's config.json (None when it cannot: no network, gated, missing); see `fetch_hub_config`.
HubConfigFetcher = Callable[[str], Mapping[str, Any] | None]


def resolve_experiment_model(experiment: Mapping[str, Any], fetch_config: HubConfigFetcher | None) -> catalog.Model:
    """The experiment's model. A Hub id is sized from, in order: the input's `architecture` (the CLI reads config.json
    with the user's token), the config.json `fetch_config` gets from the Hub, and `params_billion` (a guessed Llama
    shape, 7B when absent). `KeyError` for an unknown model; `catalog.ModelConfigError` for an input `architecture`
    that describes no model. A fetched config.json the planner cannot size falls back to `params_billion` (logged):
    the input is not at fault."""
    model = experiment["model"]
    if model in catalog.MODELS or not catalog.is_hf_id(model):
        return catalog.resolve_model(model)
    if experiment.get("architecture") is not None:
        return catalog.resolve_model(model, architecture=experiment["architecture"], sized_from=catalog.SizedFrom.INPUT)
    fetched = fetch_config(model) if fetch_config is not None else None
    if fetched is not None:
        try:
            architecture = catalog.Architecture.from_hf_config(fetched)
        except catalog.ModelConfigError as exc:
            logger.warning("%s: its config.json cannot be sized (%s); sizing it from params_billion", model, exc)
        else:
            return catalog.resolve_model(model, architecture=architecture, sized_from=catalog.SizedFrom.HUB)
    return catalog.resolve_model(model, experiment.get("params_billion"))


HUB_ENDPOINT = "https://huggingface.co"
# Plan's Lambda waits this long for one config.json (a few KB) before sizing the model from params_billion.
HUB_CONFIG_TIMEOUT_SECONDS = 5.0


def fetch_hub_config(
    model_id: str,
    *,
    endpoint: str = HUB_ENDPOINT,
    timeout: float = HUB_CONFIG_TIMEOUT_SECONDS,
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> dict[str, Any] | None:
    """`<model_id>`'s config.json from the Hub's main revision, unauthenticated; None (logged) when it cannot be read.

    Plan never reads the token secret (it only checks it has a value: `check_hf_token`), so a gated model's file
    answers 401 here and the model is sized from the input: `finetune start` sends its `architecture`, read with the
    user's own token."""
    url = f"{endpoint}/{model_id}/resolve/main/config.json"
    try:
        with opener(urllib.request.Request(url, headers={"User-Agent": "finetune-plan"}), timeout=timeout) as response:
            found = json.loads(response.read(_HUB_CONFIG_MAX_BYTES))
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors; bad JSON a ValueError
        logger.warning("cannot read %s (%s); %s is sized from params_billion", url, exc, model_id)
        return None
    return found if isinstance(found, dict) else None


# A config.json is a few KB; a response larger than this is not one.
_HUB_CONFIG_MAX_BYTES = 1 << 20


def cached_fetcher(fetch: HubConfigFetcher) -> HubConfigFetcher:
    """`fetch` asked once per model id (an input names a model for several approaches and its baseline)."""
    return functools.lru_cache(maxsize=None)(fetch)


def _resolve_settings(
    experiment: dict[str, Any], doc: dict[str, Any], model: catalog.Model, defaults: catalog.JobDefaults
) -> dict[str, Any]:
    """Every hyperparameter of one job, from the catalog's table: the input's value, else its default (`defaults`,
    the size class's, decide instance, batch size and learning rate). Planner-decided ones are filled in later."""
    values: dict[str, Any] = {}
    approach = experiment["approach"]
    for hp in catalog.HYPERPARAMETERS:
        if hp.source is catalog.Source.EXPERIMENT:
            fallback = getattr(defaults, hp.name) if hp.default == catalog.BY_SIZE_CLASS else hp.default
            if not catalog.applies(hp.name, approach):
                # A baseline trains nothing: its training settings keep their defaults (and Launch does not send them).
                if experiment.get(hp.name, fallback) != fallback:
                    logger.info("%s is ignored for approach %s (no training)", hp.name, approach)
                values[hp.name] = fallback
                continue
            # Present-and-null learning_rate means "auto" (the training code chooses): `get` keeps the None.
            values[hp.name] = experiment.get(hp.name, fallback)
        elif hp.source is catalog.Source.RUN:
            values[hp.name] = doc.get(hp.name, hp.default)
        elif hp.source is catalog.Source.FIXED:
            values[hp.name] = hp.default
    # The default count belongs to the default type (two p4ds for 20B full); any other type starts at one.
    if values["instance_type"] != defaults.instance_type:
        values["instance_count"] = experiment.get("instance_count", 1)
    if approach == catalog.BASELINE:
        # Forced (the schema's default, compact, fills every experiment): a model that was never trained cannot know
        # the labels a compact prompt leaves out.
        values["prompt_style"] = catalog.BASELINE_PROMPT_STYLE
    values["model_id"] = model.hf_id
    return values


def _resolve_experiment(
    index: int,
    experiment: dict[str, Any],
    doc: dict[str, Any],
    problems: list[tuple[str, str]],
    runtime_cap_hours: float | None,
    fetch_config: HubConfigFetcher | None = None,
) -> tuple[catalog.Model, dict[str, Any]] | None:
    """The model and every setting of one experiment (fit not yet planned); None when it has problems."""
    path = f"experiments[{index}]"
    approach = experiment["approach"]
    try:
        model = resolve_experiment_model(experiment, fetch_config)
    except KeyError:
        problems.append((f"{path}.model", f"unknown model {experiment['model']!r}; allowed: {_models_allowed()}"))
        return None
    except catalog.ModelConfigError as exc:
        problems.append((f"{path}.architecture", str(exc)))
        return None
    for field in ("params_billion", "architecture"):
        if field in experiment and experiment["model"] in catalog.MODELS:
            problems.append(
                (
                    f"{path}.{field}",
                    f"only for Hugging Face ids; {model.key} is a catalog model of {model.params_billion:.2f}B",
                )
            )
            return None
    logger.info("experiments[%d]: %s sized from %s (%.2fB)", index, model.key, model.sized_from, model.params_billion)
    defaults = catalog.job_defaults(model.params_billion, approach)
    instance_type = experiment.get("instance_type", defaults.instance_type)
    if unsupported := catalog.unsupported_reason(instance_type):
        problems.append((f"{path}.instance_type", f"{instance_type} cannot run the training image: {unsupported}"))
        return None
    instance = catalog.trainable_instances().get(instance_type)
    if instance is None:
        problems.append(
            (
                f"{path}.instance_type",
                f"unknown instance type {instance_type!r}; allowed: {', '.join(catalog.trainable_instances())}",
            )
        )
        return None
    if approaches.get(approach).gpu_only and not instance.has_gpu:
        gpu_types = ", ".join(name for name, spec in catalog.INSTANCES.items() if spec.has_gpu)
        problems.append(
            (
                f"{path}.instance_type",
                f"{approach} needs a GPU instance and {instance_type} has none; GPU types: {gpu_types}",
            )
        )
        return None
    if approach == catalog.BASELINE:
        baseline_problems = _baseline_problems(experiment)
        if baseline_problems:
            problems.extend((f"{path}.{name}", why) for name, why in baseline_problems)
            return None
    values = _resolve_settings(experiment, doc, model, defaults)
    # An explicit input value wins; otherwise the catalog's bound for this size/approach, capped by the deployment's.
    hours = doc.get("max_runtime_hours") or min(defaults.max_runtime_hours, runtime_cap_hours or math.inf)
    values["max_runtime_seconds"] = min(max(1, round(hours * 3600)), MAX_SECONDS)
    values["model_key"] = model.key
    values["gpus_per_instance"] = instance.gpus
    # The model as sized here travels with the job (catalog.model_of_job): every later step plans the same model.
    values.update(catalog.job_model_fields(model))
    return model, values


def _baseline_problems(experiment: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, why) for settings a zero-shot baseline cannot honour (training-only ones are ignored, not refused,
    and its prompt style is always listed)."""
    found = []
    if experiment.get("instance_count", 1) != 1:
        found.append(
            ("instance_count", "a baseline runs one process on one instance (its model spreads over that one's GPUs)")
        )
    return found


def _shape(model: catalog.Model, values: dict[str, Any], rows: float) -> estimate.JobShape:
    """The time model's view of a resolved experiment, on its resolved (or default) instance."""
    return estimate.shape_of(
        {**values, "strategy": values.get("strategy") or memory.Strategy.SINGLE, "hourly_price_usd": None},
        model=model,
        rows=rows,
    )


def plan_fit(model: catalog.Model, values: dict[str, Any]) -> memory.FitEstimate:
    """The memory planner's fit of one planned experiment (its instance, count, batch and strategy); `InfeasibleJob`
    when it does not fit. (The CLI's estimate shows it per job.)"""
    shape = _shape(model, values, float(catalog.DEFAULT_TRAIN_ROWS))
    fit = memory.estimate(shape.workload, shape.placement, shape.strategy)
    if not fit.fits:
        memory.plan_fit(shape.workload, shape.placement)  # raises with every strategy's numbers and an alternative
    return fit


def plan_placement(
    model: catalog.Model, values: dict[str, Any], asked: dict[str, Any], rows: float
) -> estimate.PlannedJob:
    """The cheapest expected plan for one resolved experiment: on the instance type the input names (any count it
    names, else one), else over the plannable families (`catalog.PLANNABLE_FAMILIES`); the input's batch_size is kept,
    else each strategy gets the per-device batch that keeps the study's global batch. `InfeasibleJob` (with every
    strategy's numbers and the cheapest feasible alternative) when nothing fits. An instance_count without an
    instance_type is kept: the planner chooses the type for that many instances."""
    shape = _shape(model, values, rows)
    fixed_batch = "batch_size" in asked or not catalog.applies("batch_size", values["approach"])
    if "instance_type" in asked:
        shape = replace(shape, instance_type=asked["instance_type"], instance_count=asked.get("instance_count", 1))
        found = estimate.cheapest_on(shape, fixed_batch=fixed_batch)
    else:
        counts = (asked["instance_count"],) if "instance_count" in asked else None
        found = estimate.cheapest_plan(shape, counts=counts, fixed_batch=fixed_batch)
    if found is None:
        memory.plan_fit(shape.workload, shape.placement)  # raises: nothing fits
        raise InfeasibleJob(f"{model.key} {values['approach']}: no plannable instance type fits it")
    return found


# A job's default runtime bound is at least this many times its high estimate (spot interruptions and restarts,
# a slow download), in whole hours.
RUNTIME_BOUND_PER_HIGH_ESTIMATE = 2


def runtime_bound_seconds(
    doc: dict[str, Any], floor_seconds: int, found: estimate.JobEstimate, cap_hours: float | None
) -> int:
    """MaxRuntime: the input's max_runtime_hours when given; else the catalog's bound for the size class and approach
    raised to RUNTIME_BOUND_PER_HIGH_ESTIMATE x the plan's high estimate (whole hours), capped by the deployment's."""
    if doc.get("max_runtime_hours"):
        return floor_seconds
    hours = math.ceil(RUNTIME_BOUND_PER_HIGH_ESTIMATE * found.high_seconds["total"] / 3600)
    seconds = max(floor_seconds, hours * 3600)
    return min(seconds, round(cap_hours * 3600) if cap_hours else seconds, MAX_SECONDS)


def requested_experiments(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The experiments a validated input asks for: its own, or the study matrix when `experiments` is omitted; with
    `baselines`, followed by a baseline for each of their models that has none (see `with_baselines`)."""
    experiments = doc.get("experiments") or [
        {"model": model, "approach": approach} for model, approach in catalog.STUDY_MATRIX
    ]
    return with_baselines(experiments) if doc.get("baselines") else experiments


def with_baselines(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`experiments` plus one zero-shot baseline per model (and Hub size or shape) that has none, in order of first use.

    A baseline takes only the model's identity: every other setting is the baseline defaults of its size class.
    """

    def identity(experiment: dict[str, Any]) -> tuple[str, Any, str]:
        return experiment["model"], experiment.get("params_billion"), json.dumps(experiment.get("architecture"))

    covered = {identity(exp) for exp in experiments if exp["approach"] == catalog.BASELINE}
    added: list[dict[str, Any]] = []
    for experiment in experiments:
        key = identity(experiment)
        if key in covered:
            continue
        covered.add(key)
        baseline = {"model": experiment["model"], "approach": catalog.BASELINE}
        for field in ("params_billion", "architecture"):
            if field in experiment:
                baseline[field] = experiment[field]
        added.append(baseline)
    return [*experiments, *added]


def task_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, why) when the input's primary metric is not one its task reports (e.g. intent accuracy for sft)."""
    task = doc.get("task") or catalog.CLASSIFICATION
    requested = doc.get("primary_metric")
    allowed = catalog.TASK_QUALITY_METRICS[task]
    if requested is None or requested in allowed:
        return []
    return [("primary_metric", f"{requested} is not reported by task {task}; choose one of: {', '.join(allowed)}")]


def validate_execution_input(
    execution_input: Any,
    *,
    default_max_runtime_hours: float | None = None,
    fetch_config: HubConfigFetcher | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Schema, catalog and memory-fit checks without touching AWS (the CLI runs this before starting an execution).

    Returns the validated input (schema defaults filled in) and the resolved experiments (the study matrix when
    `experiments` is omitted), each with the planner's instance type and count, batch, `strategy` and
    `save_interval_seconds` (the cheapest expected plan that fits: `plan_placement`).
    `default_max_runtime_hours` is the deployment's cap on default runtime bounds; `fetch_config` reads a Hub model's
    config.json when the input has no `architecture` for it (`resolve_experiment_model`). Raises `InvalidExecutionInput`
    listing every input problem, then `InfeasibleJob` listing every experiment that does not fit.
    """
    doc = validate_schema(execution_input)
    experiments = requested_experiments(doc)
    problems: list[tuple[str, str]] = task_problems(doc)
    # Resolved once here, so every job spec (and the ledger row after it) names the metric its run is ranked by.
    doc["primary_metric"] = catalog.primary_metric(doc.get("task"), doc.get("primary_metric"))
    resolved = [
        _resolve_experiment(i, exp, doc, problems, default_max_runtime_hours, fetch_config)
        for i, exp in enumerate(experiments)
    ]
    if problems:
        raise InvalidExecutionInput(problems)
    planned: list[dict[str, Any]] = []
    infeasible: list[str] = []
    rows, _ = estimate.train_rows(doc.get("dataset", DEFAULT_DATASET).get("name"), task=doc.get("task"))
    for index, item in enumerate(resolved):
        assert item is not None  # no problems means every experiment resolved
        model, values = item
        try:
            chosen = plan_placement(model, values, experiments[index], rows)
        except InfeasibleJob as exc:
            infeasible.append(f"experiments[{index}]: {exc.message}")
            continue
        fit = chosen.fit
        logger.info("plan for experiments[%d]: %s", index, fit.describe())
        planned.append(
            {
                **values,
                "max_runtime_seconds": runtime_bound_seconds(
                    doc, values["max_runtime_seconds"], chosen.estimate, default_max_runtime_hours
                ),
                "instance_type": chosen.shape.instance_type,
                "instance_count": chosen.shape.instance_count,
                "gpus_per_instance": chosen.shape.instance.gpus,
                "batch_size": chosen.shape.batch_size,
                "strategy": fit.strategy.value,
                "save_interval_seconds": fit.save_interval_seconds,
            }
        )
    if infeasible:
        raise InfeasibleJob("\n".join(infeasible))
    return doc, planned


# ---------------------------------------------------------------------------------------------------------------------
# Job specs
# ---------------------------------------------------------------------------------------------------------------------
def dataset_location(doc: dict[str, Any], bucket: str) -> tuple[str, str]:
    """(train, test) S3 prefixes of the input's dataset (default: the bucket's banking77)."""
    dataset = doc.get("dataset", DEFAULT_DATASET)
    if "name" in dataset:
        return naming.dataset_uris(bucket, dataset["name"])
    return dataset["train_s3_uri"], dataset["test_s3_uri"]


def check_dataset_prefix(doc: dict[str, Any], bucket: str) -> None:
    """`InvalidExecutionInput` for dataset URIs outside `s3://<bucket>/datasets/`: the only prefix the SageMaker role
    may read, so a job pointed elsewhere would be billed for startup and then fail to download its channels."""
    dataset = doc.get("dataset", DEFAULT_DATASET)
    allowed = f"s3://{bucket}/{DATASETS_PREFIX}"
    problems = [
        (
            f"dataset.{field}",
            f"must be under {allowed} (the training role can read only that prefix); got {dataset[field]!r}. "
            f"Copy the data there, e.g. `aws s3 sync <source> {allowed}<name>/`",
        )
        for field in ("train_s3_uri", "test_s3_uri")
        if field in dataset and not dataset[field].startswith(allowed)
    ]
    if problems:
        raise InvalidExecutionInput(problems)


def catalog_price(instance_type: str) -> cost.Price:
    """The catalog's fallback price (offline estimates, e.g. the CLI without credentials)."""
    return cost.Price(cost.to_decimal(catalog.INSTANCES[instance_type].hourly_price_usd), cost.PRICE_SOURCE_CATALOG)


# Settings a job carries from its resolved experiment into its JobSpec: every hyperparameter but the deployment's.
def spec_hyperparameters(experiment: Mapping[str, Any]) -> Hyperparameters:
    """A resolved experiment's hyperparameters as the JobSpec holds them: the catalog's HYPERPARAMETERS less the
    deployment ones (a literal, so mypy checks the keys against the record; tests/lambdas check the record against
    the catalog)."""
    return {
        "approach": experiment["approach"],
        "model_id": experiment["model_id"],
        "instance_type": experiment["instance_type"],
        "instance_count": experiment["instance_count"],
        "epochs": experiment["epochs"],
        "batch_size": experiment["batch_size"],
        "learning_rate": experiment["learning_rate"],
        "lora_r": experiment["lora_r"],
        "lora_alpha": experiment["lora_alpha"],
        "lora_dropout": experiment["lora_dropout"],
        "max_seq_length": experiment["max_seq_length"],
        "prompt_style": experiment["prompt_style"],
        "merge_adapter": experiment["merge_adapter"],
        "max_steps": experiment["max_steps"],
        "eval_samples": experiment["eval_samples"],
        "task": experiment["task"],
        "primary_metric": experiment["primary_metric"],
        "spot": experiment["spot"],
        "strategy": experiment["strategy"],
        "save_interval_seconds": experiment["save_interval_seconds"],
        "seed": experiment["seed"],
        "gradient_accumulation_steps": experiment["gradient_accumulation_steps"],
        "warmup_ratio": experiment["warmup_ratio"],
        "eval_batch_size": experiment["eval_batch_size"],
        "decoding": experiment["decoding"],
        "checkpoint_dir": experiment["checkpoint_dir"],
    }


def build_jobs(
    doc: dict[str, Any],
    experiments: list[dict[str, Any]],
    *,
    run_id: str,
    bucket: str,
    job_name_prefix: str,
    price_of: Callable[[str], cost.Price],
    train_bytes: int | None = None,
    calibrations: Mapping[str, calibration.Calibration] | None = None,
    test_bytes: int | None = None,
) -> list[JobSpec]:
    """JobSpecs for resolved experiments; `InvalidExecutionInput` on duplicate experiments.

    Each carries its maximum cost (the budget gate's figure), its expected time split and low / expected / high cost
    (`lambdas.estimate`), corrected by the calibration of its key when `calibrations` has one (`read_calibrations`),
    and which calibration that was; `train_bytes` and `test_bytes`, the channels' sizes when Plan could list them,
    size a dataset the catalog does not know (the test rows bound what `eval_samples` evaluates)."""
    train_uri, test_uri = dataset_location(doc, bucket)
    dataset_name = doc.get("dataset", DEFAULT_DATASET).get("name")
    rows, rows_source = estimate.train_rows(dataset_name, train_bytes, task=doc.get("task"))
    test_rows, _ = estimate.rows_in_test_split(dataset_name, test_bytes, task=doc.get("task"))
    prices: dict[str, cost.Price] = {}
    jobs: list[JobSpec] = []
    first_index_of_name: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    for index, exp in enumerate(experiments):
        # The name hashes everything that makes this job different (the table's job-name fields, the runtime bound
        # and the data), so two experiments that differ only in, say, learning rate get two names; two identical ones
        # get one name, and are refused below.
        variant = naming.variant_key(
            {
                **{field: exp[field] for field in catalog.JOB_NAME_FIELDS},
                "max_runtime_seconds": exp["max_runtime_seconds"],
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
        maximum = cost.estimated_max_cost_usd(runtime, exp["instance_count"], price.hourly_usd)
        hyperparameters = spec_hyperparameters(exp)
        key = calibration.job_calibration_key(exp)
        in_force = (calibrations or {}).get(key) or calibration.uncalibrated(key)
        found = estimate.estimate_for_job(
            {
                **hyperparameters,
                "hourly_price_usd": float(price.hourly_usd),
                "max_runtime_seconds": runtime,
                "estimated_test_rows": test_rows,
            },
            model=catalog.model_of_job(exp),
            rows=rows,
            rows_source=rows_source,
            calibration=in_force,
        )
        # A JobSpec literal: mypy checks that every field is there, and no other.
        spec: JobSpec = {
            "run_id": run_id,
            "job_name": job_name,
            "model_key": exp["model_key"],
            "gpus_per_instance": exp["gpus_per_instance"],
            **hyperparameters,
            "max_runtime_seconds": runtime,
            # Waiting for spot capacity is not billed, so allow it generously; SageMaker needs wait >= runtime.
            "max_wait_seconds": catalog.spot_max_wait_seconds(runtime) if exp["spot"] else None,
            "hourly_price_usd": float(price.hourly_usd),
            "price_source": price.source,
            "estimated_max_cost_usd": float(maximum),
            "train_s3_uri": train_uri,
            "test_s3_uri": test_uri,
            "checkpoint_s3_uri": naming.checkpoint_uri(bucket, run_id, job_name),
            "output_s3_uri": naming.output_uri(bucket, exp["model_key"], exp["approach"]),
            "architecture": exp["architecture"],
            "architecture_source": exp["architecture_source"],
            "params_billion": exp["params_billion"],
            **estimate.spec_fields(found, in_force),
            "estimated_train_rows": rows,  # a remedied attempt (lambdas/remedies.py) re-estimates from it
            "estimated_test_rows": test_rows,  # and from it (eval_samples "all", or a number capped at it)
        }
        jobs.append(spec)
    if problems:
        raise InvalidExecutionInput(problems)
    return jobs


# Plan stops reading calibrations after this long (the keys left use the table): with the handler's short client
# (2 attempts, 10 s read timeout: 31 s at worst per Query) all reads stay within one default call's budget, which
# is what Plan's Lambda timeout allows for them (stacks/constructs/workflow.py CALLS_AT_WORST).
CALIBRATION_READ_SECONDS = 60.0


def read_calibrations(
    dynamodb: Any,
    table_name: str,
    experiments: list[dict[str, Any]],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, calibration.Calibration]:
    """The calibration of each distinct key among `experiments`, from the newest recorded jobs under it (one Query
    per key on the ledger's calibration index); keys no job calibrates are absent (the table's values apply).

    A key whose read still fails after botocore's retries, or comes after `CALIBRATION_READ_SECONDS` of reads, is
    estimated from the table: a correction is worth having, not worth refusing or delaying a run for."""
    rows: list[dict[str, Any]] = []
    started = clock()
    for key in sorted({calibration.job_calibration_key(exp) for exp in experiments}):
        if clock() - started > CALIBRATION_READ_SECONDS:
            logger.warning("calibration of %s not read (reads took too long), the time model's table applies", key)
            continue
        try:
            rows += ledger.calibration_rows(dynamodb, table_name, key, calibration.RECENT_JOBS)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("calibration of %s not read, the time model's table applies: %s", key, exc)
    return calibration.calibrations(rows)


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


def channel_bytes(s3: Any, channel_uri: str, *, max_pages: int = 10) -> int | None:
    """Total size of the objects under a channel's prefix (first `max_pages` pages of 1,000), for the expected-cost
    estimate of a dataset the catalog has no row count for; None when it cannot be listed (the estimate then uses
    the catalog default)."""
    bucket, prefix = naming.split_s3_uri(channel_uri)
    total = 0
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for number, page in enumerate(pages):
            if number >= max_pages:
                break
            total += sum(int(item.get("Size", 0)) for item in page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "cannot size %s (%s); the expected cost assumes the catalog's default row count", channel_uri, exc
        )
        return None
    return total or None


def total_expected_cost(jobs: list[JobSpec]) -> float:
    """Sum of the jobs' expected costs (spot expected for spot jobs); shown beside the maximum, never gated on."""
    return round(sum(job["estimated_cost_usd"] for job in jobs), 4)


def enforce_budget(jobs: list[JobSpec], budget_usd: float) -> float:
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


# Step Functions Standard workflows keep at most 25,000 events in one execution's history.
HISTORY_EVENT_LIMIT = 25_000
# One Status poll is a Wait state and a Lambda task: ~9 history events (FIELD_NOTES, measured on this state machine's
# Wait -> Status -> Choice loop).
EVENTS_PER_POLL = 9
# Per job besides its polls: the Map iteration, Launch and Record tasks (~5 events each) and room for ~5 retried
# attempts (3 events each: a throttled Launch, a quota-bound Launch waiting for capacity).
EVENTS_PER_JOB = 40
# Per run: execution start and end, Plan, the Map state, Report and Notify.
EVENTS_PER_RUN = 40
# Per run: Plan, Report, Notify (per job: catalog.JOB_OVERHEAD_SECONDS).
RUN_OVERHEAD_SECONDS = 15 * 60


def check_execution_limits(
    jobs: list[JobSpec],
    *,
    max_concurrency: int | None,
    execution_timeout_seconds: int,
    status_poll_seconds: int,
    attempts_per_job: int = 1,
) -> None:
    """`ExecutionLimitExceeded` when the run could outlast the execution's timeout or event-history limit.

    The model: each job's worst case is its SageMaker bound (MaxWait for spot, which includes the runtime; MaxRuntime
    on demand) plus one poll interval and its Launch/Record overhead. The Map runs at most `max_concurrency` jobs at
    once and starts the next as soon as one ends (list scheduling), so the run ends by Graham's bound
    sum(job worst cases) / max_concurrency + (1 - 1/max_concurrency) x the longest one - roughly ceil(jobs /
    max_concurrency) waves of the longest job. Each job polls at most its bound / poll interval + 1 times.

    The event history counts every attempt the remedies may start (`attempts_per_job`, remedies.max_attempts): each
    attempt is a Launch, its polls and its Classify/Remedy/RecordAttempt tasks. Its polls are bounded twice: each
    attempt's own bound, and the clock: at most `max_concurrency` iterations poll at once, each at most once per poll
    interval, for at most the execution timeout. (The time check stays on the first attempts: Remedy starts no
    attempt that would outlast the execution.)
    """
    if not jobs:
        return
    slots = min(max_concurrency or len(jobs), len(jobs))
    bounds = [job["max_wait_seconds"] or job["max_runtime_seconds"] for job in jobs]
    worst = [bound + status_poll_seconds + catalog.JOB_OVERHEAD_SECONDS for bound in bounds]
    makespan = math.ceil(sum(worst) / slots + (1 - 1 / slots) * max(worst)) + RUN_OVERHEAD_SECONDS
    attempts = max(1, attempts_per_job)
    polls = sum(bound // status_poll_seconds + 1 for bound in bounds)
    if attempts > 1:
        by_clock = slots * (execution_timeout_seconds // status_poll_seconds + 1) + attempts * len(jobs)
        polls = min(attempts * polls, by_clock)
    events = EVENTS_PER_RUN + EVENTS_PER_JOB * attempts * len(jobs) + EVENTS_PER_POLL * polls
    waves = math.ceil(len(jobs) / slots)
    found = []
    if makespan > execution_timeout_seconds:
        found.append(
            f"{len(jobs)} jobs in ~{waves} waves of at most {slots} (max_concurrency) could take "
            f"{makespan / 3600:.1f} h (each job up to its spot MaxWait or MaxRuntime, up to "
            f"{max(bounds) / 3600:g} h, plus polling and overhead), beyond the execution timeout of "
            f"{execution_timeout_seconds / 3600:g} h"
        )
    if events > HISTORY_EVENT_LIMIT:
        found.append(
            f"polling {len(jobs)} jobs every {status_poll_seconds} s for up to their bounds"
            + (f", with up to {attempts} attempts each (remedies.max_attempts)," if attempts > 1 else "")
            + f" makes ~{events:,} history events, beyond Step Functions' limit of {HISTORY_EVENT_LIMIT:,} per "
            "execution"
        )
    if found:
        raise ExecutionLimitExceeded(
            "; ".join(found) + ". Run fewer experiments per execution, raise max_concurrency (cdk.json "
            "finetune.max_concurrency), lower max_runtime_hours, or poll less often (finetune.status_poll_seconds)."
        )


def attempts_per_job(doc: dict[str, Any], defaults: RemedyPolicy) -> int:
    """The most attempts a job of this run may make: the input's `remedies.max_attempts` over the deployment's."""
    try:
        return parse_policy(doc.get("remedies") or {}, defaults).max_attempts
    except ValueError:
        return defaults.max_attempts  # Remedy refuses a bad policy itself; the default bounds what it would do


def check_hf_token(secretsmanager: Any, secret_arn: str, jobs: list[JobSpec]) -> None:
    """`HfTokenMissing` when a gated model is planned and the token secret has no current value.

    DescribeSecret only (never GetSecretValue: Plan has no business reading the token): a secret created without a
    value has no version staged AWSCURRENT. A placeholder value cannot be told from a token this way; the training
    code treats that as unset.
    """
    gated = sorted({job["model_id"] for job in jobs if _is_gated(job)})
    if not gated:
        return
    try:
        described = secretsmanager.describe_secret(SecretId=secret_arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code != "ResourceNotFoundException":
            raise ConfigurationError(f"cannot describe the Hugging Face token secret {secret_arn} ({code})") from None
        described = {}
    stages = described.get("VersionIdsToStages") or {}
    if any("AWSCURRENT" in labels for labels in stages.values()):
        return
    raise HfTokenMissing(
        f"{', '.join(gated)} {'is' if len(gated) == 1 else 'are'} gated on the Hugging Face Hub and the token secret "
        f"{secret_arn} has no value. Accept the model's license on huggingface.co, then store a read token: "
        f"`aws secretsmanager put-secret-value --secret-id {secret_arn} --secret-string <hf_...>`, and start again."
    )


def _is_gated(job: JobSpec) -> bool:
    # Hub ids are not known to be gated; a gated one fails at download, the training code naming the model.
    model = catalog.MODELS.get(job["model_key"])
    return model is not None and model.gated


def quota_values(quotas: Any) -> dict[str, float] | None:
    """Applied SageMaker quota values by name (`quotas.sagemaker_quotas`, the applied list only: Plan is not granted
    the defaults' listing); None when the Service Quotas API cannot be read (`finetune quotas` shows them too)."""
    try:
        listed = sagemaker_quotas(quotas, with_defaults=False)
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "cannot read SageMaker quotas (%s); skipping the quota check, CreateTrainingJob will still "
            "refuse jobs over quota",
            exc,
        )
        return None
    return {name: quota.value for name, quota in listed.items() if quota.value is not None}


def instances_needed(jobs: list[JobSpec], max_concurrency: int | None) -> dict[str, int]:
    """Instances of each type the run holds at once: all its jobs, or the largest `max_concurrency` of them."""
    counts: dict[str, list[int]] = defaultdict(list)
    for job in jobs:
        counts[job["instance_type"]].append(job["instance_count"])
    return {
        instance_type: sum(sorted(per_job, reverse=True)[: max_concurrency or len(per_job)])
        for instance_type, per_job in counts.items()
    }


def check_quotas(quotas: Any, jobs: list[JobSpec], *, spot: bool, max_concurrency: int | None) -> None:
    """`QuotaExceeded` when an applied quota is below what the run's concurrent jobs need.

    Quotas are matched by name (never by code: codes differ per type and are not documented as stable). A quota
    the API does not list, or an API error, counts as unknown: warn and go on.
    """
    needed = instances_needed(jobs, max_concurrency)
    values = quota_values(quotas)
    if values is None:
        return
    for instance_type in sorted(needed):
        name = catalog.training_quota_name(instance_type, spot)
        if name not in values:
            logger.warning("quota %r not listed; skipping its check", name)
    shortfalls = [shortfall.describe() for shortfall in quota_shortfalls(values, needed, spot=spot)]
    if shortfalls:
        raise QuotaExceeded(
            "SageMaker quota too low: " + "; ".join(shortfalls) + ". Request an increase in Service Quotas "
            "(service code sagemaker), choose another instance_type, lower max_concurrency (a deployment setting: "
            "cdk.json finetune.max_concurrency) so fewer jobs hold instances at once"
            + (", or set spot to false if the on-demand quota is higher." if spot else ", or run fewer jobs.")
        )


def plan_run(
    execution_input: Any,
    execution_name: str,
    config: PlanSettings,
    *,
    s3: Any,
    pricing: Any,
    quotas: Any,
    secretsmanager: Any,
    dynamodb: Any = None,
    fetch_config: HubConfigFetcher | None = None,
) -> PlanOutput:
    """The Plan step: `{"run_id", "jobs", "total_estimated_max_cost_usd", "total_estimated_cost_usd", "budget_usd",
    "calibration"}` or a typed error (the budget gate uses the maximum). With `dynamodb` and the ledger's table name,
    each job's estimate is calibrated from recorded jobs like it; `calibration` lists what was in force per key.
    `fetch_config` reads the config.json of a Hub model the input gives no `architecture` for."""
    doc, experiments = validate_execution_input(
        execution_input,
        default_max_runtime_hours=config.default_max_runtime_hours,
        fetch_config=cached_fetcher(fetch_config) if fetch_config is not None else None,
    )
    run_id = naming.run_id_from_execution_name(execution_name)
    check_dataset_prefix(doc, config.bucket_name)
    train_uri, test_uri = dataset_location(doc, config.bucket_name)
    check_dataset(s3, doc, train_uri, test_uri)
    dataset_name = doc.get("dataset", DEFAULT_DATASET).get("name")
    known_rows = dataset_name in catalog.DATASET_TRAIN_ROWS
    jobs = build_jobs(
        doc,
        experiments,
        run_id=run_id,
        bucket=config.bucket_name,
        job_name_prefix=config.job_name_prefix,
        price_of=lambda instance_type: cost.lookup_hourly_price(pricing, instance_type, config.region),
        train_bytes=None if known_rows else channel_bytes(s3, train_uri),
        test_bytes=None if dataset_name in catalog.DATASET_TEST_ROWS else channel_bytes(s3, test_uri),
        calibrations=(
            read_calibrations(dynamodb, config.table_name, experiments)
            if dynamodb is not None and config.table_name
            else None
        ),
    )
    budget = float(doc.get("budget_usd", config.default_budget_usd))
    total = enforce_budget(jobs, budget)
    check_execution_limits(
        jobs,
        max_concurrency=config.max_concurrency,
        execution_timeout_seconds=config.execution_timeout_seconds,
        status_poll_seconds=config.status_poll_seconds,
        attempts_per_job=attempts_per_job(doc, config.remedy_defaults),
    )
    check_hf_token(secretsmanager, config.hf_token_secret_arn, jobs)
    check_quotas(quotas, jobs, spot=doc.get("spot", catalog.default("spot")), max_concurrency=config.max_concurrency)
    return {
        "run_id": run_id,
        "jobs": jobs,
        "total_estimated_max_cost_usd": total,
        "total_estimated_cost_usd": total_expected_cost(jobs),
        "budget_usd": budget,
        "calibration": calibration_in_force(jobs),
    }


def calibration_in_force(jobs: list[JobSpec]) -> dict[str, dict[str, Any]]:
    """The calibration each key of the run's jobs was estimated with, by key (Plan's output, the report)."""
    return {job["calibration_key"]: job["calibration"] for job in jobs}
