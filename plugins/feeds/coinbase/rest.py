"""Coinbase Exchange REST candles: one request (`fetch_range`), paging, the per-symbol cache, validation.

`GET /products/{id}/candles` answers at most 300 buckets, newest first, as rows
`[time, low, high, open, close, volume]`. Rows are validated at the boundary (`validate_candles`)
before they enter the cache or a history; buckets without trades are gaps, logged and never filled.
`CoinbaseRest` is a mixin of `CoinbaseCandleFeed` (see `__init__.py`): it owns the HTTP client and
the cache; the live mixin (`live.py`) decides when the forming bar needs re-seeding.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from v7 import CandleSeries, format_utc, get_logger, granularity_seconds, unix_seconds, validate_candles
from v7.http import FeedRequestError, FeedResponseError, JsonHttpClient, RateLimiter, RetryPolicy

if TYPE_CHECKING:  # pragma: no cover
    from . import CoinbaseConfig

MAX_CANDLES_PER_REQUEST = 300
REFUSED_BACKOFF_FIRST = 60.0  # seconds a refused product is not asked for again; doubles on each refusal
REFUSED_BACKOFF_MAX = 3600.0
COLUMNS = ["timestamp", "low", "high", "open", "close", "volume"]  # the order Coinbase sends


def well_formed(rows: list[Any]) -> tuple[list[list[Any]], int]:
    """The rows shaped like a candle (a list of at least 6 values, cut to 6), and how many were not."""
    usable = [list(row[:6]) for row in rows if isinstance(row, (list, tuple)) and len(row) >= 6]
    return usable, len(rows) - len(usable)


def count_malformed(dropped: dict[str, int], malformed: int, log: Any) -> None:
    """Count and log rows that were not candles at all, beside validate_candles' own reasons."""
    if malformed:
        dropped["malformed row"] = dropped.get("malformed row", 0) + malformed
        log.warning("dropped malformed candle rows", dropped={"malformed row": malformed})


@dataclass
class _History:
    """Closed buckets fetched so far for one (symbol, granularity)."""

    rows: dict[int, tuple[float, float, float, float, float]] = field(default_factory=dict)
    covered_from: int = 0  # first bucket start asked for
    covered_until: int = 0  # every closed bucket before this start has been asked for
    keep: int = 0  # the largest lookback asked for: how much history to keep
    dropped: dict[str, int] = field(default_factory=dict)
    seed_connection: int = -1  # the socket connection that was current when the forming bar was last seeded


@dataclass
class _Refusal:
    """A product the exchange refused (REST 404 or the socket's "not a valid product"): backing off."""

    reason: str
    backoff: float  # the current back-off step, seconds
    until: float  # feed clock time before which it is not asked for again
    refusals: int = 1
    retrying: bool = False  # one fetch is trying it again (the back-off expired)


def step_of(granularity: str) -> int:
    """Seconds per bucket; the ValueError names this plugin and the known granularities."""
    try:
        return granularity_seconds(granularity)
    except ValueError as exc:
        raise ValueError(f"coinbase: {exc}") from None


