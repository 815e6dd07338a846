"""Fixtures of the secret-hygiene tests; the emulated account, tiny models and job folders they share with the
workflow and training tests are suite-wide fixtures (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.training import one_torch_thread


@pytest.fixture(scope="session", autouse=True)
def single_threaded_torch() -> Iterator[None]:
    """One intra-op thread, as for the training tests (see `one_torch_thread`): one test here trains in-process."""
    with one_torch_thread():
        yield
