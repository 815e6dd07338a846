"""The between-tests cleanup of log handlers left on closed capture streams (tests/support/logging_hygiene.py)."""

from __future__ import annotations

import io
import logging
import uuid

from aws_lambda_powertools import Logger

from tests.support.logging_hygiene import drop_handlers_on_closed_streams


def test_a_powertools_logger_whose_stream_closed_can_be_created_again_after_the_cleanup() -> None:
    # Given a Powertools logger configured on a test's capture stream, which the test's end then closes
    service = f"cleanup-test-{uuid.uuid4().hex}"
    capture = io.StringIO()
    Logger(service=service, logger_handler=logging.StreamHandler(capture))
    capture.close()

    # When the cleanup runs and a handler module is imported afresh (the offline runner's cold start)
    dropped = drop_handlers_on_closed_streams()
    again = Logger(service=service)

    # Then the closed handler is gone and the new logger writes through a handler of its own
    assert [handler.stream for handler in dropped] == [capture]  # type: ignore[attr-defined]
    assert again.handlers and not again.handlers[0].stream.closed  # type: ignore[attr-defined]


def test_handlers_on_open_streams_are_kept() -> None:
    # Given a logger with a handler on an open stream
    logger = logging.getLogger(f"cleanup-test-{uuid.uuid4().hex}")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)

    # When the cleanup runs, then it is still there
    drop_handlers_on_closed_streams()
    assert logger.handlers == [handler]
    logger.removeHandler(handler)
