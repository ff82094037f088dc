"""Replay feed: real history stepped one bar per iteration, as if live, with no network.

`fetch_candles` walks a cursor (what `v7 run` sees); `fetch_history` hands over a stored range at
once (what `v7 backtest` replays).

Default data: the bundled Coinbase hourly BTC-USD and ETH-USD candles (see v7/data/candles/README.md).
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from v7 import (
    CandleDataError, CandleSeries, check_spacing, EndOfData, Feed, PluginConfig, UpToDate, hookimpl, read_candles_csv, unix_seconds,
)


class ReplayConfig(PluginConfig):
    # Where a replay starts and how it steps do not change the signal for a bar; `resume` must find
    # the bars an earlier run stored without it.
    transport_fields = frozenset({"start", "step", "resume", "cache"})

    path: Path | None = Field(
        default=None, description="A candle CSV file, or a folder of <SYMBOL>.csv files; default: the bundled data"
    )
    start: datetime | None = Field(
        default=None, description="First bar to emit (UTC); default: the first bar with a full lookback behind it"
    )
    step: int = Field(default=1, ge=1, description="Bars to advance per iteration")
    cache: str = Field(
        default=".v7-cache/candles",
        description="Folder where each CSV, once validated, is kept as memory-mapped arrays (relative to the working "
        "directory): a replay of many symbols then holds in memory only the candles its windows touch; \"\" = off",
    )
    resume: bool = Field(
        default=False,
        description="Start each symbol after the last bar already stored for this config (read back from the first "
        "sink that can read), so a re-run goes on where the last one stopped instead of replaying stored bars",
    )

    @field_validator("path")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"no such file or folder (relative paths start at {Path.cwd()})")
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def bundled_candles_dir() -> Path:
    return Path(str(resources.files("v7.data") / "candles"))


class ReplayFeed(Feed):
    """Walks a cursor through stored candles; each `fetch_candles` reveals one more bar."""

    name = "replay"
    version = "1.0"
    provides: ClassVar[frozenset[str]] = frozenset({"candles"})
    live: ClassVar[bool] = False
    Config = ReplayConfig

    def __init__(self, config: ReplayConfig | None = None) -> None:
        super().__init__(config)
        self._history: dict[str, CandleSeries] = {}
        self._cursor: dict[str, int] = {}
        self._resume_after: dict[str, datetime] = {}
        self._lock = threading.Lock()

    @property
    def resumes(self) -> bool:
        return self.config.resume

    def resume_after(self, symbol: str, bar_time: datetime) -> None:
        """The first bar this replay emits for `symbol` is the first one after `bar_time`."""
        with self._lock:
            self._resume_after[symbol] = bar_time

    def _source_file(self, symbol: str) -> Path:
        path = self.config.path or bundled_candles_dir()
        if path.is_dir():
            candidate = path / f"{symbol}.csv"
            if not candidate.exists():
                available = sorted(p.stem for p in path.glob("*.csv"))
                raise FileNotFoundError(f"no candles for {symbol} in {path} (available: {', '.join(available) or 'none'})")
            return candidate
        return path

    def _load(self, symbol: str, granularity: str) -> CandleSeries:
        if symbol not in self._history:
            path = self._source_file(symbol)
            if self.config.cache:
                from .replay_cache import load as load_cached

                history = load_cached(path, symbol, granularity, Path(self.config.cache))
            else:
                history = read_candles_csv(path, symbol, granularity)
            if len(history) == 0:  # a header-only or all-invalid file: the message `v7 analyze` gives
                raise CandleDataError(f"{path}: no valid candles")
            check_spacing(history, granularity, str(path))
            self._history[symbol] = history
        return self._history[symbol]

    def check_symbols(self, symbols: list[str], granularity: str) -> list[str]:
        """Problems that would make the replay of these symbols wrong: a missing file, one file for several symbols."""
        path = self.config.path or bundled_candles_dir()
        if not path.is_dir():
            if len(symbols) > 1:
                return [
                    f"replay: path {path} is one file, so it holds one symbol's candles, but {len(symbols)} symbols are "
                    f"configured ({', '.join(symbols)}): every one would be replayed at the same prices. Point path at a "
                    "folder of <SYMBOL>.csv files, or configure one symbol"
                ]
            return []
        problems = []
        for symbol in symbols:
            try:
                self._source_file(symbol)
            except FileNotFoundError as exc:
                problems.append(f"replay: {exc}")
        return problems

    def fetch_candles(self, symbol: str, granularity: str, lookback: int) -> CandleSeries | None:
        import numpy as np

        with self._lock:
            history = self._load(symbol, granularity)
            first_fetch = symbol not in self._cursor
            if first_fetch:
                if self.config.start is not None:
                    first = int(np.searchsorted(history.timestamp, int(self.config.start.timestamp()), side="left"))
                else:
                    first = min(lookback, len(history)) - 1
                resumed = self._resume_after.get(symbol)
                if resumed is not None:
                    first = max(first, int(np.searchsorted(history.timestamp, unix_seconds(resumed), side="right")))
                self._cursor[symbol] = max(first, 0)
            else:
                self._cursor[symbol] += self.config.step
            cursor = self._cursor[symbol]
        if cursor >= len(history):
            resumed = self._resume_after.get(symbol)
            if resumed is not None and first_fetch:
                raise UpToDate(
                    f"resume: every bar of {symbol} up to {resumed.isoformat()} is already stored for this config; "
                    f"the replay's last bar is {history.last_time.isoformat()}"
                )
            raise EndOfData(f"replay of {symbol} reached its last bar ({history.last_time.isoformat()})")
        return history.slice(max(0, cursor + 1 - lookback), cursor + 1)

    def fetch_history(self, symbol: str, granularity: str, start: datetime | None, end: datetime | None) -> CandleSeries:
        """The stored candles whose time lies in [start, end] (None = open), oldest first.

        The config's `start` does not apply: it only says where `v7 run` begins.
        """
        import numpy as np

        with self._lock:
            history = self._load(symbol, granularity)
        first = 0 if start is None else int(np.searchsorted(history.timestamp, unix_seconds(start), side="left"))
        last = len(history) if end is None else int(np.searchsorted(history.timestamp, unix_seconds(end), side="right"))
        return history.slice(first, max(first, last))


@hookimpl
def register_feeds(register):
    register(ReplayFeed)
