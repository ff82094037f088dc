"""Candles for the symbol page's price chart: the config's candle feed replays them offline when
it is not live (the replay feed over the bundled data), else the chart draws the stored prices.

A live feed is never asked: a dashboard must not spend a rate-limited API's calls (or hang on
the network) to draw a chart; the stored signal prices (each its bar's close) suffice there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any, Callable

import structlog

log = structlog.get_logger("v7.dashboard")
CACHED = 16


def feed_candles(config: Any, registry: Any) -> Callable[[str, str, datetime, datetime], list[dict[str, float]] | None] | None:
    """`candles(symbol, granularity, first, last)` from the candle feed's history, or None when it is
    live or cannot give history."""
    name = config.candle_feed
    component = registry.get("feed", name) if name else None
    if component is None or component.cls.live or not component.cls.supports("fetch_history"):
        return None
    from ..backtest.history import load_history

    cache: OrderedDict[tuple[str, str, datetime, datetime], list[dict[str, float]] | None] = OrderedDict()
    gate = threading.Lock()

    def candles(symbol: str, granularity: str, first: datetime, last: datetime) -> list[dict[str, float]] | None:
        if granularity != config.engine.granularity:
            return None  # signals of another config: its feed may have other bars
        key = (symbol, granularity, first, last)
        with gate:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        try:
            series = load_history(config, registry, symbol, first, last)
        except Exception as exc:  # the chart falls back to the stored prices
            log.info("dashboard draws stored prices: the feed has no history here", symbol=symbol, feed=name, error=str(exc))
            bars = None
        else:
            start = int(first.timestamp())
            bars = [
                {"time": int(t), "open": float(o), "high": float(h), "low": float(lo), "close": float(c)}
                for t, o, h, lo, c in zip(series.timestamp, series.open, series.high, series.low, series.close) if t >= start
            ]
        with gate:
            cache[key] = bars
            while len(cache) > CACHED:
                cache.popitem(last=False)
        return bars

    return candles
