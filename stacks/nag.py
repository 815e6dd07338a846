"""Helpers to acknowledge cdk-nag AwsSolutions findings next to the statement they concern, with a reason.

Findings are matched by exact id (e.g. `AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/datasets/*]`),
so each acknowledgement covers one rule on one resource pattern on one construct: nothing else slips through.
"""

from __future__ import annotations

import json
from typing import Any, cast

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge `AwsSolutions-<finding>` on `scope` (and its children) with `reason`."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-{finding}", reason=reason))


def arn_ref(resource: IConstruct) -> str:
    """How cdk-nag writes the `Fn::GetAtt <resource>.Arn` of a same-stack resource in a finding id."""
    # jsii types default_child as IConstruct; an L2's default child is its CfnResource, an L1 is one itself.
    element = cast(CfnElement, resource.node.default_child or resource)
    return f"<{Stack.of(resource).get_logical_id(element)}.Arn>"


def nag_resource(scope: IConstruct, value: str) -> str:
    """How cdk-nag writes `value` (a string that may hold tokens) in a finding id such as `IAM5[Resource::...]`:
    the resolved CloudFormation value flattened the way cdk-nag's `flattenCfnReference` does."""
    return _flatten(Stack.of(scope).resolve(value))


def _flatten(node: Any) -> str:
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if "Fn::Join" in node:
        delimiter, items = node["Fn::Join"]
        return delimiter.join(_flatten(item) for item in items)
    if "Fn::Sub" in node:
        return _flatten(node["Fn::Sub"])
    if "Fn::GetAtt" in node:
        logical_id, attribute = node["Fn::GetAtt"]
        return f"<{_flatten(logical_id)}.{_flatten(attribute)}>"
    if "Ref" in node:
        return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))  # JSON.stringify, as cdk-nag falls back to
