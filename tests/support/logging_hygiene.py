"""Log handlers left on a stream a test's capture has closed, and their removal between tests."""

from __future__ import annotations

import logging

# What aws_lambda_powertools.Logger marks a configured logger with (logging/logger.py, 3.x): a later Logger() of the
# same service reuses the marked handler (`handlers[0]`) instead of configuring the logger afresh.
POWERTOOLS_MARKS = ("init", "powertools_handler", "powertools_buffer_config", "powertools_buffer_cache")


def drop_handlers_on_closed_streams() -> list[logging.Handler]:
    """Remove from every logger the handlers whose stream is closed; return them.

    A logger Powertools configured loses its marks with its handler: the offline runner re-imports the handlers
    module at each cold start, and a new `Logger()` that found the marks but no handler failed with IndexError."""
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    dropped: list[logging.Handler] = []
    for logger in loggers:
        for handler in logger.handlers[:]:
            if getattr(getattr(handler, "stream", None), "closed", False):
                logger.removeHandler(handler)
                dropped.append(handler)
                if getattr(logger, "powertools_handler", None) is handler:
                    for mark in POWERTOOLS_MARKS:
                        if hasattr(logger, mark):
                            delattr(logger, mark)
    return dropped
