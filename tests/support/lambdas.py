"""Shared constants and builders for the Lambda logic tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.stub import Stubber

from lambdas import aws, plan
from lambdas.job_spec import JobSpec
from lambdas.settings import PlanSettings

REGION = "us-east-1"
BUCKET = "finetune-data-test"
TABLE = "finetune-ledger-test"
PREFIX = "ft"
ROLE_ARN = "arn:aws:iam::123456789012:role/finetune-sagemaker"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:finetune/hf-token-AbCdEf"
IMAGE_URI = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
    "2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/{}"
CODE_URI = "s3://finetune-assets-test/code/sourcedir.tar.gz"
DATA_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

ENVIRONMENT = {
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "BUCKET_NAME": BUCKET,
    "TABLE_NAME": TABLE,
    "SAGEMAKER_ROLE_ARN": ROLE_ARN,
    "HF_TOKEN_SECRET_ARN": SECRET_ARN,
    "TRAINING_IMAGE_URI": IMAGE_URI,
    "CODE_S3_URI": CODE_URI,
    "DEFAULT_BUDGET_USD": "50",
    "JOB_NAME_PREFIX": PREFIX,
    "DATA_KEY_ARN": DATA_KEY_ARN,
    "EXECUTION_TIMEOUT_SECONDS": str(48 * 3600),
    "STATUS_POLL_SECONDS": "300",
    "POWERTOOLS_SERVICE_NAME": "finetune-tests",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes Powertools' inject_lambda_context reads."""

    function_name: str = "finetune-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:finetune-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


def price_list_item(instance_type: str, usd: str, region_prefix: str = "USE1") -> str:
    """One Price List `PriceList` entry, shaped like the real (JSON-encoded) SageMaker ones."""
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "attributes": {
                    "usagetype": f"{region_prefix}-Train:{instance_type}",
                    "instanceName": instance_type,
                    "regionCode": REGION,
                    "servicecode": "AmazonSageMaker",
                },
                "sku": "SKU123",
            },
            "serviceCode": "AmazonSageMaker",
            "terms": {
                "OnDemand": {
                    "SKU123.JRTCKXETXF": {
                        "priceDimensions": {
                            "SKU123.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": usd},
                                "description": f"${usd} per hour",
                            }
                        },
                        "sku": "SKU123",
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def quota(name: str, value: float) -> dict[str, Any]:
    """One ListServiceQuotas entry."""
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaCode": "L-0123ABCD",
        "QuotaName": name,
        "Value": value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


def describe_secret_response(*, has_value: bool) -> dict[str, Any]:
    """A DescribeSecret response for the token secret; one created without a value has no VersionIdsToStages."""
    response: dict[str, Any] = {
        "ARN": SECRET_ARN,
        "Name": "finetune/hf-token",
        "Description": "Hugging Face token for gated models",
        "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "CreatedDate": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        "Tags": [{"Key": "project", "Value": "finetune"}],
    }
    if has_value:
        response["LastChangedDate"] = datetime(2026, 11, 25, 12, 5, tzinfo=UTC)
        response["VersionIdsToStages"] = {"c0ffee00-1111-2222-3333-444455556666": ["AWSCURRENT"]}
    return response


@dataclass
class StubbedClients:
    """Pricing, Service Quotas and Secrets Manager clients with active Stubbers (the handlers get the same cached
    clients)."""

    pricing: Any
    pricing_stub: Stubber
    quotas: Any
    quotas_stub: Stubber
    secrets: Any
    secrets_stub: Stubber

    def prices(self, prices: dict[str, str]) -> None:
        """Answer one get_products call per instance type, in the given order."""
        for instance_type, usd in prices.items():
            self.pricing_stub.add_response(
                "get_products", {"FormatVersion": "aws_v1", "PriceList": [price_list_item(instance_type, usd)]}
            )

    def quota_values(self, values: dict[str, float]) -> None:
        """Answer one (single-page) ListServiceQuotas call."""
        self.quotas_stub.add_response("list_service_quotas", {"Quotas": [quota(n, v) for n, v in values.items()]})

    def token_secret(self, *, has_value: bool) -> None:
        """Answer one DescribeSecret call for the token secret (and fail the test if Plan asks anything else)."""
        self.secrets_stub.add_response(
            "describe_secret", describe_secret_response(has_value=has_value), {"SecretId": SECRET_ARN}
        )


def plan_settings(**overrides: Any) -> PlanSettings:
    """Plan's settings from the test environment, with overrides."""
    return dataclasses.replace(PlanSettings.from_env(ENVIRONMENT), **overrides)


def run_plan(execution_input: Any, stubbed: StubbedClients, **overrides: Any) -> dict[str, Any]:
    """Plan's whole step (`plan.plan_run`) for execution "study-1": moto S3, stubbed Pricing, quotas and secrets."""
    return dict(
        plan.plan_run(
            execution_input,
            "study-1",
            plan_settings(**overrides),
            s3=aws.client("s3"),
            pricing=stubbed.pricing,
            quotas=stubbed.quotas,
            secretsmanager=stubbed.secrets,
        )
    )


def study_jobs(
    execution_input: dict[str, Any] | None = None,
    run_id: str = "run-1",
    *,
    calibrations: Callable[[list[dict[str, Any]]], Any] | None = None,
) -> list[JobSpec]:
    """JobSpecs as Plan builds them, priced from the catalog (no AWS); `calibrations(experiments)`, when given, reads
    the calibrations their estimates use (as plan.read_calibrations does)."""
    doc, experiments = plan.validate_execution_input(execution_input or {})
    return plan.build_jobs(
        doc,
        experiments,
        run_id=run_id,
        bucket=BUCKET,
        job_name_prefix=PREFIX,
        price_of=plan.catalog_price,
        calibrations=calibrations(experiments) if calibrations else None,
    )


def one_job(**experiment: Any) -> JobSpec:
    """A single JobSpec (default: mistral-7b LoRA on its catalog instance)."""
    spec = {"model": "mistral-7b", "approach": "lora", **experiment}
    return study_jobs({"experiments": [spec]})[0]


def describe_response(name: str, **fields: Any) -> dict[str, Any]:
    """A DescribeTrainingJob response with the required members (Stubber validates responses too)."""
    return {
        "TrainingJobName": name,
        "TrainingJobArn": ARN.format(name),
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 200},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m"},
        "CreationTime": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        **fields,
    }
