"""Apprise's own log, kept out of V7's: Apprise logs URLs and payloads (tokens included) on the
`apprise` logger. It is cut off from the root logger once, and what it says at warning level
while a channel sends is captured for that send only (a context variable: Apprise 2 sends on
its own pool but copies the caller's context), to be scrubbed and logged as the reason of a
failed delivery."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_installed = threading.Lock()
_handler: "_Capture | None" = None
_lines: ContextVar[list[str] | None] = ContextVar("v7_notify_apprise_lines", default=None)


class _Capture(logging.Handler):
    """Keeps the messages logged inside a `captured()` block, drops the rest."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        lines = _lines.get()
        if lines is not None and len(lines) < 20:
            try:
                lines.append(record.getMessage())
            except Exception:  # a malformed log call inside Apprise must not break a delivery
                lines.append(str(record.msg))


def quiet_apprise() -> None:
    """Cut the `apprise` logger off from V7's handlers (idempotent): nothing it logs reaches V7's output."""
    global _handler
    with _installed:
        if _handler is not None:
            return
        logger = logging.getLogger("apprise")
        logger.propagate = False
        logger.setLevel(logging.WARNING)  # its debug lines (URLs and payloads) are not even formatted
        _handler = _Capture()
        logger.addHandler(_handler)


@contextmanager
def captured() -> Iterator[list[str]]:
    """What Apprise logs at warning level or above for this send, unscrubbed: scrub before use."""
    quiet_apprise()
    lines: list[str] = []
    token = _lines.set(lines)
    try:
        yield lines
    finally:
        _lines.reset(token)
