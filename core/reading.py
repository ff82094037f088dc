"""Reading stored signals back, whatever sink stored them: the `Sink.reader()` capability.

`v7 stats`, `v7 export`, backtest storage and dashboards use only `SignalReader`, so they work
with any sink that can read. A reader must work while another process writes, and must never
change stored signals.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from .components import NotSupported
from .models import Direction, Signal
from .timefmt import format_utc


class SignalQuery(BaseModel):
    """Which stored signals to read; every filter optional."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    created_since: datetime | None = Field(
        default=None, description="signals created at or after this time (UTC, compared at second precision, as stored)"
    )
    symbol: str | None = None
    direction: Direction | None = None

    def matches(self, signal: Signal) -> bool:
        """Whether `signal` passes the filters: what a reader without a query language checks per signal."""
        if self.symbol and signal.symbol != self.symbol:
            return False
        if self.direction is not None and signal.direction != self.direction:
            return False
        if self.created_since is not None and format_utc(signal.created_at) < format_utc(self.created_since):
            return False
        return True


class StoredSignal(Signal):
    """A signal as read back: what the sink added when it stored it."""

    id: int = Field(description="the store's own key, increasing in the order signals were stored")
    stored_at: datetime | None = Field(default=None, description="when the sink committed it; later than created_at when it waited in a spool")
    sink_ms: float | None = Field(default=None, description="how long the sink took to store it")


class RunRecord(BaseModel):
    """One `v7 run` as its sink recorded it; `stopped_at` is None while running or after a kill."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    run_id: str
    config_hash: str
    config_path: str | None = None
    v7_version: str
    plugin_versions: dict[str, str] = Field(default_factory=dict)
    started_at: datetime
    stopped_at: datetime | None = None


class StoredBacktest(BaseModel):
    """A backtest result kept beside the signals: searchable columns plus the result's JSON."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: int | None = None
    created_at: datetime
    config_hash: str
    config_path: str | None = None
    v7_version: str
    granularity: str
    symbols: list[str]
    range_start: datetime
    range_end: datetime
    bars: int
    settings: dict[str, Any] = Field(default_factory=dict)
    result_json: str = Field(description="the whole BacktestResult, as `v7 backtest --json` prints it")


class SignalReader:
    """Read access to one sink's store. Subclasses implement `signals`; the rest is optional.

    Use as a context manager, or call `close()`.
    """

    location: str = ""
    """Where the store is, for messages (`/path/v7.db`)."""

    def signals(self, query: SignalQuery | None = None, *, with_prompt: bool = False) -> Iterator[StoredSignal]:
        """Matching signals, in the order they were stored (increasing `id`), theory results included."""
        raise NotImplementedError

    def latest(self, query: SignalQuery | None = None, limit: int = 20) -> list[StoredSignal]:
        """The `limit` matching signals stored last, newest first (`v7 signals`, dashboards).

        This default reads every signal once, keeping only the last `limit` (it re-checks the filters,
        so a reader that ignores a newer one still answers right); a database overrides it with an
        indexed query."""
        query = query or SignalQuery()
        kept: deque[StoredSignal] = deque(maxlen=max(limit, 0))
        for signal in self.signals(query):
            if query.matches(signal):
                kept.append(signal)
        return list(reversed(kept))

    def last_bar_times(self, config_hash: str, granularity: str) -> dict[str, datetime]:
        """The newest stored bar per symbol for this config: where a resumed replay starts.

        This default reads every signal once; a store with a query language overrides it."""
        latest: dict[str, datetime] = {}
        for signal in self.signals():
            if signal.config_hash == config_hash and signal.granularity == granularity:
                if signal.symbol not in latest or signal.bar_time > latest[signal.symbol]:
                    latest[signal.symbol] = signal.bar_time
        return latest

    def runs(self, since: datetime | None = None) -> list[RunRecord]:
        """Runs started at or after `since`; [] when the store keeps no runs."""
        return []

    def waiting(self) -> int:
        """Signals accepted but not yet in the store (a spool); 0 when the sink keeps none."""
        return 0

    def schema_version(self) -> int | None:
        """The store's format version, if it has one."""
        return None

    def summary(self, query: SignalQuery | None = None, hold_target: tuple[float, float] = (0.4, 0.7)) -> dict[str, Any]:
        """Every figure `v7 stats` shows, as plain data. This default reads every signal once;
        a store with a query language overrides it to aggregate where the data lives."""
        from .signal_summary import summarize

        return summarize(self, query or SignalQuery(), hold_target)

    # -- browsing (dashboards): defaults read every signal once; a database overrides them -------

    def page(
        self, query: SignalQuery | None = None, *, after_id: int | None = None, before_id: int | None = None,
        limit: int = 50, with_prompt: bool = False,
    ) -> list[StoredSignal]:
        """Up to `limit` matching signals with `after_id < id < before_id`, newest first: the dashboard's
        pages (`before_id`) and its live feed (`after_id`) without reading the whole store."""
        kept: list[StoredSignal] = []
        for signal in self.signals(query, with_prompt=with_prompt):
            if (after_id is None or signal.id > after_id) and (before_id is None or signal.id < before_id):
                kept.append(signal)
        if limit <= 0:
            return []
        # After an id: the oldest new ones, so a live feed misses none; else the newest.
        return list(reversed(kept[:limit] if after_id is not None else kept[-limit:]))

    def signal(self, signal_id: int, *, with_prompt: bool = True) -> StoredSignal | None:
        """One stored signal by its id (prompt included by default); None when there is none."""
        return next((s for s in self.signals(with_prompt=with_prompt) if s.id == signal_id), None)

    def latest_per_symbol(self, query: SignalQuery | None = None) -> list[StoredSignal]:
        """The signal stored last for each symbol, ordered by symbol."""
        latest: dict[str, StoredSignal] = {}
        for signal in self.signals(query):
            latest[signal.symbol] = signal
        return [latest[symbol] for symbol in sorted(latest)]

    def active_runs(self, since: datetime) -> set[str]:
        """Ids of the runs that stored a signal created at or after `since`: which runs still write."""
        return {s.run_id for s in self.signals(SignalQuery(created_since=since)) if s.run_id}

    # -- backtest results (optional) -------------------------------------------------------------

    def save_backtest(self, backtest: StoredBacktest) -> int:
        """Keep a backtest result; returns its id."""
        raise NotSupported(f"{type(self).__name__} cannot store backtest results")

    def backtest(self, key: str) -> StoredBacktest | None:
        """A stored backtest by id, or the latest whose config hash starts with `key`; None when there is none."""
        raise NotSupported(f"{type(self).__name__} keeps no backtest results")

    def backtests(self, limit: int = 50) -> list[StoredBacktest]:
        """The stored backtest results, newest first; [] when the store keeps none."""
        return []

    def close(self) -> None:
        """Release the connection or file handle."""

    def __enter__(self) -> "SignalReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
