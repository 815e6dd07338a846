"""Issue 19's smaller fixes, one behaviour each (the template-level ones are in tests/infra/test_no_leaks_template.py,
the scenarios in test_money_leaks.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from lambdas import aws, catalog, cost, errors, failures, training_job
from lambdas.errors import ConfigurationError, QuotaExhausted, TrainingJobNotFound
from lambdas.quotas import QuotaTarget, ensure_quotas
from stacks.app_builder import cdk_json_context
from stacks.config import CONTEXT_KEY, load_config
from tests.infra.test_quota_requests import _no_open_requests, _quota
from tests.lambdas.test_lambda_launch import request_for
from tests.support.lambdas import study_jobs

REPO = Path(__file__).resolve().parents[2]


# -- 6. Prices from the right region -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("region", "usage_type"),
    [
        ("il-central-1", "ILC1-Train:ml.g5.xlarge"),
        ("me-central-1", "MEC1-Train:ml.g5.xlarge"),
        ("ap-southeast-3", "APS4-Train:ml.g5.xlarge"),
        ("ca-west-1", "CAW1-Train:ml.g5.xlarge"),
    ],
)
def test_newer_regions_are_priced_from_their_own_price_list_entries(region: str, usage_type: str) -> None:
    assert cost.training_usage_type("ml.g5.xlarge", region) == usage_type


def test_a_region_without_a_billing_code_is_priced_from_the_catalog_out_loud(caplog) -> None:
    # Given a region the table does not know, When a price is looked up
    with caplog.at_level(logging.WARNING, logger="lambdas.cost"):
        price = cost.lookup_hourly_price(object(), "ml.g5.xlarge", "xx-nowhere-1")
    # Then it is the catalog's, and the log says so
    assert price.source == cost.PRICE_SOURCE_CATALOG
    assert "xx-nowhere-1" in caplog.text and "us-east-1" in caplog.text


# -- 7. A quota that is not an instance count ----------------------------------------------------------------------
RUNTIME_QUOTA = (
    "The account-level service limit 'Longest run time for a training job in seconds' is 432000 Seconds, with current "
    "utilization of 0 Seconds and a request delta of 864000 Seconds. Please use AWS Service Quotas to request an "
    "increase for this quota."
)


def test_a_quota_counted_in_seconds_is_not_waited_for() -> None:
    # Given CreateTrainingJob refusing a job for a runtime quota (no other job's end can free it)
    request = request_for(study_jobs()[0])
    sagemaker = aws.client("sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("create_training_job", "ResourceLimitExceeded", RUNTIME_QUOTA, expected_params=request)
        # Then Launch raises the error the state machine does not retry for hours
        with pytest.raises(QuotaExhausted):
            training_job.launch(sagemaker, request)
    assert failures.quota_can_never_fit(RUNTIME_QUOTA)
    # while an instance quota held by other jobs is still waited for
    assert not failures.quota_can_never_fit(
        "The account-level service limit 'ml.g5.xlarge for spot training job usage' is 2 Instances, with current "
        "utilization of 2 Instances and a request delta of 1 Instances."
    )


def test_a_quota_only_in_the_default_list_is_not_taken_as_sufficient() -> None:
    # Given an account whose applied list lacks the quota, AWS's default (4) above what is wanted, and no applied
    # value available from GetServiceQuota either (a new account's may be lower: spot GPU quotas often start at 0)
    client = boto3.client("service-quotas", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("list_service_quotas", {"Quotas": []}, {"ServiceCode": "sagemaker"})
        stubber.add_response(
            "list_aws_default_service_quotas",
            {"Quotas": [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT1", 4)]},
            {"ServiceCode": "sagemaker"},
        )
        stubber.add_client_error(
            "get_service_quota",
            "NoSuchResourceException",
            "no applied value",
            expected_params={"ServiceCode": "sagemaker", "QuotaCode": "L-SPOT1"},
        )
        _no_open_requests(stubber, "L-SPOT1")
        stubber.add_response(
            "request_service_quota_increase",
            {"RequestedQuota": {"Id": "req-7", "Status": "PENDING"}},
            {"ServiceCode": "sagemaker", "QuotaCode": "L-SPOT1", "DesiredValue": 2.0},
        )
        # When the quota stack ensures 2
        [outcome] = ensure_quotas(client, [QuotaTarget("ml.g5.xlarge", "spot training job", 2)])
        stubber.assert_no_pending_responses()
    # Then it does not report the default as the account's value: it asks for the increase
    assert (outcome.result, outcome.current_value) == ("requested", None)


# -- 8. Inter-container traffic encryption ---------------------------------------------------------------------------
def test_multi_instance_jobs_encrypt_inter_container_traffic() -> None:
    single = study_jobs()[0]
    multi = {**single, "instance_count": 2}
    assert "EnableInterContainerTrafficEncryption" not in request_for(single)
    assert request_for(multi)["EnableInterContainerTrafficEncryption"] is True  # type: ignore[arg-type]


# -- Status: any unexpected error is typed, and retried by the state machine -----------------------------------------
@pytest.mark.parametrize(
    "failure",
    [
        lambda stub: stub.add_client_error("describe_training_job", "AccessDeniedException", "not yet propagated"),
        lambda stub: stub.add_client_error("describe_training_job", "InternalFailure", "oops", http_status_code=500),
    ],
)
def test_status_types_an_unexpected_describe_error_as_unavailable_not_lost(failure: Any) -> None:
    sagemaker = boto3.client(
        "sagemaker", region_name="us-east-1", config=aws.client_config(max_attempts=1)
    )  # botocore's own retries are already spent
    with Stubber(sagemaker) as stub:
        failure(stub)
        with pytest.raises(errors.JobStatusUnavailable, match="finetune-x"):
            training_job.status(sagemaker, "finetune-x")


def test_status_types_a_network_failure_as_unavailable(monkeypatch) -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")

    def unreachable(**_kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com")

    monkeypatch.setattr(sagemaker, "describe_training_job", unreachable)
    with pytest.raises(errors.JobStatusUnavailable):
        training_job.status(sagemaker, "finetune-x")


def test_a_job_sagemaker_does_not_know_is_still_provably_gone() -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.")
        with pytest.raises(TrainingJobNotFound):
            training_job.status(sagemaker, "finetune-x")


# -- 5. The smoke example runs a setup the DLC supports ----------------------------------------------------------------
def test_the_smoke_example_runs_on_a_gpu_instance_whose_spot_quota_the_deployment_requests() -> None:
    smoke = json.loads((REPO / "examples" / "smoke.json").read_text())
    [experiment] = smoke["experiments"]
    instance = catalog.INSTANCES[experiment["instance_type"]]
    # The Hugging Face PyTorch training DLC has GPU images only for this version
    assert instance.gpus >= 1
    config = load_config(cdk_json_context()[CONTEXT_KEY])
    requested = {(q.instance_type, q.usage) for q in config.quota_requests if q.desired_value >= 1}
    usage = "spot training job" if smoke["spot"] else "training job"
    assert (experiment["instance_type"], usage) in requested
    # and it is the cheapest GPU type whose quota the deployment requests (one quota serves the smoke and the study's
    # QLoRA jobs; a cheaper type would need a quota of its own)
    requested_gpu = [catalog.INSTANCES[t] for t, u in requested if u == usage and catalog.INSTANCES[t].gpus >= 1]
    assert instance.hourly_price_usd == min(i.hourly_price_usd for i in requested_gpu)


# -- The reconciler's settings ---------------------------------------------------------------------------------------
def test_reconciler_settings_name_a_missing_variable() -> None:
    from lambdas import reconcile

    with pytest.raises(ConfigurationError, match="STATE_MACHINE_ARN"):
        reconcile.ReconcileSettings.from_env(
            {"TABLE_NAME": "t", "TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "JOB_NAME_PREFIX": "finetune-abc123"}
        )
