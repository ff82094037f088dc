"""Coinbase Exchange candles: REST history (paged, cached, rate limited) plus a live WebSocket ticker.

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

import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import Field, model_validator

from v7 import CandleSeries, Feed, PluginConfig, hookimpl
from v7.core.logs import get_logger
from v7.core.models import GRANULARITY_SECONDS, count_gaps

from v7.http import FeedError, FeedResponseError, JsonHttpClient, RateLimiter, RetryPolicy

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

MAX_CANDLES_PER_REQUEST = 300
CHANNELS = ["heartbeat", "ticker"]
INVALID_PRODUCT = re.compile(r"^(\S+) is not a valid product")


class _Resubscribe(Exception):
    """The server refused a product: reconnect and subscribe the others again."""


class CoinbaseConfig(PluginConfig):
    transport_fields = frozenset({
        "rest_url", "ws_url", "connect_timeout_seconds", "read_timeout_seconds", "requests_per_second", "burst",
        "max_connections", "max_retries", "backoff_base_seconds", "backoff_max_seconds", "max_retry_after_seconds",
        "candles_per_request", "heartbeat_timeout_seconds", "reconnect_backoff_base_seconds", "reconnect_backoff_max_seconds",
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
    settle_seconds: float = Field(
        default=60.0, ge=0, description="A bucket closed less than this long ago is fetched again next time (the exchange may still be aggregating it)"
    )
    heartbeat_timeout_seconds: float = Field(default=10.0, gt=0, description="Heartbeat silence after which the socket is reconnected")
    reconnect_backoff_base_seconds: float = Field(default=1.0, ge=0)
    reconnect_backoff_max_seconds: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _urls(self) -> "CoinbaseConfig":
        if not self.rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url must start with http:// or https://, got {self.rest_url!r}")
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_url must start with ws:// or wss://, got {self.ws_url!r}")
        return self


@dataclass
class _Bar:
    """The forming bucket: seeded from REST, then updated by ticker trades."""

    bucket: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def add_trade(self, price: float, size: float) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += size


@dataclass
class _History:
    """Closed buckets fetched so far for one (symbol, granularity)."""

    rows: dict[int, tuple[float, float, float, float, float]] = field(default_factory=dict)
    covered_from: int = 0  # first bucket start asked for
    covered_until: int = 0  # every closed bucket before this start has been asked for
    keep: int = 0  # the largest lookback asked for: how much history to keep
    dropped: dict[str, int] = field(default_factory=dict)
    seed_connection: int = -1  # the socket connection that was current when the forming bar was last seeded


def granularity_seconds(granularity: str) -> int:
    try:
        return GRANULARITY_SECONDS[granularity]
    except KeyError:
        raise ValueError(
            f"coinbase: unsupported granularity {granularity!r}; expected one of {', '.join(GRANULARITY_SECONDS)}"
        ) from None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    """Exchange timestamps such as 2022-10-19T23:28:22.061769Z (fractions of any length) as unix seconds."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class CoinbaseCandleFeed(Feed):
    """Candles from Coinbase Exchange: cached REST history plus, in live mode, the forming candle from ticks."""

    name = "coinbase"
    version = "1.0"
    provides: ClassVar[frozenset[str]] = frozenset({"candles"})
    live: ClassVar[bool] = True
    Config = CoinbaseConfig

    def __init__(self, config: CoinbaseConfig | None = None) -> None:
        super().__init__(config)
        cfg: CoinbaseConfig = self.config
        self.clock: Callable[[], float] = time.time
        """Wall clock deciding which bucket is forming; tests point it at the fake server's clock."""
        self._limiter = RateLimiter(cfg.requests_per_second, cfg.burst)
        self._http = JsonHttpClient(
            cfg.rest_url,
            plugin=self.name,
            connect_timeout=cfg.connect_timeout_seconds,
            read_timeout=cfg.read_timeout_seconds,
            limiter=self._limiter,
            retry=RetryPolicy(cfg.max_retries, cfg.backoff_base_seconds, cfg.backoff_max_seconds, cfg.max_retry_after_seconds),
            max_connections=cfg.max_connections,
        )
        self._histories: dict[tuple[str, str], _History] = {}
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._key_locks_guard = threading.Lock()
        # Live state, shared with the socket thread; the condition also wakes `wait_until` callers.
        self._state = threading.Condition()
        self._symbols: dict[str, set[str]] = {}  # product -> granularities asked for
        self.invalid_products: set[str] = set()  # refused by the socket; not subscribed again
        self._forming: dict[tuple[str, str], _Bar] = {}
        self._last_price: dict[str, float] = {}
        self._last_trade_time: dict[str, float] = {}
        self._last_sequence: dict[str, int] = {}
        self._subscribed: set[str] = set()
        self._connected = False
        self._connection_id = 0
        self._last_heartbeat = 0.0
        self._stats: dict[str, int] = {
            "connects": 0, "reconnects": 0, "disconnects": 0, "backfills": 0, "ticks": 0,
            "heartbeats": 0, "ignored_messages": 0, "malformed_messages": 0, "rest_requests": 0,
        }
        self.last_disconnect: str | None = None
        self._closing = threading.Event()
        self._ws_thread: threading.Thread | None = None
        self._loop: "asyncio.AbstractEventLoop | None" = None
        self._astop: "asyncio.Event | None" = None
        self._awake: "asyncio.Event | None" = None

    # -- public ---------------------------------------------------------------------------

    def fetch_candles(self, symbol: str, granularity: str, lookback: int) -> CandleSeries | None:
        """The last `lookback` buckets, oldest first; in live mode the last bar may be the forming one."""
        step = granularity_seconds(granularity)
        if lookback < 1:
            raise ValueError(f"coinbase: lookback must be at least 1, got {lookback}")
        log = get_logger(plugin=self.name, symbol=symbol)
        if self.config.live:
            self._watch(symbol, granularity)
        key = (symbol, granularity)
        with self._key_lock(key):
            history = self._refresh(symbol, granularity, lookback, log)
            return self._assemble(symbol, granularity, step, lookback, history)

    def fetch_range(self, symbol: str, granularity: str | int, start: float, end: float, log: Any = None) -> list[list[Any]]:
        """One REST request for the buckets in [start, end] (unix seconds), rows as the API sends them.

        No paging: a range of more than 300 buckets is the server's 400, reported as a `FeedRequestError`.
        """
        step = granularity if isinstance(granularity, int) else granularity_seconds(granularity)
        params = {"granularity": step, "start": iso(start), "end": iso(end)}
        with self._state:
            self._stats["rest_requests"] += 1
        body = self._http.get_json(f"/products/{symbol}/candles", params, log=log or get_logger(plugin=self.name, symbol=symbol))
        if not isinstance(body, list):
            shape = "an object" if isinstance(body, dict) else type(body).__name__
            message = body.get("message") if isinstance(body, dict) else None
            detail = f": {message}" if isinstance(message, str) and message else ""
            raise FeedResponseError(f"coinbase: GET /products/{symbol}/candles: expected a JSON array of candles, got {shape}{detail}")
        return body

    def latest_price(self, symbol: str) -> float | None:
        """The last trade price seen on the socket (None before the first tick or when not live)."""
        with self._state:
            return self._last_price.get(symbol)

    @property
    def connected(self) -> bool:
        with self._state:
            return self._connected

    @property
    def subscribed_products(self) -> set[str]:
        with self._state:
            return set(self._subscribed)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: connects, reconnects, backfills, ticks, heartbeats, ignored/malformed messages, REST requests."""
        with self._state:
            return dict(self._stats)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` is true (re-checked on every live event) or `timeout` seconds pass."""
        with self._state:
            return self._state.wait_for(predicate, timeout)

    def close(self) -> None:
        self._closing.set()
        self._http.closed.set()  # interrupts retry and rate-limit waits at once
        loop, stop = self._loop, self._astop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed
                pass
        if self._ws_thread is not None:
            self._ws_thread.join(timeout=self.config.connect_timeout_seconds + 2)
        self._http.close()

    # -- REST history -------------------------------------------------------------------

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._key_locks_guard:
            return self._key_locks.setdefault(key, threading.Lock())

    def _live_fresh(self, symbol: str, history: _History) -> bool:
        """True when the socket has kept this symbol's forming bar current since it was last seeded."""
        with self._state:
            return (
                self._connected
                and symbol in self._subscribed
                and history.seed_connection == self._connection_id
                and time.monotonic() - self._last_heartbeat < self.config.heartbeat_timeout_seconds
            )

    def _refresh(self, symbol: str, granularity: str, lookback: int, log: Any, force: bool = False) -> _History:
        """Fetch what the cache lacks: older buckets for a longer lookback, and the buckets since the last fetch."""
        step = granularity_seconds(granularity)
        now = self.clock()
        current = int(now // step) * step
        needed_from = current - lookback * step
        key = (symbol, granularity)
        history = self._histories.get(key)
        ranges: list[tuple[float, float]] = []
        if history is None:
            history = _History(covered_from=needed_from, covered_until=needed_from)
            ranges.append((needed_from, now))
        else:
            if needed_from < history.covered_from:
                ranges.append((needed_from, history.covered_from - 1))
            new_closed = history.covered_until < current
            wants_seed = self.config.live and self.config.include_forming and (force or not self._live_fresh(symbol, history))
            if new_closed or wants_seed:
                ranges.append((history.covered_until, now))
        if not ranges:
            history.keep = max(history.keep, lookback)
            return history

        with self._state:
            connection = self._connection_id
        rows: list[Any] = []
        for start, end in ranges:
            for page_start, page_end in self._pages(start, end, step):
                rows.extend(self.fetch_range(symbol, step, page_start, page_end, log))
        self._merge(symbol, granularity, step, now, rows, history, log)
        history.covered_from = min(history.covered_from, needed_from)
        # A bucket that closed moments ago may still lack late trades, or not be published yet.
        history.covered_until = current if now - current >= self.config.settle_seconds else current - step
        history.keep = max(history.keep, lookback)
        history.seed_connection = connection
        oldest = current - history.keep * step
        for ts in [ts for ts in history.rows if ts < oldest]:
            del history.rows[ts]
        history.covered_from = max(history.covered_from, oldest)
        self._histories[key] = history
        return history

    def _pages(self, start: float, end: float, step: int) -> list[tuple[float, float]]:
        """Split [start, end] into requests of at most `candles_per_request` buckets each.

        A page ends one second before the next page's first bucket, so it holds the same buckets
        whether the server reads `end` as inclusive or exclusive, and never overlaps the next page.
        """
        per = self.config.candles_per_request
        pages = []
        page_start = int(start)
        while page_start <= end:
            page_end = min(page_start + per * step - 1, end)
            pages.append((page_start, page_end))
            page_start += per * step
        return pages

    def _merge(self, symbol: str, granularity: str, step: int, now: float, rows: list[Any], history: _History, log: Any) -> None:
        """Validate fetched rows, add the closed ones to the history and seed the forming bar."""
        import pandas as pd

        from v7.core.candles import validate_candles

        current = int(now // step) * step
        closed: list[list[Any]] = []
        forming: list[Any] | None = None
        malformed = 0
        for row in rows:
            if not isinstance(row, (list, tuple)) or len(row) < 6:
                malformed += 1
                continue
            ts = _number(row[0])
            if ts is None:
                closed.append(list(row[:6]))  # validate_candles drops and counts it
            elif ts + step <= now:
                closed.append(list(row[:6]))
            elif int(ts) == current:
                forming = list(row[:6])
        if malformed:
            history.dropped["malformed row"] = history.dropped.get("malformed row", 0) + malformed
            log.warning("dropped malformed candle rows", dropped={"malformed row": malformed})
        previous_last = max(history.rows) if history.rows else None
        if closed:
            frame = pd.DataFrame(closed, columns=["timestamp", "low", "high", "open", "close", "volume"])
            series = validate_candles(frame, symbol, granularity, source="coinbase REST")
            for reason, count in series.dropped.items():
                history.dropped[reason] = history.dropped.get(reason, 0) + count
            for i in range(len(series)):
                history.rows[int(series.timestamp[i])] = (
                    float(series.open[i]), float(series.high[i]), float(series.low[i]), float(series.close[i]), float(series.volume[i]),
                )
            self._log_gaps(series.timestamp, previous_last, step, log)
        if self.config.live and self.config.include_forming:
            self._seed_forming(symbol, granularity, current, forming)

    def _log_gaps(self, timestamps: Any, previous_last: int | None, step: int, log: Any) -> None:
        """Buckets without trades are omitted by the exchange: say which, never fill them in."""
        stamps = [int(t) for t in timestamps]
        if previous_last is not None:
            stamps = [t for t in stamps if t > previous_last]
            if stamps:
                stamps.insert(0, previous_last)
        missing: list[int] = []
        for before, after in zip(stamps, stamps[1:]):
            missing.extend(range(before + step, after, step))
        if missing:
            log.warning(
                "gaps in candles: buckets without trades are missing, not invented",
                missing=len(missing), first_missing=[iso(t) for t in missing[:5]],
            )

    def _seed_forming(self, symbol: str, granularity: str, current: int, row: list[Any] | None) -> None:
        key = (symbol, granularity)
        with self._state:
            if row is not None:
                values = [_number(v) for v in row[1:6]]
                if all(v is not None for v in values):
                    low, high, open_, close, volume = values  # type: ignore[misc]
                    self._forming[key] = _Bar(current, open_, high, low, close, volume)
                    return
            bar = self._forming.get(key)
            if bar is not None and bar.bucket != current:
                del self._forming[key]

    def _assemble(self, symbol: str, granularity: str, step: int, lookback: int, history: _History) -> CandleSeries | None:
        """The series handed to the engine, built from rows validated when they were fetched.

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
            with self._state:
                bar = self._forming.get((symbol, granularity))
                forming = None if bar is None or bar.bucket != current else (bar.bucket, bar.open, bar.high, bar.low, bar.close, bar.volume)
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

    # -- live socket ----------------------------------------------------------------------

    def _watch(self, symbol: str, granularity: str) -> None:
        """Remember the symbol for the socket, subscribe it if new, start the socket thread on first use."""
        start = False
        with self._state:
            if symbol in self.invalid_products:
                return
            new = symbol not in self._symbols
            self._symbols.setdefault(symbol, set()).add(granularity)
            if self._ws_thread is None and not self._closing.is_set():
                self._ws_thread = threading.Thread(target=self._ws_thread_main, name="coinbase-ws", daemon=True)
                start = True
        if start:
            self._ws_thread.start()
        elif new and self._loop is not None and self._awake is not None:
            try:
                self._loop.call_soon_threadsafe(self._awake.set)
            except RuntimeError:
                pass

    def _ws_thread_main(self) -> None:
        import asyncio

        try:
            asyncio.run(self._ws_main())
        except Exception as exc:  # noqa: BLE001 - the socket is best effort; REST keeps working
            get_logger(plugin=self.name).error("websocket thread stopped", error=f"{type(exc).__name__}: {exc}")

    async def _ws_main(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._astop = asyncio.Event()
        self._awake = asyncio.Event()
        if self._closing.is_set():
            return
        log = get_logger(plugin=self.name)
        cfg: CoinbaseConfig = self.config
        failures = 0
        while not self._astop.is_set():
            with self._state:
                idle = not self._symbols
            if idle:  # every product was refused: wait for a new one rather than subscribe to nothing
                self._awake.clear()
                waits = [asyncio.ensure_future(self._astop.wait()), asyncio.ensure_future(self._awake.wait())]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
                continue
            healthy = False
            try:
                healthy = await self._ws_session(log)
            except _Resubscribe as exc:
                healthy = True
                with self._state:
                    self.last_disconnect = str(exc)
            except Exception as exc:  # noqa: BLE001 - every failure leads to a reconnect
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                with self._state:
                    self.last_disconnect = reason
                if not self._astop.is_set():
                    log.warning("websocket disconnected; reconnecting", reason=reason)
            finally:
                with self._state:
                    if self._connected:
                        self._stats["disconnects"] += 1
                    self._connected = False
                    self._subscribed = set()
                    self._state.notify_all()
            if self._astop.is_set():
                break
            failures = 0 if healthy else failures + 1
            delay = min(cfg.reconnect_backoff_max_seconds, cfg.reconnect_backoff_base_seconds * (2 ** max(0, failures - 1)))
            delay = delay / 2 + random.uniform(0, delay / 2)
            try:
                await asyncio.wait_for(self._astop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def _ws_session(self, log: Any) -> bool:
        """One connection: subscribe, read until stopped or broken; True when it ever got a heartbeat."""
        import asyncio

        from websockets.asyncio.client import connect

        cfg: CoinbaseConfig = self.config
        assert self._astop is not None and self._awake is not None
        healthy = False
        async with connect(cfg.ws_url, open_timeout=cfg.connect_timeout_seconds, close_timeout=1, max_queue=1024) as ws:
            with self._state:
                products = sorted(self._symbols)
                self._connection_id += 1
                reconnect = self._stats["connects"] > 0
                self._stats["connects"] += 1
                if reconnect:
                    self._stats["reconnects"] += 1
                self._connected = True
                self._last_sequence.clear()  # a new connection may legitimately restart sequences
                self._last_heartbeat = time.monotonic()
                self._state.notify_all()
            sent = set(products)
            self._awake.clear()
            await ws.send(json.dumps({"type": "subscribe", "product_ids": products, "channels": CHANNELS}))
            log.info("websocket connected", url=cfg.ws_url, products=products, reconnect=reconnect)
            if reconnect:
                threading.Thread(target=self._backfill, name="coinbase-backfill", daemon=True).start()
            deadline = time.monotonic() + cfg.heartbeat_timeout_seconds
            stop_task = asyncio.ensure_future(self._astop.wait())
            awake_task = asyncio.ensure_future(self._awake.wait())
            recv_task = asyncio.ensure_future(ws.recv())
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no heartbeat for {cfg.heartbeat_timeout_seconds:g} s")
                    done, _ = await asyncio.wait({stop_task, awake_task, recv_task}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                    if stop_task in done:
                        return healthy
                    if awake_task in done:
                        self._awake.clear()
                        awake_task = asyncio.ensure_future(self._awake.wait())
                        with self._state:
                            new = sorted(set(self._symbols) - sent)
                        if new:
                            sent.update(new)
                            await ws.send(json.dumps({"type": "subscribe", "product_ids": new, "channels": CHANNELS}))
                            log.info("websocket subscribing", products=new)
                    if recv_task in done:
                        raw = recv_task.result()  # raises ConnectionClosed when the socket dropped
                        recv_task = asyncio.ensure_future(ws.recv())
                        if self._handle_message(raw, log):
                            healthy = True
                            deadline = time.monotonic() + cfg.heartbeat_timeout_seconds
            finally:
                for task in (stop_task, awake_task, recv_task):
                    task.cancel()

    def _handle_message(self, raw: Any, log: Any) -> bool:
        """Apply one socket message; returns True for a heartbeat (the liveness signal)."""
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            message = None
        if not isinstance(message, dict):
            with self._state:
                self._stats["malformed_messages"] += 1
            return False
        kind = message.get("type")
        if kind == "ticker":
            self._on_ticker(message)
        elif kind == "heartbeat":
            with self._state:
                self._last_heartbeat = time.monotonic()
                self._stats["heartbeats"] += 1
                self._state.notify_all()
            return True
        elif kind == "subscriptions":
            products: set[str] = set()
            for channel in message.get("channels") or []:
                if isinstance(channel, dict) and channel.get("name") == "ticker":
                    products.update(p for p in channel.get("product_ids") or [] if isinstance(p, str))
            with self._state:
                self._subscribed = products
                self._state.notify_all()
            log.debug("websocket subscriptions", products=sorted(products))
        elif kind == "error":
            reason = message.get("reason")
            log.warning("websocket error message", message=message.get("message"), reason=reason)
            refused = INVALID_PRODUCT.match(reason) if isinstance(reason, str) else None
            if refused:
                with self._state:
                    known = self._symbols.pop(refused.group(1), None) is not None
                    self.invalid_products.add(refused.group(1))
                if known:
                    raise _Resubscribe(f"the feed refused {refused.group(1)}: subscribing the other products again")
        return False

    def _on_ticker(self, message: dict[str, Any]) -> None:
        product = message.get("product_id")
        price = _number(message.get("price"))
        size = _number(message.get("last_size")) or 0.0
        sequence = message.get("sequence")
        if not isinstance(product, str) or price is None or price <= 0 or size < 0:
            with self._state:
                self._stats["malformed_messages"] += 1
            return
        traded_at = parse_time(message.get("time"))
        with self._state:
            if isinstance(sequence, int):
                last = self._last_sequence.get(product)
                if last is not None and sequence <= last:
                    # Out of order or a duplicate; gaps (sequence > last + 1) are normal on `ticker`.
                    self._stats["ignored_messages"] += 1
                    return
                self._last_sequence[product] = sequence
            if traded_at is None:
                traded_at = self.clock()
            self._last_price[product] = price
            self._last_trade_time[product] = traded_at
            self._stats["ticks"] += 1
            for granularity in self._symbols.get(product, ()):
                step = GRANULARITY_SECONDS[granularity]
                bucket = int(traded_at // step) * step
                key = (product, granularity)
                bar = self._forming.get(key)
                if bar is None or bucket > bar.bucket:
                    self._forming[key] = _Bar(bucket, price, price, price, price, size)
                elif bucket == bar.bucket:
                    bar.add_trade(price, size)
                # A late trade for a closed bucket is left to REST, the authority on closed bars.
            self._state.notify_all()

    def _backfill(self) -> None:
        """After a reconnect: fetch the candles missed while disconnected and re-seed the forming bars."""
        log = get_logger(plugin=self.name)
        for (symbol, granularity), history in list(self._histories.items()):
            if self._closing.is_set():
                return
            try:
                with self._key_lock((symbol, granularity)):
                    self._refresh(symbol, granularity, history.keep, log.bind(symbol=symbol), force=True)
            except FeedError as exc:
                log.warning("backfill after reconnect failed; the next fetch retries", symbol=symbol, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a background thread must not die silently
                log.error("backfill after reconnect failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
        with self._state:
            self._stats["backfills"] += 1
            self._state.notify_all()
        log.info("backfill after reconnect done", symbols=sorted({s for s, _ in self._histories}))


@hookimpl
def register_feeds(register):
    register(CoinbaseCandleFeed)
