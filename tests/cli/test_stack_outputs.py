"""How the CLI finds the deployed stack (CloudFormation DescribeStacks) and what users read when it cannot."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from finetune.cli import Session, app
from finetune.deployment import StackNotFound, StackOutputs, deployment_config, describe_stack_outputs
from tests.support.cli import finetune


def _cloudformation():
    return boto3.client("cloudformation", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_describe_stacks_outputs_become_the_cli_resources() -> None:
    # Given a deployed stack with the fine-tuning stack's outputs (and others the CLI ignores)
    client = _cloudformation()
    outputs = {
        "BucketName": "finetune-data-123",
        "LedgerTableName": "finetune-ledger",
        "StateMachineArn": "arn:aws:states:eu-west-1:123456789012:stateMachine:finetune",
        "NotificationTopicArn": "arn:aws:sns:eu-west-1:123456789012:finetune",
    }
    stack = {
        "StackName": "Finetune",
        "CreationTime": "2026-01-01T00:00:00Z",
        "StackStatus": "CREATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
    }
    with Stubber(client) as stubber:
        stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "Finetune"})

        # When the CLI looks it up by name
        found = describe_stack_outputs(client, "Finetune")

    # Then it has the bucket, the ledger and the state machine
    assert found == StackOutputs("finetune-data-123", "finetune-ledger", outputs["StateMachineArn"])


def test_a_stack_missing_in_the_region_is_stack_not_found() -> None:
    client = _cloudformation()
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "describe_stacks", "ValidationError", "Stack with id Finetune does not exist", expected_params=None
        )
        with pytest.raises(StackNotFound, match="does not exist"):
            describe_stack_outputs(client, "Finetune")


def test_the_default_stack_name_comes_from_cdk_json() -> None:
    assert deployment_config().stack_name == "Finetune"


def test_a_stack_not_deployed_is_reported_with_its_name_and_region() -> None:
    # Given a region where the stack was never deployed
    def not_deployed(_session, stack_name):
        raise StackNotFound(f"Stack with id {stack_name} does not exist")

    session = Session(resolve_outputs=not_deployed, region="eu-central-1")

    # When a command needs the stack
    result = CliRunner().invoke(
        app, ["runs"], obj=session, env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    )

    # Then the user reads which stack, which region, and what to do
    assert result.exit_code == 1
    assert "stack Finetune is not deployed in eu-central-1" in result.stderr
    assert "--stack / --region" in result.stderr


@pytest.mark.usefixtures("no_credentials")
def test_without_credentials_an_aws_command_says_how_to_get_them() -> None:
    result = finetune(None, "runs")

    assert result.exit_code == 1
    assert "no AWS credentials: run `aws configure` or `aws sso login`, or pass --profile" in result.stderr


def test_the_console_command_is_the_typer_app_declared_as_the_package_entry_point() -> None:
    scripts = tomllib.loads(Path("pyproject.toml").read_text())["project"]["scripts"]
    module, _, attribute = scripts["finetune"].partition(":")

    assert getattr(importlib.import_module(module), attribute) is app
