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
