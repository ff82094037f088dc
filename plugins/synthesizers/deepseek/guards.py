"""What keeps DeepSeek requests from being sent at all: the server's retry-after, remembered across
signals, and the circuit breaker.

Shared by every symbol synthesized in parallel, so each is thread-safe. Times come from `clock`
(monotonic seconds), which a test may replace.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from v7 import SynthesisFailed


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


class CircuitBreaker:
    """After `failures` consecutive failed signals, every signal falls back without a request for
    `cooldown` seconds; then one signal probes (the others still fall back) and its outcome closes
    the breaker or opens it for another cool-down. `failures = 0` turns it off."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self._failed = 0  # consecutive failed signals
        self._open_until: float | None = None  # clock time; None = closed
        self._probing = False  # half-open: one signal is probing

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failed

    def admit(self) -> bool:
        """Let a signal send requests: True when it is the probe; raise SynthesisFailed (0 attempts) while open."""
        if self.failures <= 0:
            return False
        with self._lock:
            if self._open_until is None:
                return False
            remaining = self._open_until - self.clock()
            if remaining > 0:
                raise SynthesisFailed(f"circuit breaker open after {self._failed} consecutive failed signals; "
                                      f"next probe in {math.ceil(remaining)} s", attempts=0)
            if self._probing:
                raise SynthesisFailed("circuit breaker half-open: another signal is probing", attempts=0)
            self._probing = True
            return True

    def release(self, probe: bool) -> None:
        """A signal that sent no request (or was stopped) decides nothing: the next one probes instead."""
        if probe:
            with self._lock:
                self._probing = False

    def succeeded(self) -> int:
        """A signal got an answer: closed. The failures it ends when that closed an open breaker, else 0."""
        with self._lock:
            was_open, failed = self._open_until is not None, self._failed
            self._failed, self._open_until, self._probing = 0, None, False
        return failed if was_open else 0

    def failed(self, probe: bool) -> str | None:
        """A signal's requests all failed: "opened", "reopened" (a failed probe) or None (no change)."""
        if self.failures <= 0:
            return None
        with self._lock:
            self._failed += 1
            if probe:
                self._probing = False
                self._open_until = self.clock() + self.cooldown
                return "reopened"
            if self._open_until is None and self._failed >= self.failures:
                self._open_until = self.clock() + self.cooldown
                return "opened"
            return None
