"""Fixtures shared with the workflow and training tests: the emulated account, tiny models and job folders."""

from tests.training.conftest import make_job, single_threaded_torch, tiny_models
from tests.workflow.conftest import account_with

__all__ = ["account_with", "make_job", "single_threaded_torch", "tiny_models"]
