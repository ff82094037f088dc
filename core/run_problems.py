"""Run problems for the sinks that take notices (`Sink.notice`): feeds failing, the LLM budget
reached, stores spooling, each counted in a row.

The engine reports what already happens (a feed raised, a fallback answered, a sink spooled);
this module counts streaks and hands each occurrence to the sinks, which decide what is worth
telling (a notification sink: a feed failing 3 iterations in a row). Feeds fail on fetch threads,
so occurrences wait here and reach the sinks from the run's thread (`deliver`), the only thread
that calls sinks. With no sink taking notices every call returns at once.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

from .logs import get_logger
from .models import ProblemKind, RunProblem

if TYPE_CHECKING:  # pragma: no cover
    from .components import Sink
    from .models import Signal

BUDGET_REACHED = re.compile(r"\bbudget\b[^;]*\breached\b", re.IGNORECASE)
"""A fallback reason saying a budget is used up ("daily cost budget of 5 USD reached ..."): how a
synthesizer tells the run, through `SynthesisFailed(reason)`, that it stopped for its budget."""


class RunProblems:
    """Streaks of run problems per (kind, plugin, symbol, what), and the notices waiting for `deliver`.

    `what` tells apart the jobs one plugin does for a symbol (a feed's "candles" and "context"): a
    good candle fetch does not end a streak of failing context fetches."""

    def __init__(self, sinks: "list[Sink] | None" = None, run_id: str | None = None, synthesizer: str | None = None) -> None:
        self.sinks = [sink for sink in sinks or [] if sink.supports("notice")]
        self.enabled = bool(self.sinks)
        self.run_id, self.synthesizer = run_id, synthesizer
        self._streaks: dict[tuple[str, str, str | None, str], int] = {}
        self._waiting: list[RunProblem] = []
        self._lock = threading.Lock()

    def failed(self, kind: ProblemKind, plugin: str, message: str, symbol: str | None = None, what: str = "") -> None:
        """One more occurrence in a row; the notice goes out at the next `deliver`."""
        if not self.enabled:
            return
        with self._lock:
            key = (kind, plugin, symbol, what)
            self._streaks[key] = count = self._streaks.get(key, 0) + 1
            self._waiting.append(RunProblem(kind=kind, plugin=plugin, symbol=symbol, message=message, count=count, run_id=self.run_id))

    def ok(self, kind: ProblemKind, plugin: str, symbol: str | None = None, what: str = "") -> None:
        """The problem is over: the next occurrence starts a new streak."""
        if self.enabled and self._streaks:
            with self._lock:
                self._streaks.pop((kind, plugin, symbol, what), None)

    def synthesized(self, signal: "Signal") -> None:
        """Whether the signal's synthesizer had to hand over because its budget was reached."""
        if not self.enabled or self.synthesizer is None:
            return
        if signal.fallback_reason and BUDGET_REACHED.search(signal.fallback_reason):
            self.failed("llm_budget", self.synthesizer, signal.fallback_reason)
        elif signal.fallback_reason is None:
            self.ok("llm_budget", self.synthesizer)

    def deliver(self) -> None:
        """Hand the waiting notices to the sinks; a failing sink is logged and the others still hear."""
        if not self.enabled or not self._waiting:
            return
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for problem in waiting:
            for sink in self.sinks:
                try:
                    sink.notice(problem)
                except Exception as exc:
                    get_logger(plugin=sink.name, run_id=self.run_id).error("sink notice failed", kind=problem.kind, error=f"{type(exc).__name__}: {exc}")
