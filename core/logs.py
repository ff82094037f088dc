"""structlog setup: readable lines by default, JSON lines with `--log-json`, always on stderr.

structlog is imported on first use: plugin modules import `get_logger` at module level, and
structlog's console renderer pulls in rich, which `v7 plugins` must not pay for.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", json_lines: bool = False, stream: Any = None) -> None:
    import structlog

    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_lines:
        # Tracebacks as data, without local variables: a local can hold an API key.
        tracebacks = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        processors += [tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # Resolve stderr when a logger is made, not once: tests and embedders swap it.
        logger_factory=(lambda *_: structlog.PrintLogger(stream)) if stream else (lambda *_: structlog.PrintLogger(sys.stderr)),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    import structlog

    return structlog.get_logger("v7").bind(**context)
