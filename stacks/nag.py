"""Helpers to acknowledge cdk-nag AwsSolutions findings next to the statement they concern, with a reason.

Findings are matched by exact id (e.g. `AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/datasets/*]`),
so each acknowledgement covers one rule on one resource pattern on one construct: nothing else slips through.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge `AwsSolutions-<finding>` on `scope` (and its children) with `reason`."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-{finding}", reason=reason))


def arn_ref(resource: IConstruct) -> str:
    """How cdk-nag writes the `Fn::GetAtt <resource>.Arn` of a same-stack resource in a finding id."""
    default_child = resource.node.default_child or resource
    return f"<{Stack.of(resource).get_logical_id(default_child)}.Arn>"
