"""Suite-wide fixtures: those more than one test folder uses. The app is synthesized ONCE per session (a cold synth
costs seconds), and so are the tiny models. Helpers (plain functions, classes, constants) live in tests/support."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.logging_hygiene import drop_handlers_on_closed_streams
from tests.support.synth import SynthesizedApp
from tests.support.training import ARCHITECTURES, Job, create_job, tokenizer_corpus

# Never reach a real account, metadata endpoint or tracing daemon from a test.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "finetune-tests",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
)


@pytest.fixture(scope="session")
def synthesized() -> SynthesizedApp:
    """Synthesize the real app once; nag findings would raise here and fail every infra test."""
    from aws_cdk import assertions

    from stacks.app_builder import build_app, cdk_json_context

    app = build_app(context=cdk_json_context())
    main_stack = app.node.find_child("Finetune")
    quota_stack = app.node.find_child("FinetuneQuotas")
    app.synth()
    main = assertions.Template.from_stack(main_stack)
    return SynthesizedApp(main=main, quotas=assertions.Template.from_stack(quota_stack), main_json=main.to_json())


@pytest.fixture(scope="session")
def workflow() -> Any:
    """The app synthesized once for offline runs (fast poll and retry settings): shared by every test directory that
    runs the workflow (workflow, CLI), so it is synthesized once per session, not once per importing conftest."""
    from finetune.local.runner import synthesize

    return synthesize()


@pytest.fixture
def account_with(workflow: Any) -> Iterator[Callable[..., Any]]:
    """`account_with(outcome_for)` → a running emulated account whose training jobs end as scripted (workflow, CLI,
    fault, leak and security tests); every account opened is closed at the end of the test."""
    from tests.support.workflow import running_account

    with ExitStack() as accounts:
        yield lambda outcome_for: accounts.enter_context(running_account(workflow, outcome_for))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny model per architecture (training and security tests); the tokenizer and warm-up see the train texts
    and label names only."""
    from finetune.local.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    corpus = tokenizer_corpus()
    return {architecture: build_tiny_model(architecture, root / architecture, corpus) for architecture in ARCHITECTURES}


@pytest.fixture
def make_job(tmp_path: Path) -> Callable[[str], Job]:
    """Create job folders (tests/support/training.py's `create_job`) under this test's tmp_path."""
    return lambda name="job": create_job(tmp_path / name)


@pytest.fixture(autouse=True)
def _no_log_handler_left_on_a_closed_stream() -> Iterator[None]:
    """After each test, drop log handlers whose stream a capture (capsys, CliRunner, redirect_stdout) has closed.

    Code that configures logging for a process of its own (train.py, library loggers configured on first use) binds
    a handler to the stream of that moment; in one test process that stream is a test's capture, closed when the test
    ends, and any later record on that logger (botocore's credential message, say) prints a "Logging error" traceback
    into whatever the next test captures. Which tests share a process depends on pytest-xdist's distribution."""
    yield
    drop_handlers_on_closed_streams()


# --------------------------------------------------------------------------------------------------------------------
# The fast lane (`make test-fast`): `slow` marks what trains a model, runs the workflow offline, starts DynamoDB Local,
# runs the demo or the CI recipe, or fuzzes. `make test` (and CI) runs everything; `-m "not slow"` the unit and
# contract tests. A test is slow by what it uses, so a new test of a slow kind is marked without anyone remembering.
# --------------------------------------------------------------------------------------------------------------------
# Fixtures whose setup runs a workflow, a training job or a database server.
SLOW_FIXTURES = frozenset({"workflow", "tiny_models", "mistral_tiny_model", "dynamodb_local"})
# Folders whose every test trains, runs the demo or fuzzes (relative to tests/).
SLOW_FOLDERS = frozenset({"training", "demo", "fuzz", "faults", "security", "workflow", "ledger"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tests (see SLOW_FIXTURES and SLOW_FOLDERS) so `-m "not slow"` leaves the fast lane."""
    tests_root = config.rootpath / "tests"
    for item in items:
        folder = item.path.relative_to(tests_root).parts[0] if item.path.is_relative_to(tests_root) else ""
        if folder in SLOW_FOLDERS or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
