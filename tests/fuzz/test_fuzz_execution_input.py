"""Fuzzed execution inputs through Plan (validation and the whole step), and what valid ones make reach AWS.

Malformed inputs: Plan must refuse every one with `InvalidExecutionInput` naming a field; no other exception may
escape, and nothing that launches or writes may be called. Valid inputs: every job Plan makes must give a
CreateTrainingJob request (built by Launch's own function) that botocore's service model accepts, patterns and
lengths included, and hyperparameters the training code parses back and validates.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from lambdas import naming, plan, training_job
from lambdas.errors import InvalidExecutionInput, WorkflowError
from tests.fuzz.aws_shapes import request_problems
from tests.fuzz.inputs import FUZZ, malformed_input, valid_input
from tests.support.lambdas import (
    BUCKET,
    CODE_URI,
    DATA_KEY_ARN,
    IMAGE_URI,
    PREFIX,
    REGION,
    ROLE_ARN,
    SECRET_ARN,
    plan_settings,
)
from training_code.config import parse_hyperparameters, validate_values

# Calls Plan may make: reads only. Anything else (create, put, start, stop, delete, tag) would be a launch or a write.
READ_ONLY = {"list_objects_v2", "get_paginator", "describe_secret"}


class RecordingClient:
    """A duck-typed AWS client that answers Plan's read calls and records every call made."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def list_objects_v2(self, **_: Any) -> dict[str, Any]:
        self.calls.append("list_objects_v2")
        return {"KeyCount": 1}

    def get_paginator(self, name: str) -> Any:
        self.calls.append("get_paginator")
        return type("Pages", (), {"paginate": lambda self, **_: iter([{}])})()

    def describe_secret(self, **_: Any) -> dict[str, Any]:
        self.calls.append("describe_secret")
        return {"VersionIdsToStages": {"v1": ["AWSCURRENT"]}}

    def __getattr__(self, name: str) -> Any:
        def call(**_: Any) -> None:
            self.calls.append(name)
            raise AssertionError(f"Plan called {name}: it must only read")

        return call


def _plan(execution_input: Any, execution_name: str = "fuzz-run") -> tuple[dict[str, Any], list[str]]:
    clients = {name: RecordingClient() for name in ("s3", "pricing", "quotas", "secretsmanager")}
    try:
        return dict(plan.plan_run(execution_input, execution_name, plan_settings(), **clients)), _calls(clients)
    finally:
        assert set(_calls(clients)) <= READ_ONLY, _calls(clients)


def _calls(clients: dict[str, RecordingClient]) -> list[str]:
    return [call for client in clients.values() for call in client.calls]


def _assert_names_a_field(exc: InvalidExecutionInput) -> None:
    assert exc.problems, exc.message
    for path, why in exc.problems:
        assert path and why, exc.problems
        assert path in exc.message


@FUZZ
@given(case=malformed_input())
def test_malformed_inputs_are_refused_by_validation_naming_a_field(case: tuple[str, Any]) -> None:
    kind, execution_input = case
    with pytest.raises(InvalidExecutionInput) as raised:
        doc, _ = plan.validate_execution_input(execution_input)
        if kind == "dataset URI":
            # Whether a well-formed URI is under the data bucket's datasets/ is known only with the bucket: Plan's
            # next check (the next test runs the whole step).
            plan.check_dataset_prefix(doc, BUCKET)
    _assert_names_a_field(raised.value)


@FUZZ
@given(case=malformed_input())
def test_malformed_inputs_are_refused_by_the_whole_plan_step_before_anything_is_called(case: tuple[str, Any]) -> None:
    kind, execution_input = case
    event(kind)
    clients = {name: RecordingClient() for name in ("s3", "pricing", "quotas", "secretsmanager")}
    with pytest.raises(InvalidExecutionInput) as raised:
        plan.plan_run(execution_input, "fuzz-run", plan_settings(), **clients)
    _assert_names_a_field(raised.value)
    assert _calls(clients) == [], f"{kind}: Plan called AWS before refusing: {_calls(clients)}"


def _launch_request(job: dict[str, Any]) -> dict[str, Any]:
    return training_job.create_training_job_request(
        job,  # type: ignore[arg-type]
        role_arn=ROLE_ARN,
        image_uri=IMAGE_URI,
        code_s3_uri=CODE_URI,
        hf_token_secret_arn=SECRET_ARN,
        data_key_arn=DATA_KEY_ARN,
        region=REGION,
        project="finetune",
    )


def _as_training_argv(hyperparameters: dict[str, str]) -> list[str]:
    """What the DLC's toolkit hands train.py: each value JSON-decoded, then str-ed (mapping.to_cmd_args)."""
    argv: list[str] = []
    for key, value in hyperparameters.items():
        decoded = json.loads(value)
        argv += [f"--{key}", str(decoded)]
    return argv


# Step Functions execution names: 1..80 characters; the console and SDKs pass arbitrary unicode through.
execution_names = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_-]{1,80}\Z"), st.text(min_size=1, max_size=80), st.just("run 1 / ünïcode ✓")
)


