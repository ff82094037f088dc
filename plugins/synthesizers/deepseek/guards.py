"""What keeps DeepSeek requests from being sent at all: the server's retry-after, remembered across signals.

Shared by every symbol synthesized in parallel, so each is thread-safe. Times come from `clock`
(monotonic seconds), which a test may replace.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable


@dataclass(frozen=True)
class Hold:
    """A remembered retry-after that has not passed yet."""

    remaining: float  # seconds until a request may be sent
    asked: float  # the retry-after the server gave, in seconds
    until: datetime  # UTC
    last: str  # the failed answer that carried it

    def too_long(self, max_wait: float) -> str:
        """The fallback reason when the wait exceeds `max_wait`."""
        return (f"retry-after {self.asked:g} s exceeds max_retry_after_seconds ({max_wait:g} s): "
                f"no request before {self.until:%Y-%m-%d %H:%M:%S} UTC; last: {self.last}")


class NotBefore:
    """The earliest time the server allows another request, from its latest retry-after; for every signal."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._until = 0.0  # clock time
        self._asked = 0.0
        self._until_utc = datetime.min.replace(tzinfo=timezone.utc)
        self._last = ""

    def remember(self, seconds: float, last: str) -> None:
        """The server asked for no request during the next `seconds`; a later time it gave earlier stays."""
        with self._lock:
            until = self.clock() + seconds
            if until > self._until:
                self._until, self._asked, self._last = until, seconds, last
                self._until_utc = datetime.now(timezone.utc) + timedelta(seconds=seconds)

    def hold(self) -> Hold | None:
        """The wait still asked for, or None when a request may be sent now."""
        with self._lock:
            remaining = self._until - self.clock()
            if remaining <= 0:
                return None
            return Hold(remaining, self._asked, self._until_utc, self._last)
