"""The one hyperparameter table: the input schema, the job spec, job names and Launch follow it, and the training code
accepts everything Launch sends, exactly as the SageMaker training toolkit hands it over."""

from __future__ import annotations

import json
import math
import typing
from typing import Any

import pytest
from sagemaker_training import mapping, params

from lambdas import catalog, naming, plan, training_job
from lambdas.job_spec import JobSpec
from tests.support.lambdas import CODE_URI, REGION, SECRET_ARN, one_job, study_jobs
from training_code import config as training_config

SCHEMA = plan.load_schema()
EXPERIMENT_SCHEMA = SCHEMA["properties"]["experiments"]["items"]
# Experiment fields that are the model's identity rather than settings of the job.
MODEL_FIELDS = {"model", "params_billion", "architecture"}
# Per-experiment fields only the offline demo honours (lambdas/handlers/plan.py refuses them elsewhere).
DEMO_FIELDS = {"inject_failure"}
# Top-level fields that are not per-job settings.
RUN_FIELDS = {"experiments", "dataset", "max_runtime_hours", "budget_usd", "baselines", "remedies"}


def by_source(source: catalog.Source) -> list[catalog.Hyperparameter]:
    return [hp for hp in catalog.HYPERPARAMETERS if hp.source is source]


def schema_types(prop: dict[str, Any]) -> set[str]:
    """JSON types a schema property accepts (from `type`, an `enum` of strings, or `anyOf` branches)."""
    if "anyOf" in prop:
        return set().union(*(schema_types(branch) for branch in prop["anyOf"]))
    if "type" in prop:
        return {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])
    return {"string"} if all(isinstance(v, str) for v in prop["enum"]) else set()


def schema_enum(prop: dict[str, Any]) -> set[str]:
    branches = prop.get("anyOf", [prop])
    return {value for branch in branches for value in branch.get("enum", [])}


def test_schema_fields_are_the_tables_input_fields() -> None:
    experiment = {hp.name for hp in by_source(catalog.Source.EXPERIMENT)}
    run = {hp.name for hp in by_source(catalog.Source.RUN)}
    assert set(EXPERIMENT_SCHEMA["properties"]) == experiment | MODEL_FIELDS | DEMO_FIELDS
    assert set(SCHEMA["properties"]) == run | RUN_FIELDS


@pytest.mark.parametrize(
    "hp", by_source(catalog.Source.EXPERIMENT) + by_source(catalog.Source.RUN), ids=lambda hp: hp.name
)
def test_schema_types_defaults_and_choices_agree_with_the_table(hp: catalog.Hyperparameter) -> None:
    # Given the schema property of a table entry the input may set
    properties = EXPERIMENT_SCHEMA["properties"] if hp.source is catalog.Source.EXPERIMENT else SCHEMA["properties"]
    prop = properties[hp.name]
    # Then the schema accepts the table's types and choices, and shows the table's default where it has a fixed one
    assert schema_types(prop) == set(hp.json_type)
    assert schema_enum(prop) == set(hp.choices)
    if hp.default in (None, catalog.BY_SIZE_CLASS):
        assert "default" not in prop
    else:
        assert prop["default"] == hp.default
    assert (hp.name in EXPERIMENT_SCHEMA.get("required", [])) == (
        hp.default is None and hp.source is catalog.Source.EXPERIMENT
    )


BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def schema_bounds(prop: dict[str, Any]) -> dict[str, float]:
    """The numeric bounds a schema property states (on its number branch, for `anyOf` ones like max_seq_length)."""
    branches = prop.get("anyOf", [prop])
    return {key: value for branch in branches for key, value in branch.items() if key in BOUND_KEYWORDS}


