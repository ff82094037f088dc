"""What is worth a message: the signal filters, change-of-direction mode, and never the same
signal or problem twice (a problem may be told again after `repeat_problem_minutes`)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from v7 import RunProblem, Signal

from .config import NotifyConfig

REMEMBERED = 10_000  # keys kept for dedup: memory stays flat however long the run


class Seen:
    """Keys already sent, the oldest forgotten first; with `ttl_s`, a key counts as new again after that long."""

    def __init__(self, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._keys: OrderedDict[Hashable, float] = OrderedDict()

    def first(self, key: Hashable) -> bool:
        """True (and remembered) when `key` was not sent before, or not within the ttl."""
        now = self.clock()
        sent = self._keys.get(key)
        if sent is not None and (self.ttl_s is None or now - sent < self.ttl_s):
            return False
        self._keys[key] = now
        self._keys.move_to_end(key)
        while len(self._keys) > REMEMBERED:
            self._keys.popitem(last=False)
        return True


class SignalChoice:
    """Which signals are sent: direction, symbol and confidence filters, changes only, each once."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self._sent = Seen()
        self._previous: dict[tuple[str, str], str] = {}  # (symbol, granularity) → the last signal's direction

    def wanted(self, signal: Signal) -> bool:
        cfg = self.config
        key = (signal.symbol, signal.granularity)
        previous = self._previous.get(key)
        self._previous[key] = signal.direction
        if signal.direction not in cfg.directions or (cfg.symbols and signal.symbol not in cfg.symbols):
            return False
        if signal.confidence < cfg.min_confidence or (cfg.changes_only and previous == signal.direction):
            return False
        return self._sent.first((signal.symbol, signal.granularity, signal.bar_time.isoformat(), signal.config_hash or ""))


class ProblemChoice:
    """Which run problems are sent: a feed after `feed_failures` iterations in a row, any other at once; each
    (kind, plugin, symbol) once per `repeat_problem_minutes`."""

    def __init__(self, config: NotifyConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._sent = Seen(ttl_s=config.repeat_problem_minutes * 60, clock=clock)

    def wanted(self, problem: RunProblem) -> bool:
        if not self.config.problems:
            return False
        if problem.kind == "feed_failing" and problem.count < self.config.feed_failures:
            return False
        return self._sent.first((problem.kind, problem.plugin, problem.symbol))
