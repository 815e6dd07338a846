"""The workflow tests' emulated account (`account_with`), for the fault scenarios; the app is synthesized once per
session by tests/conftest.py's `workflow` fixture."""

from tests.workflow.conftest import account_with

__all__ = ["account_with"]