def number(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


class CoinbaseRest:
    """REST half of the Coinbase feed: requests, paging, cache, validation."""

    name: str
    config: "CoinbaseConfig"
    clock: Any

    def _init_rest(self, cfg: "CoinbaseConfig") -> None:
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
        self._refused: dict[str, _Refusal] = {}
        self._refused_lock = threading.Lock()

    if TYPE_CHECKING:  # pragma: no cover - supplied by the live mixin
        def _live_fresh(self, symbol: str, history: _History) -> bool: ...
        def _connection(self) -> int: ...
        def _seed_forming(self, symbol: str, granularity: str, current: int, row: list[Any] | None) -> None: ...
        def _forget_invalid(self, symbol: str) -> None: ...
        def _note_closed_close(self, symbol: str, close: float) -> None: ...

    # -- products the exchange refused ------------------------------------------------------

    def _check_refused(self, symbol: str) -> bool:
        """Raise, without a request, while a refused product backs off; True when this call is the one retry."""
        with self._refused_lock:
            refusal = self._refused.get(symbol)
            if refusal is None:
                return False
            now = self.clock()
            if now >= refusal.until and not refusal.retrying:
                refusal.retrying = True
                return True
            wait = max(0.0, refusal.until - now)
            raise FeedRequestError(
                f"coinbase: {symbol} was refused by the exchange ({refusal.reason}); not asked again for {wait:.0f} s "
                f"(back-off {refusal.backoff:g} s, refused {refusal.refusals}x)",
                404,
            )

    def _mark_refused(self, symbol: str, reason: str, log: Any = None) -> None:
        """Start the back-off for a refused product, or grow it when the retry was refused again; logged once per step."""
        with self._refused_lock:
            now = self.clock()
            refusal = self._refused.get(symbol)
            if refusal is None:
                refusal = self._refused[symbol] = _Refusal(reason, REFUSED_BACKOFF_FIRST, now + REFUSED_BACKOFF_FIRST)
            elif refusal.retrying or now >= refusal.until:
                refusal.backoff = min(refusal.backoff * 2, REFUSED_BACKOFF_MAX)
                refusal.until = now + refusal.backoff
                refusal.refusals += 1
                refusal.reason = reason
                refusal.retrying = False
            else:
                return  # already backing off (REST and socket both said so): one log per step
            backoff, refusals = refusal.backoff, refusal.refusals
        (log or get_logger(plugin=self.name, symbol=symbol)).warning(
            "product refused by the exchange; backing off",
            symbol=symbol, reason=reason, backoff_seconds=backoff, refusals=refusals, retry_at=format_utc(now + backoff),
        )

    def _release_retry(self, symbol: str) -> None:
        """The retry failed for another reason (timeout, 5xx): the next fetch may try again."""
        with self._refused_lock:
            refusal = self._refused.get(symbol)
            if refusal is not None:
                refusal.retrying = False

    def _clear_refused(self, symbol: str, log: Any) -> None:
        """The retry succeeded: the product is valid again (the live half subscribes it again)."""
        with self._refused_lock:
            refusal = self._refused.pop(symbol, None)
        if refusal is not None:
            self._forget_invalid(symbol)
            log.info("refused product accepted again", symbol=symbol, refusals=refusal.refusals)

    # -- one request ------------------------------------------------------------------------

    def fetch_range(self, symbol: str, granularity: str | int, start: float, end: float, log: Any = None) -> list[list[Any]]:
        """One REST request for the buckets in [start, end] (unix seconds), rows as the API sends them.

        No paging: a range of more than 300 buckets is the server's 400, reported as a `FeedRequestError`.
        """
        step = granularity if isinstance(granularity, int) else step_of(granularity)
        params = {"granularity": step, "start": format_utc(start), "end": format_utc(end)}
        body = self._http.get_json(f"/products/{symbol}/candles", params, log=log or get_logger(plugin=self.name, symbol=symbol))
        if not isinstance(body, list):
            shape = "an object" if isinstance(body, dict) else type(body).__name__
            message = body.get("message") if isinstance(body, dict) else None
            detail = f": {message}" if isinstance(message, str) and message else ""
            raise FeedResponseError(f"coinbase: GET /products/{symbol}/candles: expected a JSON array of candles, got {shape}{detail}")
        return body

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

    def _fetch_pages(self, symbol: str, step: int, start: float, end: float, log: Any) -> list[Any]:
        rows: list[Any] = []
        for page_start, page_end in self._pages(start, end, step):
            rows.extend(self.fetch_range(symbol, step, page_start, page_end, log))
        return rows

    # -- a range of closed history (backtests) ----------------------------------------------

    def fetch_history(self, symbol: str, granularity: str, start: datetime | None, end: datetime | None) -> CandleSeries:
        """Every closed bucket whose start time lies in [start, end], oldest first, validated.

        `end` None = the last closed bucket by the feed's clock (a later `end` is capped there:
        the forming bucket is never history); `start` None = the last `history_bars` closed buckets
        up to `end`. Paged in requests of at most `candles_per_request` buckets; not cached.
        """
        step = step_of(granularity)
        log = get_logger(plugin=self.name, symbol=symbol)
        last_closed = int(self.clock() // step) * step - step
        end_bucket = last_closed if end is None else min(last_closed, int(unix_seconds(end) // step) * step)
        if start is None:
            first = end_bucket - (self.config.history_bars - 1) * step
        else:
            first = -int(-unix_seconds(start) // step) * step  # the first bucket starting at or after `start`
        rows = self._fetch_pages(symbol, step, first, end_bucket + step - 1, log) if first <= end_bucket else []
        usable, malformed = well_formed(rows)
        # validate_candles drops and counts an unreadable time
        wanted = [row for row in usable if (ts := number(row[0])) is None or first <= ts <= end_bucket]
        import pandas as pd

        series = validate_candles(pd.DataFrame(wanted, columns=COLUMNS), symbol, granularity, source="coinbase REST")
        count_malformed(series.dropped, malformed, log)
        self._log_gaps(series.timestamp, None, step, log)
        return series

    # -- the cache behind fetch_candles -----------------------------------------------------

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._key_locks_guard:
            return self._key_locks.setdefault(key, threading.Lock())

    def _refresh(self, symbol: str, granularity: str, lookback: int, log: Any, force: bool = False) -> _History:
        """Fetch what the cache lacks: older buckets for a longer lookback, and the buckets since the last fetch."""
        step = step_of(granularity)
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

        connection = self._connection()
        rows: list[Any] = []
        for start, end in ranges:
            rows.extend(self._fetch_pages(symbol, step, start, end, log))
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

    def _merge(self, symbol: str, granularity: str, step: int, now: float, rows: list[Any], history: _History, log: Any) -> None:
        """Validate fetched rows, add the closed ones to the history and seed the forming bar."""
        import pandas as pd

        current = int(now // step) * step
        closed: list[list[Any]] = []
        forming: list[Any] | None = None
        usable, malformed = well_formed(rows)
        for row in usable:
            ts = number(row[0])
            if ts is None:
                closed.append(row)  # validate_candles drops and counts it
            elif ts + step <= now:
                closed.append(row)
            elif int(ts) == current:
                forming = row
        count_malformed(history.dropped, malformed, log)
        previous_last = max(history.rows) if history.rows else None
        if closed:
            series = validate_candles(pd.DataFrame(closed, columns=COLUMNS), symbol, granularity, source="coinbase REST")
            for reason, count in series.dropped.items():
                history.dropped[reason] = history.dropped.get(reason, 0) + count
            for i in range(len(series)):
                history.rows[int(series.timestamp[i])] = (
                    float(series.open[i]), float(series.high[i]), float(series.low[i]), float(series.close[i]), float(series.volume[i]),
                )
            self._log_gaps(series.timestamp, previous_last, step, log)
            if self.config.live and len(series) and (previous_last is None or int(series.timestamp[-1]) > previous_last):
                self._note_closed_close(symbol, float(series.close[-1]))
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
                missing=len(missing), first_missing=[format_utc(t) for t in missing[:5]],
            )
