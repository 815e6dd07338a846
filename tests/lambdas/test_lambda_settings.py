"""Settings: the environment parsed once, and a missing or malformed variable named loudly."""

from __future__ import annotations

import pytest

from lambdas.errors import ConfigurationError
from lambdas.settings import LaunchSettings, PlanSettings, RecordSettings, ReportSettings
from tests.support.lambdas import ENVIRONMENT


def test_settings_parse_from_the_environment() -> None:
    plan = PlanSettings.from_env(ENVIRONMENT)
    assert (plan.bucket_name, plan.default_budget_usd, plan.job_name_prefix, plan.region) == (
        "finetune-data-test",
        50.0,
        "ft",
        "us-east-1",
    )
    assert plan.max_concurrency is None and plan.default_max_runtime_hours is None
    assert (plan.execution_timeout_seconds, plan.status_poll_seconds) == (48 * 3600, 300)
    assert plan.hf_token_secret_arn == ENVIRONMENT["HF_TOKEN_SECRET_ARN"]
    launch = LaunchSettings.from_env(ENVIRONMENT)
    assert launch.code_s3_uri.startswith("s3://") and launch.data_key_arn == ENVIRONMENT["DATA_KEY_ARN"]
    assert RecordSettings.from_env(ENVIRONMENT).table_name == ReportSettings.from_env(ENVIRONMENT).table_name


@pytest.mark.parametrize(
    ("settings_class", "variable"),
    [
        (PlanSettings, "BUCKET_NAME"),
        (PlanSettings, "DEFAULT_BUDGET_USD"),
        (PlanSettings, "HF_TOKEN_SECRET_ARN"),
        (PlanSettings, "EXECUTION_TIMEOUT_SECONDS"),
        (PlanSettings, "STATUS_POLL_SECONDS"),
        (LaunchSettings, "SAGEMAKER_ROLE_ARN"),
        (LaunchSettings, "HF_TOKEN_SECRET_ARN"),
        (LaunchSettings, "DATA_KEY_ARN"),
        (RecordSettings, "TABLE_NAME"),
        (ReportSettings, "BUCKET_NAME"),
    ],
)
def test_missing_variable_is_named(settings_class: type, variable: str) -> None:
    env = {k: v for k, v in ENVIRONMENT.items() if k != variable}
    with pytest.raises(ConfigurationError, match=variable):
        settings_class.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEFAULT_BUDGET_USD", "fifty"),
        ("DEFAULT_BUDGET_USD", "-1"),
        ("JOB_NAME_PREFIX", "bad_prefix!"),
        ("MAX_CONCURRENCY", "0"),
        ("DEFAULT_MAX_RUNTIME_HOURS", "x"),
        ("EXECUTION_TIMEOUT_SECONDS", "48h"),
        ("STATUS_POLL_SECONDS", "0"),
    ],
)
def test_malformed_plan_variable_is_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        PlanSettings.from_env({**ENVIRONMENT, variable: value})


def test_optional_plan_variables_are_parsed() -> None:
    plan = PlanSettings.from_env({**ENVIRONMENT, "MAX_CONCURRENCY": "3", "DEFAULT_MAX_RUNTIME_HOURS": "8"})
    assert (plan.max_concurrency, plan.default_max_runtime_hours) == (3, 8.0)


def test_code_uri_must_be_s3() -> None:
    with pytest.raises(ConfigurationError, match="CODE_S3_URI"):
        LaunchSettings.from_env({**ENVIRONMENT, "CODE_S3_URI": "/tmp/code.tar.gz"})