@pytest.mark.parametrize(
    "hp", by_source(catalog.Source.EXPERIMENT) + by_source(catalog.Source.RUN), ids=lambda hp: hp.name
)
def test_the_schemas_numeric_bounds_are_the_tables(hp: catalog.Hyperparameter) -> None:
    # Given the schema property of a table entry the input may set
    properties = EXPERIMENT_SCHEMA["properties"] if hp.source is catalog.Source.EXPERIMENT else SCHEMA["properties"]
    # Then it states exactly the table's bounds, and every numeric setting has some
    assert schema_bounds(properties[hp.name]) == dict(hp.bounds)
    assert bool(hp.bounds) == bool({"integer", "number"} & set(hp.json_type))


Interval = tuple[float, bool, float, bool]  # low, low is open, high, high is open


def interval(keywords: dict[str, float] | Any) -> Interval:
    """A JSON Schema range as an interval (an absent side is unbounded)."""
    low = (keywords["exclusiveMinimum"], True) if "exclusiveMinimum" in keywords else (keywords.get("minimum"), False)
    high = (keywords["exclusiveMaximum"], True) if "exclusiveMaximum" in keywords else (keywords.get("maximum"), False)
    return (
        -math.inf if low[0] is None else low[0],
        low[1],
        math.inf if high[0] is None else high[0],
        high[1],
    )


def contains(outer: Interval, inner: Interval) -> bool:
    low_ok = inner[0] > outer[0] or (inner[0] == outer[0] and (inner[1] or not outer[1]))
    high_ok = inner[2] < outer[2] or (inner[2] == outer[2] and (inner[3] or not outer[3]))
    return low_ok and high_ok


@pytest.mark.parametrize(
    "hp", [hp for hp in catalog.HYPERPARAMETERS if hp.bounds and hp.training_name], ids=lambda hp: hp.name
)
def test_every_value_plan_accepts_is_in_the_training_codes_range(hp: catalog.Hyperparameter) -> None:
    # Given a bounded setting the training code receives (the two packages cannot share code: a contract)
    assert hp.training_name
    # Then the training code's range holds every value the table (and so the schema and Plan) accepts
    training_range = training_config.RANGES[hp.training_name]
    assert contains(interval(training_range), interval(hp.bounds)), (hp.bounds, training_range)


def test_the_range_check_agrees_with_the_interval_reading() -> None:
    # The training code's own reading of the keywords: open ends exclude their bound, closed ones include it
    assert training_config.in_range(0.5, {"exclusiveMinimum": 0, "exclusiveMaximum": 1})
    assert not training_config.in_range(1, {"exclusiveMinimum": 0, "exclusiveMaximum": 1})
    assert training_config.in_range(16, {"minimum": 16}) and not training_config.in_range(math.nan, {"minimum": 0})
    assert training_config.describe_range({"exclusiveMinimum": 0, "exclusiveMaximum": 1}) == "in (0, 1)"


def test_fixed_defaults_are_refused_where_the_size_class_decides() -> None:
    assert catalog.default("lora_r") == 16 and catalog.default("max_seq_length") == "auto"
    with pytest.raises(ValueError, match="size class"):
        catalog.default("batch_size")


def test_the_job_spec_carries_every_setting_but_the_deployments() -> None:
    fields = set(typing.get_type_hints(JobSpec))
    settings = {hp.name for hp in catalog.HYPERPARAMETERS if hp.source is not catalog.Source.DEPLOYMENT}
    assert settings <= fields
    assert "hf_token_secret_arn" not in fields  # Launch's own setting, never in the Map's state
    assert all(set(job) == JobSpec.__required_keys__ for job in study_jobs())  # attempt fields are optional


def test_every_job_name_field_changes_the_name() -> None:
    # Given one job, and the same job with each job-name field changed
    base = one_job()
    changed = {
        "instance_type": "ml.g5.4xlarge",
        "instance_count": 2,
        "epochs": 2,
        "batch_size": 4,
        "learning_rate": 1e-4,
        "lora_r": 8,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "max_seq_length": 128,
        "prompt_style": "listed",
        "merge_adapter": True,
        "max_steps": 10,
    }
    assert set(changed) | {"eval_samples", "spot"} == set(catalog.JOB_NAME_FIELDS)
    names = {base["job_name"]}
    for field, value in changed.items():
        names.add(one_job(**{field: value})["job_name"])
    names.add(
        study_jobs({"experiments": [{"model": "mistral-7b", "approach": "lora"}], "eval_samples": 9})[0]["job_name"]
    )
    names.add(study_jobs({"experiments": [{"model": "mistral-7b", "approach": "lora"}], "spot": False})[0]["job_name"])
    # Then every change gives a distinct, valid name
    assert len(names) == len(changed) + 3
    assert all(naming.JOB_NAME_PATTERN.match(name) for name in names)


