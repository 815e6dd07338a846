"""Configuration: defaults synthesize; every invalid value names its key and what is allowed."""

from __future__ import annotations

import pytest

from stacks.config import Config, ConfigError, load_config


def test_no_context_gives_the_documented_defaults() -> None:
    assert load_config(None) == Config()


def test_cdk_json_settings_are_valid() -> None:
    from stacks.app_builder import cdk_json_context

    config = load_config(cdk_json_context()["finetune"])
    assert config.region == "us-east-1"
    assert all(q.usage == "spot training job" for q in config.quota_requests)


@pytest.mark.parametrize(
    ("settings", "named_key", "allowed_hint"),
    [
        ({"region": "mars-1"}, "finetune.region", "AWS region"),
        ({"resource_prefix": "Bad_Prefix"}, "finetune.resource_prefix", "[a-z0-9-]"),
        ({"unknown_setting": 1}, "finetune.unknown_setting", "keys "),
        (
            {"quota_requests": [{"instance_type": "ml.g99.huge", "usage": "training job", "desired_value": 1}]},
            "finetune.quota_requests[0].instance_type",
            "ml.g5.xlarge",
        ),
        (
            {"quota_requests": [{"instance_type": "ml.g5.xlarge", "usage": "training job", "desired_value": -1}]},
            "finetune.quota_requests[0].desired_value",
            ">= 0",
        ),
        (
            {"quota_requests": [{"instance_type": "ml.g5.xlarge", "usage": "batch", "desired_value": 1}]},
            "finetune.quota_requests[0].usage",
            "spot training job",
        ),
        ({"default_budget_usd": 0}, "finetune.default_budget_usd", "> 0"),
        ({"max_concurrency": 0}, "finetune.max_concurrency", ">= 1"),
        ({"status_poll_seconds": "soon"}, "finetune.status_poll_seconds", "integer"),
        ({"log_retention_days": 42}, "finetune.log_retention_days", "365"),
        ({"retain_data": "yes"}, "finetune.retain_data", "true or false"),
        ({"notification_emails": ["not-an-email"]}, "finetune.notification_emails[0]", "e-mail"),
        ({"dlc": {"transformers_version": "latest"}}, "finetune.dlc.transformers_version", "version"),
        ({"dlc": {"cuda": "12"}}, "finetune.dlc.cuda", "transformers_version"),
        ({"lambda_retry": {"max_attempts": -1}}, "finetune.lambda_retry.max_attempts", ">= 0"),
        (
            {"execution_timeout_hours": 4, "max_runtime_hours": 8},
            "finetune.execution_timeout_hours",
            "max_runtime_hours",
        ),
    ],
)
def test_invalid_setting_is_rejected_naming_key_and_allowed_values(settings, named_key, allowed_hint) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(settings)
    assert named_key in str(raised.value)
    assert allowed_hint in str(raised.value)


def test_unknown_dlc_version_fails_at_synth_with_the_versions_sagemaker_core_knows() -> None:
    from stacks.images import training_image

    with pytest.raises(ValueError):
        training_image(load_config({"dlc": {"transformers_version": "0.0.1"}}))


@pytest.mark.parametrize("region", ["cn-north-1", "cn-northwest-1", "us-gov-west-1", "us-iso-east-1"])
def test_regions_outside_the_commercial_partition_are_refused_naming_why(region) -> None:
    # The Price List API endpoints and the DLC registries this app uses exist in the aws partition only.
    with pytest.raises(ConfigError) as raised:
        load_config({"region": region})
    assert "finetune.region" in str(raised.value)
    assert "Price List API" in str(raised.value)


def test_commercial_regions_are_accepted() -> None:
    assert load_config({"region": "eu-central-1"}).region == "eu-central-1"


def test_job_name_prefix_is_specific_to_this_deployment_and_stable() -> None:
    from lambdas.settings import PlanSettings

    default = load_config(None)
    # Not the bare resource prefix: `training-job/finetune*` would also match other projects' jobs.
    assert default.job_name_prefix != default.resource_prefix
    assert default.job_name_prefix.startswith(f"{default.resource_prefix}-")
    assert default.job_name_prefix == load_config(None).job_name_prefix  # stable across synths
    assert load_config({"region": "eu-west-1"}).job_name_prefix != default.job_name_prefix
    assert load_config({"resource_prefix": "finetune-b"}).job_name_prefix != default.job_name_prefix
    # The Lambdas accept it (JOB_NAME_PREFIX: at most 24 characters).
    env = {
        "BUCKET_NAME": "b",
        "DEFAULT_BUDGET_USD": "1",
        "AWS_REGION": "us-east-1",
        "HF_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-AbCdEf",
        "EXECUTION_TIMEOUT_SECONDS": "172800",
        "STATUS_POLL_SECONDS": "300",
    }
    longest = load_config({"resource_prefix": "a" * 20})
    for config in (default, longest):
        assert PlanSettings.from_env({**env, "JOB_NAME_PREFIX": config.job_name_prefix}).job_name_prefix


def test_job_names_with_the_longest_prefix_still_fit_and_keep_the_run_readable() -> None:
    from lambdas import naming

    prefix = load_config({"resource_prefix": "a" * 20}).job_name_prefix
    assert len(prefix) <= 22
    name = naming.training_job_name(prefix, "study-2026-11-26-banking77", "gpt-neox-20b", "qlora", "v")
    assert len(name) <= naming.JOB_NAME_MAX
    assert name.startswith(f"{prefix}-study-2026")


def test_quota_retry_is_configurable_and_partial_settings_keep_the_other_defaults() -> None:
    default = load_config(None).quota_retry
    assert (default.interval_seconds, default.backoff_rate, default.max_attempts) == (300, 1.5, 8)
    faster = load_config({"quota_retry": {"interval_seconds": 60}}).quota_retry
    assert (faster.interval_seconds, faster.backoff_rate, faster.max_attempts) == (60, 1.5, 8)
    with pytest.raises(ConfigError, match=r"finetune\.quota_retry\.interval_seconds"):
        load_config({"quota_retry": {"interval_seconds": 0}})


def test_default_quota_requests_let_the_study_run_at_max_concurrency() -> None:
    """The 8 default jobs, as Plan builds them, hold at most this many instances of each type at once with
    max_concurrency jobs running; cdk.json's spot quota requests must cover that, or Plan refuses the study."""
    from lambdas import plan
    from stacks.app_builder import cdk_json_context

    config = load_config(cdk_json_context()["finetune"])
    doc, experiments = plan.validate_execution_input({}, default_max_runtime_hours=config.max_runtime_hours)
    jobs = plan.build_jobs(
        doc,
        experiments,
        run_id="study",
        bucket="bucket",
        job_name_prefix=config.job_name_prefix,
        price_of=plan.catalog_price,
    )
    assert len(jobs) == 8
    needed = plan.instances_needed(jobs, config.max_concurrency)
    requested = {q.instance_type: q.desired_value for q in config.quota_requests if q.usage == "spot training job"}
    short = {t: (n, requested.get(t, 0)) for t, n in needed.items() if requested.get(t, 0) < n}
    assert not short, f"instance type: (needed at once, requested) {short}"


def test_a_quota_request_for_an_instance_the_image_cannot_run_is_refused_naming_why() -> None:
    # ml.p3 (V100, compute capability 7.0): the cu130 training image has no kernels for it
    request = {"instance_type": "ml.p3.2xlarge", "usage": "spot training job", "desired_value": 1}
    with pytest.raises(ConfigError, match=r"quota_requests\[0\]\.instance_type.*V100"):
        load_config({"quota_requests": [request]})
