"""Constants and the instrumented Coinbase feed shared by the feed tests (a plain module: test files cannot import conftest)."""

from __future__ import annotations

import threading
from typing import Any, Callable

from v7.plugins.feeds.coinbase import CoinbaseCandleFeed

NOW = 1_767_270_600.0  # 2026-01-01 12:30:00 UTC: half-way through an hourly bucket
HOUR = 3600
CURRENT = int(NOW // HOUR) * HOUR  # the forming hourly bucket at NOW

FAST_COINBASE = {
    "connect_timeout_seconds": 2.0,
    "read_timeout_seconds": 2.0,
    "requests_per_second": 1000.0,
    "burst": 1000,
    "max_retries": 3,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "max_retry_after_seconds": 5.0,
    "heartbeat_timeout_seconds": 1.0,
    "reconnect_backoff_base_seconds": 0.02,
    "reconnect_backoff_max_seconds": 0.1,
}
FAST_COINGECKO = {
    "connect_timeout_seconds": 2.0,
    "read_timeout_seconds": 2.0,
    "requests_per_minute": 60_000.0,
    "burst": 100,
    "max_retries": 2,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "max_retry_after_seconds": 5.0,
}



class InstrumentedCoinbaseFeed(CoinbaseCandleFeed):
    """The Coinbase feed plus what only tests need: waiting on live events, counters, the last price."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._rest_requests = 0
        self._rest_lock = threading.Lock()

    def fetch_range(self, *args: Any, **kwargs: Any) -> list[list[Any]]:
        with self._rest_lock:
            self._rest_requests += 1
        return super().fetch_range(*args, **kwargs)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` is true (re-checked on every live event) or `timeout` seconds pass."""
        with self._state:
            return self._state.wait_for(predicate, timeout)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: connects, reconnects, backfills, ticks, heartbeats, ignored/malformed messages, REST requests."""
        with self._state:
            counts = dict(self._counts)
        return {**counts, "rest_requests": self._rest_requests}

    def latest_price(self, symbol: str) -> float | None:
        """The last trade price seen on the socket (None before the first tick or when not live)."""
        with self._state:
            return self._last_price.get(symbol)
