"""The money-leak scenarios' emulated account (`account_with`); the app is synthesized once per session by
tests/conftest.py's `workflow` fixture."""

from tests.workflow.conftest import account_with

__all__ = ["account_with"]