@FUZZ
@given(execution_input=valid_input(), execution_name=execution_names)
def test_valid_inputs_plan_into_requests_the_service_model_accepts(
    execution_input: dict[str, Any], execution_name: str
) -> None:
    try:
        planned, _ = _plan(execution_input, execution_name)
    except InvalidExecutionInput as exc:
        event("refused: duplicate experiments")
        # Duplicate experiments are the one refusal a schema-valid input can get besides the semantic checks.
        assert all("duplicates" in why or "model" in path or "instance_type" in path for path, why in exc.problems)
        return
    except WorkflowError as exc:
        event(f"refused: {type(exc).__name__}")
        return  # infeasible, over budget, over the execution limits: typed refusals, nothing launched
    event("planned")
    run_id = planned["run_id"]
    # The run id keys the ledger (pk), S3 (reports/, checkpoints/) and the job names: letters, digits and dashes.
    assert re.fullmatch(r"[A-Za-z0-9](-?[A-Za-z0-9])*", run_id) and len(run_id) <= naming.RUN_ID_MAX, run_id
    for key in naming.report_keys(run_id):
        assert len(key.encode()) <= 1024, key
    for job in planned["jobs"]:
        request = _launch_request(job)
        problems = request_problems("sagemaker", "CreateTrainingJob", request)
        assert not problems, "\n".join(problems)
        for uri in (job["checkpoint_s3_uri"], job["output_s3_uri"], job["train_s3_uri"], job["test_s3_uri"]):
            bucket, key = naming.split_s3_uri(uri)
            assert bucket == BUCKET and 0 < len(key.encode()) <= 1024, uri
        config = parse_hyperparameters(_as_training_argv(request["HyperParameters"]))
        assert config.model_id == job["model_id"] and config.approach == job["approach"]
        # Through both: what Plan accepts, the training code's validation accepts too (ranges, choices and their
        # combinations; the rest of `validate` checks the machine the job runs on).
        validate_values(config)
        assert job["job_name"].startswith(PREFIX)


# What the fuzzing found (each passed Plan before its fix), kept as plain examples so they stay fixed.
FOUND = {
    "NaN passes every numeric bound of the schema": {
        "experiments": [{"model": "mistral-7b", "approach": "lora", "epochs": math.nan}]
    },
    "NaN runtime bound crashed Plan with ValueError": {"max_runtime_hours": math.nan},
    "NaN budget crashed the budget gate (decimal.InvalidOperation)": {"budget_usd": math.nan},
    "infinite budget": {"budget_usd": math.inf},
    "NaN learning rate reached the hyperparameters as NaN (not JSON)": {
        "experiments": [{"model": "mistral-7b", "approach": "lora", "learning_rate": math.nan}]
    },
    "a URI over S3Uri's 1024 characters": {
        "dataset": {
            "train_s3_uri": f"s3://{BUCKET}/datasets/{'k' * 1100}/",
            "test_s3_uri": f"s3://{BUCKET}/datasets/t/",
        }
    },
    "a carriage return in a URI (Java's `.` in S3Uri's pattern stops at it)": {
        "dataset": {"train_s3_uri": f"s3://{BUCKET}/datasets/a\rb/", "test_s3_uri": f"s3://{BUCKET}/datasets/t/"}
    },
    "a right-to-left override in a URI": {
        "dataset": {"train_s3_uri": f"s3://{BUCKET}/datasets/\u202eevil/", "test_s3_uri": f"s3://{BUCKET}/datasets/t/"}
    },
    "max_steps too long for a HyperParameterValue (2500 characters)": {
        "experiments": [{"model": "mistral-7b", "approach": "lora", "max_steps": 10**3000}]
    },
    "learning_rate 1 passed the schema (maximum 1) and failed the training code (0 < lr < 1) after startup": {
        "experiments": [{"model": "mistral-7b", "approach": "lora", "learning_rate": 1}]
    },
    "a Hub id with a trailing newline (the catalog's pattern ends in `$`)": {
        "experiments": [{"model": "org/name\n", "approach": "lora"}]
    },
}


@pytest.mark.parametrize("execution_input", FOUND.values(), ids=FOUND.keys())
def test_defects_the_fuzzing_found_stay_refused_by_plan(execution_input: dict[str, Any]) -> None:
    clients = {name: RecordingClient() for name in ("s3", "pricing", "quotas", "secretsmanager")}
    with pytest.raises(InvalidExecutionInput) as raised:
        plan.plan_run(execution_input, "fuzz-run", plan_settings(), **clients)
    _assert_names_a_field(raised.value)


def test_an_unknown_key_that_is_not_an_identifier_is_named_quoted() -> None:
    with pytest.raises(InvalidExecutionInput) as raised:
        plan.validate_execution_input({"": 1, "a\nb": 2})
    assert [path for path, _ in raised.value.problems] == ['[""]', '["a\\nb"]']
    assert "\n" not in raised.value.message