def launched(job: JobSpec) -> dict[str, Any]:
    """The JSON-decoded hyperparameters of the request Launch builds."""
    raw = training_job.hyperparameters(job, hf_token_secret_arn=SECRET_ARN, code_s3_uri=CODE_URI, region=REGION)
    return {key: json.loads(value) for key, value in raw.items()}


def test_launch_sends_the_tables_training_names_and_nothing_else() -> None:
    # Given a job with every optional setting set (a learning rate, FSDP)
    job = study_jobs({"experiments": [{"model": "mistral-7b", "approach": "full", "learning_rate": 1e-5}]})[0]
    sent = {key for key in launched(job) if not key.startswith(params.SAGEMAKER_PREFIX)}
    # Then Launch sends exactly the table's training names
    assert sent == {hp.training_name for hp in catalog.HYPERPARAMETERS if hp.training_name}


def toolkit_argv(values: dict[str, Any]) -> list[str]:
    """The script's argv as the SageMaker training toolkit builds it: user hyperparameters (the `sagemaker_` ones are
    the toolkit's), JSON-decoded, through its own `to_cmd_args`."""
    user = {key: value for key, value in values.items() if not key.startswith(params.SAGEMAKER_PREFIX)}
    return [str(arg) for arg in mapping.to_cmd_args(user)]


@pytest.mark.parametrize("job", study_jobs(), ids=lambda job: f"{job['model_key']}-{job['approach']}")
def test_the_training_code_accepts_everything_launch_sends(job: JobSpec) -> None:
    # Given a study job's hyperparameters as the toolkit passes them to train.py
    argv = toolkit_argv(launched(job))
    # When the training code parses them (it rejects unknown names and unparsable values)
    parsed = training_config.parse_hyperparameters(argv)
    # Then every setting arrives as Plan decided it
    assert parsed.model_id == job["model_id"] and parsed.approach == job["approach"]
    assert parsed.per_device_batch_size == job["batch_size"] and parsed.strategy == job["strategy"]
    assert parsed.max_seq_length is None  # "auto"
    assert (parsed.prompt_style, parsed.save_interval_seconds) == (job["prompt_style"], job["save_interval_seconds"])
    assert (parsed.eval_batch_size, parsed.warmup_ratio, parsed.decoding) == (8, 0.03, "constrained")
    # And the training code's validation of values accepts them (the rest of `validate` checks this machine)
    training_config.validate_values(parsed)


@pytest.mark.parametrize("model", catalog.STUDY_MODELS)
def test_a_baseline_is_launched_without_training_settings_as_one_process(model: str) -> None:
    # Given a study model's baseline (the 20B one on a 4-GPU instance)
    (job,) = study_jobs({"experiments": [{"model": model, "approach": "baseline"}]})
    values = launched(job)
    sent = {key for key in values if not key.startswith(params.SAGEMAKER_PREFIX)}
    # Then Launch sends no training setting, and no torchrun: one process spreads the model over the GPUs
    assert sent == {
        hp.training_name
        for hp in catalog.HYPERPARAMETERS
        if hp.training_name and hp.name not in catalog.TRAINING_ONLY_HYPERPARAMETERS
    }
    assert "sagemaker_torch_distributed_enabled" not in values
    # And the training code takes them as a listed-prompt baseline
    parsed = training_config.parse_hyperparameters(toolkit_argv(values))
    assert (parsed.approach, parsed.prompt_style) == ("baseline", "listed")
    training_config.validate_values(parsed)
