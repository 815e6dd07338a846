"""Client factory: one retry/timeout policy, one client per service and region per container."""

from __future__ import annotations

from lambdas import aws


def test_clients_retry_in_standard_mode_with_timeouts() -> None:
    sagemaker = aws.client("sagemaker")
    config = sagemaker.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": aws.DEFAULT_MAX_ATTEMPTS}
    assert (config.connect_timeout, config.read_timeout) == (aws.DEFAULT_CONNECT_TIMEOUT, aws.DEFAULT_READ_TIMEOUT)


def test_clients_are_built_once_per_container() -> None:
    assert aws.client("s3") is aws.client("s3")
    assert aws.client("s3", "eu-west-1") is not aws.client("s3")


def test_price_list_is_asked_in_the_nearest_pricing_region() -> None:
    assert aws.pricing_endpoint_region("us-west-2") == "us-east-1"
    assert aws.pricing_endpoint_region("eu-west-1") == "eu-central-1"
    assert aws.pricing_endpoint_region("ap-northeast-1") == "ap-south-1"
    assert aws.pricing_client("eu-west-1").meta.region_name == "eu-central-1"
