"""Quota requests: botocore Stubber validates every request against the real Service Quotas model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.quotas import QuotaTarget, ensure_quotas, summarize
from stacks.app_builder import cdk_json_context

SPOT_G5 = QuotaTarget("ml.g5.xlarge", "spot training job", 2)


def _quota(name: str, code: str, value: float, adjustable: bool = True) -> dict[str, Any]:
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaArn": f"arn:aws:servicequotas:us-east-1:111122223333:sagemaker/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
        "Unit": "None",
        "Adjustable": adjustable,
        "GlobalQuota": False,
    }


@pytest.fixture
def quotas() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("service-quotas", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _lists(stubber: Stubber, applied: list[dict[str, Any]], defaults: list[dict[str, Any]] | None = None) -> None:
    stubber.add_response("list_service_quotas", {"Quotas": applied}, {"ServiceCode": "sagemaker"})
    stubber.add_response("list_aws_default_service_quotas", {"Quotas": defaults or []}, {"ServiceCode": "sagemaker"})


def _no_open_requests(stubber: Stubber, code: str) -> None:
    stubber.add_response(
        "list_requested_service_quota_change_history_by_quota",
        {"RequestedQuotas": [{"Id": "old", "Status": "APPROVED", "QuotaCode": code}]},
        {"ServiceCode": "sagemaker", "QuotaCode": code},
    )


def test_increase_is_requested_when_the_applied_value_is_lower(quotas) -> None:
    client, stubber = quotas
    _lists(stubber, [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 0)])
    _no_open_requests(stubber, "L-SPOT1")
    stubber.add_response(
        "request_service_quota_increase",
        {"RequestedQuota": {"Id": "req-1", "Status": "PENDING", "QuotaCode": "L-SPOT1"}},
        {"ServiceCode": "sagemaker", "QuotaCode": "L-SPOT1", "DesiredValue": 2.0},
    )
    [outcome] = ensure_quotas(client, [SPOT_G5])
    assert (outcome.result, outcome.current_value, outcome.quota_code) == ("requested", 0, "L-SPOT1")
    assert "req-1" in outcome.detail


def test_nothing_is_requested_when_already_at_or_above_desired(quotas) -> None:
    client, stubber = quotas
    _lists(stubber, [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 2)])
    [outcome] = ensure_quotas(client, [SPOT_G5])
    assert outcome.result == "sufficient"


def test_an_open_request_is_reported_pending_without_a_second_request(quotas) -> None:
    client, stubber = quotas
    _lists(stubber, [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 0)])
    stubber.add_response(
        "list_requested_service_quota_change_history_by_quota",
        {"RequestedQuotas": [{"Id": "req-9", "Status": "CASE_OPENED", "QuotaCode": "L-SPOT1"}]},
        {"ServiceCode": "sagemaker", "QuotaCode": "L-SPOT1"},
    )
    [outcome] = ensure_quotas(client, [SPOT_G5])
    assert outcome.result == "pending" and "req-9" in outcome.detail


def test_resource_already_exists_from_aws_means_pending(quotas) -> None:
    client, stubber = quotas
    _lists(stubber, [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 0)])
    _no_open_requests(stubber, "L-SPOT1")
    stubber.add_client_error("request_service_quota_increase", "ResourceAlreadyExistsException", "exists")
    [outcome] = ensure_quotas(client, [SPOT_G5])
    assert outcome.result == "pending"


def test_a_quota_aws_does_not_let_you_adjust_is_reported_not_raised(quotas) -> None:
    client, stubber = quotas
    _lists(stubber, [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 0, adjustable=False)])
    [outcome] = ensure_quotas(client, [SPOT_G5])
    assert outcome.result == "not-adjustable"


def test_aws_declining_the_request_is_reported_not_raised(quotas) -> None:
    client, stubber = quotas
    _lists(stubber, [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 0)])
    _no_open_requests(stubber, "L-SPOT1")
    stubber.add_client_error("request_service_quota_increase", "QuotaExceededException", "too many open requests")
    [outcome] = ensure_quotas(client, [SPOT_G5])
    assert outcome.result == "error" and "QuotaExceededException" in outcome.detail


def test_listing_errors_are_reported_for_every_target(quotas) -> None:
    client, stubber = quotas
    stubber.add_client_error("list_service_quotas", "AccessDeniedException", "no")
    outcomes = ensure_quotas(client, [SPOT_G5, QuotaTarget("ml.g5.2xlarge", "training job", 1)])
    assert [o.result for o in outcomes] == ["error", "error"]


def test_quotas_are_found_across_pages_and_in_the_default_list(quotas) -> None:
    client, stubber = quotas
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [_quota("ml.p3.2xlarge for training job usage", "L-P3", 1)], "NextToken": "page2"},
        {"ServiceCode": "sagemaker"},
    )
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 4)]},
        {"ServiceCode": "sagemaker", "NextToken": "page2"},
    )
    stubber.add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [_quota("ml.g5.2xlarge for training job usage", "L-G52X", 0)]},
        {"ServiceCode": "sagemaker"},
    )
    _no_open_requests(stubber, "L-G52X")
    stubber.add_response(
        "request_service_quota_increase",
        {"RequestedQuota": {"Id": "req-2", "Status": "PENDING"}},
        {"ServiceCode": "sagemaker", "QuotaCode": "L-G52X", "DesiredValue": 1.0},
    )
    outcomes = ensure_quotas(client, [SPOT_G5, QuotaTarget("ml.g5.2xlarge", "training job", 1)])
    assert [o.result for o in outcomes] == ["sufficient", "requested"]


def test_unknown_quota_name_is_reported_not_found(quotas) -> None:
    client, stubber = quotas
    _lists(stubber, [])
    [outcome] = ensure_quotas(client, [SPOT_G5])
    assert outcome.result == "not-found"


def test_summary_fits_a_stack_output() -> None:
    from lambdas.quotas import QuotaOutcome

    summary = summarize([QuotaOutcome("ml.g5.xlarge", "spot training job", 2, "requested", 0.0, "L-1")])
    assert summary == "ml.g5.xlarge (spot training job): requested 0->2"


def test_custom_resource_reports_outcomes_as_data_and_never_fails(monkeypatch) -> None:
    from lambdas.handlers import quota_requests

    client = boto3.client("service-quotas", region_name="us-east-1")
    monkeypatch.setattr(quota_requests, "_quotas", client)
    event = {
        "RequestType": "Create",
        "LogicalResourceId": "QuotaRequests",
        "ResourceProperties": {
            "ServiceToken": "arn",
            "QuotaRequests": [{"InstanceType": "ml.g5.xlarge", "Usage": "spot training job", "DesiredValue": "2"}],
        },
    }
    with Stubber(client) as stubber:
        stubber.add_client_error("list_service_quotas", "AccessDeniedException", "no")
        response = quota_requests.handler(event, _LambdaContext())
    assert response["Data"]["ml.g5.xlarge/spot training job"] == "error"
    assert "error" in response["Data"]["Summary"]


def test_custom_resource_delete_changes_nothing(monkeypatch) -> None:
    from lambdas.handlers import quota_requests

    client = boto3.client("service-quotas", region_name="us-east-1")
    monkeypatch.setattr(quota_requests, "_quotas", client)
    with Stubber(client):  # any call would raise: none is stubbed
        response = quota_requests.handler(
            {"RequestType": "Delete", "PhysicalResourceId": "quota-requests-x", "LogicalResourceId": "Q"},
            _LambdaContext(),
        )
    assert response == {"PhysicalResourceId": "quota-requests-x"}


def test_stack_passes_configured_targets_to_the_custom_resource(synthesized) -> None:
    # Given cdk.json's quota requests (they follow the planner's default plans: tests/lambdas/test_lambda_estimate.py)
    configured = cdk_json_context()["finetune"]["quota_requests"]
    # Then the custom resource asks for exactly those, in order
    synthesized.quotas.has_resource_properties(
        "Custom::SageMakerQuotaRequests",
        {
            "QuotaRequests": [
                {"InstanceType": q["instance_type"], "Usage": q["usage"], "DesiredValue": str(q["desired_value"])}
                for q in configured
            ]
        },
    )


class _LambdaContext:
    function_name = "quota-requests"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:111122223333:function:quota-requests"
    aws_request_id = "req"
