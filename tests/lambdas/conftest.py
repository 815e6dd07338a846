"""Fixtures for the Lambda logic tests: moto AWS, the functions' environment, stubbed Pricing/Service Quotas/Secrets.

moto covers S3, DynamoDB and SageMaker; Pricing and Service Quotas are not in moto, so they get botocore Stubbers with
real response shapes (a Stubber also validates every request against the service model). Plan's DescribeSecret is
stubbed too, to pin down exactly which call it makes (never GetSecretValue).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.stub import Stubber
from moto import mock_aws

from lambdas import aws, ledger, settings
from tests.support.lambdas import BUCKET, ENVIRONMENT, REGION, TABLE, FakeLambdaContext, StubbedClients


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every variable the handlers read, and fresh cached settings/clients around each test."""
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    settings.clear_cache()
    aws.reset_clients()
    yield
    settings.clear_cache()
    aws.reset_clients()


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """moto for S3, DynamoDB and SageMaker with the data bucket (holding banking77) and the ledger table."""
    with mock_aws():
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for split in ("train", "test"):
            s3.put_object(
                Bucket=BUCKET,
                Key=f"datasets/banking77/{split}/part-0.jsonl",
                Body=b'{"text": "where is my card?", "label": "card_arrival"}\n',
            )
        aws.client("dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": ledger.MODEL_APPROACH_KEY, "AttributeType": "S"},
                {"AttributeName": ledger.MODEL_APPROACH_SORT_KEY, "AttributeType": "S"},
                {"AttributeName": ledger.CALIBRATION_KEY, "AttributeType": "S"},
            ],
            # As stacks/constructs/ledger.py defines it
            GlobalSecondaryIndexes=[
                {
                    "IndexName": ledger.MODEL_APPROACH_INDEX,
                    "KeySchema": [
                        {"AttributeName": ledger.MODEL_APPROACH_KEY, "KeyType": "HASH"},
                        {"AttributeName": ledger.MODEL_APPROACH_SORT_KEY, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": ledger.CALIBRATION_INDEX,
                    "KeySchema": [
                        {"AttributeName": ledger.CALIBRATION_KEY, "KeyType": "HASH"},
                        {"AttributeName": ledger.MODEL_APPROACH_SORT_KEY, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield


@pytest.fixture
def stubbed() -> Iterator[StubbedClients]:
    pricing = aws.pricing_client(REGION)
    quotas = aws.service_quotas_client(REGION)
    secrets = aws.client("secretsmanager")
    with Stubber(pricing) as pricing_stub, Stubber(quotas) as quotas_stub, Stubber(secrets) as secrets_stub:
        yield StubbedClients(pricing, pricing_stub, quotas, quotas_stub, secrets, secrets_stub)
