"""Coinbase Exchange candles: REST history (paged, cached, rate limited) plus a live WebSocket ticker.

This module holds the feed class, its config and the hook; `rest.py` the REST requests, paging,
cache and validation; `live.py` the WebSocket ticker. `fetch_history` pages REST for backtests.

REST `GET /products/{id}/candles` gives closed buckets; they are validated at the boundary
(`validate_candles`), cached per symbol, and on later calls only the buckets since the last one
are asked for. The newest bucket is still forming: it never enters the closed history.

Live mode (`live = true`, the default) also keeps a WebSocket open to the Exchange feed
(`ticker` + `heartbeat`), in a background thread with its own asyncio loop, started on the first
`fetch_candles`. The forming bucket is then *appended* to the REST history as the last bar of the
series: it starts from REST's view of the forming bucket (its true open, high, low and volume so
far) and every later ticker trade updates its high, low, close and volume. Within one bucket, while
the socket is healthy, `fetch_candles` makes no request at all: the ticks are the fresh data. When
a bucket closes, the closed bar is fetched from REST (the exchange's own aggregation is the
authority; ticks never become a closed bar). On reconnect, the missed candles are backfilled over
REST and the forming bar is re-seeded. Buckets without trades are gaps: reported, never invented.
"""

from __future__ import annotations

import math
import time
from typing import Callable, ClassVar

from pydantic import Field, model_validator

from v7 import CandleSeries, Feed, PluginConfig, count_gaps, get_logger, hookimpl
from v7.http import FeedRequestError

from .live import CoinbaseLive
from .rest import MAX_CANDLES_PER_REQUEST, CoinbaseRest, _History, step_of


class CoinbaseConfig(PluginConfig):
    transport_fields = frozenset({
        "rest_url", "ws_url", "connect_timeout_seconds", "read_timeout_seconds", "requests_per_second", "burst",
        "max_connections", "max_retries", "backoff_base_seconds", "backoff_max_seconds", "max_retry_after_seconds",
        "candles_per_request", "history_bars", "heartbeat_timeout_seconds", "reconnect_backoff_base_seconds", "reconnect_backoff_max_seconds",
    })

    rest_url: str = Field(default="https://api.exchange.coinbase.com", description="Exchange REST API base URL")
    ws_url: str = Field(default="wss://ws-feed.exchange.coinbase.com", description="Exchange WebSocket feed URL")
    live: bool = Field(default=True, description="Stream the ticker over the WebSocket and append the forming candle")
    include_forming: bool = Field(
        default=True, description="In live mode, end the series with the forming (partial) candle; false = closed candles only"
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=10.0, gt=0)
    requests_per_second: float = Field(default=10.0, gt=0, description="REST rate limit shared by every symbol")
    burst: int = Field(default=10, ge=1, description="Requests allowed at once before the rate applies")
    max_connections: int = Field(default=32, ge=1, description="HTTP connections kept for concurrent symbols")
    max_retries: int = Field(default=4, ge=0, le=20, description="Retries after 429, 5xx, timeouts and connection errors")
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    max_retry_after_seconds: float = Field(default=60.0, ge=0, description="Longest `retry-after` honoured before giving up")
    candles_per_request: int = Field(default=MAX_CANDLES_PER_REQUEST, ge=1, le=MAX_CANDLES_PER_REQUEST)
    history_bars: int = Field(
        default=2000, ge=1, description="Closed candles `fetch_history` returns when given no start (the backtest's default range)"
    )
    settle_seconds: float = Field(
        default=60.0, ge=0, description="A bucket closed less than this long ago is fetched again next time (the exchange may still be aggregating it)"
    )
    heartbeat_timeout_seconds: float = Field(default=10.0, gt=0, description="Heartbeat silence after which the socket is reconnected")
    reconnect_backoff_base_seconds: float = Field(default=1.0, ge=0)
    reconnect_backoff_max_seconds: float = Field(default=60.0, ge=0)
    max_tick_move: float = Field(
        default=0.5, gt=0,
        description="A ticker price further than this fraction from the last accepted tick (or REST close) is rejected, never a close",
    )

    @model_validator(mode="after")
    def _urls(self) -> "CoinbaseConfig":
        if not self.rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url must start with http:// or https://, got {self.rest_url!r}")
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_url must start with ws:// or wss://, got {self.ws_url!r}")
        return self


