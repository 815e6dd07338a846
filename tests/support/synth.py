"""What the session's one synthesis of the app yields (the `synthesized` fixture in tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SynthesizedApp:
    """Templates of the app as `cdk synth` produces them (cdk.json context, nag checks included)."""

    main: Any  # aws_cdk.assertions.Template of the fine-tuning stack
    quotas: Any  # aws_cdk.assertions.Template of the quota stack
    main_json: dict[str, Any]
