"""Calibration of the time model from recorded jobs (issue 18, item 2).

Placeholder with the shared contract only (`calibration_key`, `Calibration`): the calibration helper's branch owns
this module and replaces it (actuals per part, `calibrations(rows)`); take theirs at the merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lambdas import catalog


def calibration_key(instance_type: str, approach: str, strategy: str) -> str:
    """`<instance family>#<approach>#<strategy>`, e.g. `g5#lora#single`: the jobs whose actuals correct each other."""
    family = catalog.INSTANCES[instance_type].family if instance_type in catalog.INSTANCES else instance_type
    return f"{family}#{approach}#{strategy}"


@dataclass(frozen=True)
class Calibration:
    """Per-part factors (actual / estimated seconds; 1.0 = the time model's table) for one key."""

    key: str
    factors: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    source: str = "table"
