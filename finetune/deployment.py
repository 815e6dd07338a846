"""What the CLI knows about a deployment: cdk.json's settings (read, never synthesized) and the stack's outputs.

The CLI imports the logic layer and `stacks.config` (plain settings parsing), never the CDK constructs: an operator's
machine needs boto3, not the CDK.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stacks.config import CONTEXT_KEY, Config, load_config

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


class StackNotFound(Exception):
    """The stack is not deployed in the region asked (or the principal may not describe it)."""


@dataclass(frozen=True)
class StackOutputs:
    """The outputs of the fine-tuning stack that the CLI uses (CfnOutput names of stacks/finetune_stack.py)."""

    bucket_name: str
    ledger_table_name: str
    state_machine_arn: str

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> StackOutputs:
        """From DescribeStacks' `OutputKey` → `OutputValue` map."""
        return cls(
            bucket_name=outputs["BucketName"],
            ledger_table_name=outputs["LedgerTableName"],
            state_machine_arn=outputs["StateMachineArn"],
        )


# (boto3 session, stack name) -> outputs. Tests replace it with the emulated account's resources.
OutputsResolver = Callable[[Any, str], StackOutputs]


def deployment_config(path: Path = CDK_JSON) -> Config:
    """The deployment's settings as `cdk synth` reads them from cdk.json (defaults when there is no cdk.json)."""
    context = json.loads(path.read_text())["context"].get(CONTEXT_KEY) if path.exists() else None
    return load_config(context)


def describe_stack_outputs(cloudformation: Any, stack_name: str) -> StackOutputs:
    """The stack's outputs via CloudFormation DescribeStacks; `StackNotFound` when it is not there."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        # CloudFormation answers a missing stack with a generic ValidationError "Stack with id X does not exist".
        if exc.response["Error"]["Code"] == "ValidationError":
            raise StackNotFound(exc.response["Error"]["Message"]) from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    try:
        return StackOutputs.from_outputs(outputs)
    except KeyError as missing:
        raise StackNotFound(f"stack {stack_name} has no output {missing} (is it the fine-tuning stack?)") from None


def resolve_from_cloudformation(session: Any, stack_name: str) -> StackOutputs:
    """The default resolver: DescribeStacks in the session's region."""
    return describe_stack_outputs(session.client("cloudformation"), stack_name)
