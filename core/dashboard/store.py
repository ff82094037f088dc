"""The dashboard's access to the store: one reader under a lock, and `summary()` cached per window.

`SignalReader.summary()` aggregates in SQL, but over 100,000 signals it still takes seconds: the
overview serves the last computed summary of its window and a background thread recomputes it
when new signals arrived, so a page answers in milliseconds whatever the store holds and its
figures are at most a refresh old (the page says when they were computed).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import structlog

if TYPE_CHECKING:  # pragma: no cover
    from ..reading import SignalQuery, SignalReader

T = TypeVar("T")
log = structlog.get_logger("v7.dashboard")

WINDOWS: dict[str, float | None] = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30, "all": None}
"""The overview's windows: hours of `created_at` (None = every signal)."""


class Store:
    """A reader shared by every request, used under a lock (a reader is not made for concurrent use)."""

    def __init__(self, reader: "SignalReader") -> None:
        self.reader = reader
        self.lock = threading.Lock()

    def read(self, job: Callable[["SignalReader"], T]) -> T:
        with self.lock:
            return job(self.reader)

    def close(self) -> None:
        with self.lock:
            self.reader.close()


def window_query(window: str, now: datetime | None = None) -> "SignalQuery":
    """The query of an overview window; `today` = since 00:00 UTC (what daily LLM budgets count)."""
    from ..reading import SignalQuery

    now = now or datetime.now(timezone.utc)
    if window == "today":
        return SignalQuery(created_since=now.replace(hour=0, minute=0, second=0, microsecond=0))
    hours = WINDOWS[window]
    return SignalQuery(created_since=None if hours is None else (now - timedelta(hours=hours)).replace(microsecond=0))


class SummaryCache:
    """`summary()` per window, recomputed in the background once new signals arrived and the last one
    is older than `max_age_s`; the first request of a window computes it while the caller waits."""

    def __init__(self, store: Store, hold_target: tuple[float, float], max_age_s: float = 5.0) -> None:
        self.store, self.hold_target, self.max_age_s = store, hold_target, max_age_s
        self._entries: dict[str, tuple[dict[str, Any], float, int | None]] = {}  # window → (summary, computed at, newest id)
        self._refreshing: set[str] = set()
        self._gate = threading.Condition()

    def newest_id(self) -> int | None:
        newest = self.store.read(lambda reader: reader.page(limit=1))
        return newest[0].id if newest else None

    def _compute(self, window: str) -> dict[str, Any]:
        newest = self.newest_id()
        started = time.perf_counter()
        data = self.store.read(lambda reader: reader.summary(window_query(window), self.hold_target))
        elapsed = time.perf_counter() - started
        data["computed_at"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        data["computed_ms"] = round(elapsed * 1000, 1)
        with self._gate:
            self._entries[window] = (data, time.monotonic(), newest)
            self._gate.notify_all()
        log.debug("dashboard summary computed", window=window, signals=data.get("signals"), ms=data["computed_ms"])
        return data

    def get(self, window: str) -> dict[str, Any]:
        with self._gate:
            # The warm-up (or another request) is computing it already: wait for that, do not compute twice.
            self._gate.wait_for(lambda: window in self._entries or window not in self._refreshing, timeout=120)
            entry = self._entries.get(window)
        if entry is None:
            return self._compute(window)
        data, at, newest = entry
        age = time.monotonic() - at
        # New signals change every window; time alone moves signals out of a bounded one, so a minute is enough there.
        if age > self.max_age_s and (self.newest_id() != newest or (window != "all" and age > 60)):
            self.refresh(window)
        return data

    def refresh(self, window: str) -> None:
        """Recompute `window` in a background thread (one at a time per window)."""
        with self._gate:
            if window in self._refreshing:
                return
            self._refreshing.add(window)

        def work() -> None:
            try:
                self._compute(window)
            except Exception as exc:  # the old figures stay; the next request tries again
                log.warning("dashboard summary failed", window=window, error=f"{type(exc).__name__}: {exc}")
            finally:
                with self._gate:
                    self._refreshing.discard(window)
                    self._gate.notify_all()

        threading.Thread(target=work, name=f"v7-dashboard-summary-{window}", daemon=True).start()
