"""Resolve the CloudFormation intrinsics CDK emits, so synthesized values can be used against emulated AWS.

Only what this app's templates contain is supported (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select,
Fn::Split, pseudo parameters); anything else raises, so a template change can't silently produce garbage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass
class Resolver:
    """Physical values for a template's logical ids (`refs`) and attributes (`attributes[(id, attr)]`)."""

    account_id: str
    region: str
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def pseudo(self) -> dict[str, str]:
        """Values of the pseudo parameters."""
        return {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "local",
        }

    def _ref(self, name: str) -> str:
        pseudo = self.pseudo()
        if name in pseudo:
            return pseudo[name]
        if name not in self.refs:
            raise KeyError(f"no local value for Ref {name}")
        return self.refs[name]

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if (logical_id, attribute) not in self.attributes:
            raise KeyError(f"no local value for Fn::GetAtt {logical_id}.{attribute}")
        return self.attributes[(logical_id, attribute)]

    def _sub(self, template: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return self._ref(name)

        return _SUB_VARIABLE.sub(replace, template)

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function replaced by its local physical value."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Fn::", "Ref")):
            return {key: self.resolve(item) for key, item in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(argument)
        if function == "Fn::GetAtt":
            return self._get_att(*argument)
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(self.resolve(part)) for part in parts)
        if function == "Fn::Sub":
            template, variables = (argument, {}) if isinstance(argument, str) else argument
            return self._sub(template, variables)
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(index)]
        if function == "Fn::Split":
            separator, source = argument
            return str(self.resolve(source)).split(separator)
        raise ValueError(f"unsupported intrinsic {function}")
