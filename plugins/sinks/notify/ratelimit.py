"""A channel's rate limit: at most one message per `min_interval_s`, and `limit` per rolling
`window_s`; what arrives past the window's limit is held back for one digest message."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from .messages import DIGEST_LINES, Message, digest_message


class RateLimit:
    def __init__(self, min_interval_s: float, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval_s, self.limit, self.window_s, self.clock = min_interval_s, limit, window_s, clock
        self._sent: deque[float] = deque()

    def wait_s(self) -> float:
        """Seconds until the next message may go (0: now)."""
        now = self.clock()
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()
        waits = [0.0]
        if self._sent:
            waits.append(self._sent[-1] + self.min_interval_s - now)
        if len(self._sent) >= self.limit:
            waits.append(self._sent[0] + self.window_s - now)
        return max(waits)

    def over(self) -> bool:
        """True when the window's limit is reached: more than pacing stands between now and the next message."""
        return self.wait_s() > self.min_interval_s

    def sent(self) -> None:
        self._sent.append(self.clock())


class Held:
    """Messages the rate limit held back: the first few kept for the digest, the rest only counted."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.total = 0

    def add(self, message: Message) -> None:
        self.total += 1
        if len(self.messages) < DIGEST_LINES:
            self.messages.append(message)

    def __len__(self) -> int:
        return self.total

    def digest(self, title: str) -> Message:
        """The digest of everything held, and an empty hold for what comes next."""
        message = digest_message(self.messages, self.total, title)
        self.messages, self.total = [], 0
        return message