class CoinbaseCandleFeed(CoinbaseLive, CoinbaseRest, Feed):
    """Candles from Coinbase Exchange: cached REST history plus, in live mode, the forming candle from ticks."""

    name = "coinbase"
    version = "1.0"
    provides: ClassVar[frozenset[str]] = frozenset({"candles"})
    live: ClassVar[bool] = True
    Config = CoinbaseConfig

    def __init__(self, config: CoinbaseConfig | None = None) -> None:
        super().__init__(config)
        self.clock: Callable[[], float] = time.time
        """Wall clock deciding which bucket is forming; tests point it at the fake server's clock."""
        self._init_rest(self.config)
        self._init_live()

    def fetch_candles(self, symbol: str, granularity: str, lookback: int) -> CandleSeries | None:
        """The last `lookback` buckets, oldest first; in live mode the last bar may be the forming one."""
        step = step_of(granularity)
        if lookback < 1:
            raise ValueError(f"coinbase: lookback must be at least 1, got {lookback}")
        log = get_logger(plugin=self.name, symbol=symbol)
        retrying = self._check_refused(symbol)  # raises, without a request, while a refused product backs off
        if self.config.live:
            self._watch(symbol, granularity)
        key = (symbol, granularity)
        with self._key_lock(key):
            try:
                history = self._refresh(symbol, granularity, lookback, log)
            except FeedRequestError as exc:
                if exc.status == 404:
                    self._mark_refused(symbol, str(exc), log)
                elif retrying:
                    self._release_retry(symbol)
                raise
            except BaseException:
                if retrying:
                    self._release_retry(symbol)
                raise
            series = self._assemble(symbol, granularity, step, lookback, history)
        if retrying:
            self._clear_refused(symbol, log)
            if self.config.live:
                self._watch(symbol, granularity)
        return series

    # fetch_range and fetch_history: see rest.py.

    def close(self) -> None:
        self._closing.set()
        self._http.closed.set()  # interrupts retry and rate-limit waits at once
        self._stop_live()
        self._http.close()

    def _assemble(self, symbol: str, granularity: str, step: int, lookback: int, history: _History) -> CandleSeries | None:
        """The series handed to the engine: cached closed rows, then (live) the forming bar.

        Cached rows passed `validate_candles` at the boundary; only the forming bar is new here, and
        it gets the same checks. (Validating everything again on every call would cost ~10 ms of
        pandas per symbol per iteration.)
        """
        import numpy as np

        current = int(self.clock() // step) * step
        start = current - lookback * step
        stamps = sorted(ts for ts in history.rows if start <= ts < current)
        records = [(ts, *history.rows[ts]) for ts in stamps]
        dropped = dict(history.dropped)
        if self.config.live and self.config.include_forming:
            forming = self._forming_bar(symbol, granularity, current)
            if forming is not None:
                _, o, h, l, c, v = forming
                if all(math.isfinite(x) for x in (o, h, l, c, v)) and min(o, h, l, c) > 0 and h >= max(o, c) and l <= min(o, c) and v >= 0:
                    records.append(forming)
                else:
                    dropped["invalid forming candle"] = dropped.get("invalid forming candle", 0) + 1
        forming_included = bool(records) and int(records[-1][0]) == current
        records = records[-lookback:]
        if not records:
            return None
        columns = np.array(records, dtype="float64").T
        timestamps = columns[0].astype("int64")
        gaps = count_gaps(timestamps, step)
        return CandleSeries(
            symbol=symbol, granularity=granularity, timestamp=timestamps,
            open=columns[1], high=columns[2], low=columns[3], close=columns[4], volume=columns[5],
            gaps=gaps, dropped=dropped, as_of=int(self.clock()) if forming_included else None,
        )


@hookimpl
def register_feeds(register):
    register(CoinbaseCandleFeed)
