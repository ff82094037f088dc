"""The history a backtest replays: `Feed.fetch_history` of the config's candle feed, and the signal bars in it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

from ..config import V7Config
from ..models import GRANULARITY_SECONDS, CandleSeries
from ..timefmt import format_utc
from .models import BacktestError

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Registry


def utc_seconds(moment: datetime | None) -> int | None:
    """Unix seconds of a moment (a naive one is UTC); None stays None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def history_start(start: datetime | None, lookback: int, granularity: str) -> datetime | None:
    """Where the history must begin for the bar at `start` to have a full lookback: `lookback − 1` bars earlier."""
    if start is None:
        return None
    return start - timedelta(seconds=(lookback - 1) * GRANULARITY_SECONDS[granularity])


def load_histories(
    config: V7Config, registry: "Registry", symbols: Sequence[str], start: datetime | None, end: datetime | None,
) -> dict[str, CandleSeries]:
    """Every symbol's candles from the config's candle feed, through its `fetch_history` capability.

    One feed instance serves every symbol (its rate limits and connections are shared) and is closed
    at the end. With a `start`, the history begins `lookback − 1` bars before it, so the first signal
    bar has a full window; without one (or without an `end`) the feed decides (`Feed.fetch_history`:
    None = open). A feed that does not implement `fetch_history` cannot be backtested.
    """
    name = config.candle_feed
    if not name:
        raise BacktestError("no candle feed is enabled; enable one in [feeds]")
    component = registry.get("feed", name)
    if component is None:
        raise BacktestError(f"candle feed {name!r} is not installed")
    if not component.cls.supports("fetch_history"):
        raise BacktestError(
            f"feed {name!r} cannot provide history (it does not implement fetch_history); "
            "choose a candle feed that does in [feeds] candles"
        )
    try:
        feed = component.cls(config.plugin_config("feed", name) or component.cls.Config())
    except Exception as exc:
        raise BacktestError(f"feed {name!r} failed to start: {type(exc).__name__}: {exc}") from exc
    granularity = config.engine.granularity
    first = history_start(start, config.engine.lookback, granularity)
    out: dict[str, CandleSeries] = {}
    try:
        for symbol in symbols:
            try:
                series = feed.fetch_history(symbol, granularity, first, end)
            except Exception as exc:
                raise BacktestError(f"{symbol}: feed {name!r} could not provide history: {type(exc).__name__}: {exc}") from exc
            if series is None or len(series) == 0:
                raise BacktestError(f"{symbol}: feed {name!r} returned no candles{_beyond_the_data(feed, symbol, granularity, start)}")
            out[symbol] = own_copy(series)
    finally:
        try:
            feed.close()
        except Exception:
            pass
    return out


def load_history(config: V7Config, registry: "Registry", symbol: str, start: datetime | None, end: datetime | None) -> CandleSeries:
    """One symbol's candles (see `load_histories`)."""
    return load_histories(config, registry, [symbol], start, end)[symbol]


def own_copy(series: CandleSeries) -> CandleSeries:
    """Contiguous copies: every window handed to a plugin is a view of the backtest's own buffers."""
    import numpy as np

    return CandleSeries(
        symbol=series.symbol, granularity=series.granularity,
        timestamp=np.array(series.timestamp, dtype=np.int64), open=np.array(series.open, dtype=np.float64),
        high=np.array(series.high, dtype=np.float64), low=np.array(series.low, dtype=np.float64),
        close=np.array(series.close, dtype=np.float64), volume=np.array(series.volume, dtype=np.float64),
        gaps=series.gaps, dropped=dict(series.dropped),
    )


def signal_range(history: CandleSeries, lookback: int, start: datetime | None, end: datetime | None, step: int, bars: int | None = None) -> tuple[list[int], int]:
    """Signal bar indices (every `step` bars) and the last bar of the range (where the strategy is marked).

    Default start: the first bar with a full `lookback` behind it. `bars` keeps only the last N bars of the range.
    """
    import numpy as np

    n = len(history)
    first = lookback - 1 if start is None else int(np.searchsorted(history.timestamp, utc_seconds(start), side="left"))
    last = n - 1 if end is None else int(np.searchsorted(history.timestamp, utc_seconds(end), side="right")) - 1
    if bars is not None:
        first = max(first, last - bars + 1)
    first = max(first, 0)
    if first > last:
        raise BacktestError(
            f"{history.symbol}: no bars to backtest between {format_utc(int(history.timestamp[min(first, n - 1)]))} and "
            f"{format_utc(int(history.timestamp[max(last, 0)]))} ({n} candles, lookback {lookback})"
        )
    return list(range(first, last + 1, step)), last


def _beyond_the_data(feed: Any, symbol: str, granularity: str, start: datetime | None) -> str:
    """When a start gave no candles: say whether it lies after the last bar the feed has."""
    if start is None:
        return ""
    try:
        everything = feed.fetch_history(symbol, granularity, None, None)
    except Exception:
        return ""
    if everything is None or len(everything) == 0:
        return ""
    last = everything.last_time
    if last < start:
        return f": --start {format_utc(start)} is after the end of the data (last bar {format_utc(last)})"
    return ""
