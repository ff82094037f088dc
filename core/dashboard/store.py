"""The dashboard's access to the store: a reader per thread, and `summary()` kept per window while it holds.

A reader is not made for concurrent use, so each thread that serves requests opens its own (for
SQLite: its own read-only connection; in WAL mode readers never wait for each other or for
`v7 run`). No lock is held around a query: a slow one delays only its own request.

`summary()` aggregates where the data lives (SQL over covering indexes for the sqlite sink), so a
window is computed when it is asked for, in the request. Its figures are kept while they cannot
have changed (the same newest signal, the same window start to the second) and, while a run
writes, served for at most `max_age_s` (2 s) after they were computed while a worker computes them
again: so requests do not queue behind a summary per stored signal, and no figures older than
that are ever shown. A window viewed earlier is computed again on its next view; a bounded
window moves on with the clock when no run writes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Executor
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
    """Readers opened by `source()`, one per thread on its first read; `first` serves the thread that made the store.

    Given a reader instead of a way to open one, every thread shares it, one read at a time."""

    def __init__(self, source: "Callable[[], SignalReader] | SignalReader", first: "SignalReader | None" = None) -> None:
        from ..reading import SignalReader

        self._shared: SignalReader | None = source if isinstance(source, SignalReader) else None
        self.open_reader = (lambda: source) if isinstance(source, SignalReader) else source
        self._one_at_a_time = threading.Lock()
        self._local = threading.local()
        self._readers: list["SignalReader"] = []
        self._registry = threading.Lock()  # guards the list of readers only, never a query
        if first is not None or self._shared is not None:
            self._keep(first or self._shared)  # type: ignore[arg-type]

    def _keep(self, reader: "SignalReader") -> "SignalReader":
        self._local.reader = reader
        with self._registry:
            self._readers.append(reader)
        return reader

    def reader(self) -> "SignalReader":
        """This thread's reader."""
        reader = getattr(self._local, "reader", None)
        return reader if reader is not None else self._keep(self.open_reader())

    def read(self, job: Callable[["SignalReader"], T]) -> T:
        if self._shared is not None:
            with self._one_at_a_time:
                return job(self._shared)
        return job(self.reader())

    @property
    def open_readers(self) -> int:
        return len(self._readers)

    def close(self) -> None:
        with self._registry:
            readers, self._readers = self._readers, []
        for reader in {id(r): r for r in readers}.values():
            reader.close()
        self._local = threading.local()


def window_query(window: str, now: datetime | None = None) -> "SignalQuery":
    """The query of an overview window; `today` = since 00:00 UTC (what daily LLM budgets count)."""
    from ..reading import SignalQuery

    now = now or datetime.now(timezone.utc)
    if window == "today":
        return SignalQuery(created_since=now.replace(hour=0, minute=0, second=0, microsecond=0))
    hours = WINDOWS[window]
    return SignalQuery(created_since=None if hours is None else (now - timedelta(hours=hours)).replace(microsecond=0))


class SummaryCache:
    """`summary()` per window: reused while the newest stored signal and the window's start are the same,
    or for `max_age_s` after it was computed while `workers` compute it again; else computed by the request."""

    def __init__(self, store: Store, hold_target: tuple[float, float], max_age_s: float = 2.0, workers: Executor | None = None) -> None:
        self.store, self.hold_target, self.max_age_s, self.workers = store, hold_target, max_age_s, workers
        self._entries: dict[str, tuple[tuple[Any, ...], dict[str, Any], float]] = {}  # window → (key, summary, computed at)
        self._refreshing: set[str] = set()
        self._guard = threading.Lock()  # the dict and the set only, never a query

    def newest_id(self) -> int | None:
        newest = self.store.read(lambda reader: reader.page(limit=1))
        return newest[0].id if newest else None

    def get(self, window: str, now: datetime | None = None) -> dict[str, Any]:
        query = window_query(window, now)
        key = (self.newest_id(), query.created_since)
        with self._guard:
            kept = self._entries.get(window)
            fresh_enough = kept is not None and time.monotonic() - kept[2] <= self.max_age_s and self.workers is not None
            refresh = fresh_enough and kept is not None and kept[0] != key and window not in self._refreshing
            if refresh:
                self._refreshing.add(window)
        if kept is not None and kept[0] == key:
            return kept[1]
        if fresh_enough and kept is not None:
            if refresh and self.workers is not None:
                self.workers.submit(self._refresh, window, query, key)
            return kept[1]
        return self._compute(window, query, key)

    def _compute(self, window: str, query: "SignalQuery", key: tuple[Any, ...]) -> dict[str, Any]:
        started = time.perf_counter()
        data = self.store.read(lambda reader: reader.summary(query, self.hold_target))
        data["computed_at"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        data["computed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        with self._guard:
            self._entries[window] = (key, data, time.monotonic() - (time.perf_counter() - started))
        log.debug("dashboard summary computed", window=window, signals=data.get("signals"), ms=data["computed_ms"])
        return data

    def _refresh(self, window: str, query: "SignalQuery", key: tuple[Any, ...]) -> None:
        try:
            self._compute(window, query, key)
        except Exception as exc:  # the kept figures age out; the next request computes them itself
            log.warning("dashboard summary failed", window=window, error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._guard:
                self._refreshing.discard(window)


class LatestPerSymbol:
    """The signal stored last for each symbol (`latest_per_symbol()`), kept and brought up to date from the
    signals stored since (`page(after_id=…)`: ids only grow), so an overview does not read every symbol's
    signals again; read whole again when more than `BATCH` arrived in between."""

    BATCH = 500

    def __init__(self, store: Store) -> None:
        self.store = store
        self._kept: tuple[int, dict[str, Any]] | None = None  # (every signal up to this id is in, symbol → its last signal)
        self._guard = threading.Lock()  # the tuple only

    def get(self) -> list[Any]:
        with self._guard:
            kept = self._kept

        def read(reader: "SignalReader") -> tuple[int, dict[str, Any]]:
            if kept is not None:
                newer = reader.page(after_id=kept[0], limit=self.BATCH)
                if len(newer) < self.BATCH:
                    latest = dict(kept[1])
                    for signal in reversed(newer):  # oldest first: the last stored of a symbol wins
                        latest[signal.symbol] = signal
                    return (newer[0].id if newer else kept[0]), latest
            newest = reader.page(limit=1)  # first: every signal up to it is in what latest_per_symbol() reads next
            return (newest[0].id if newest else 0), {s.symbol: s for s in reader.latest_per_symbol()}

        updated = self.store.read(read)
        with self._guard:
            if self._kept is None or updated[0] >= self._kept[0]:
                self._kept = updated
        return [updated[1][symbol] for symbol in sorted(updated[1])]
