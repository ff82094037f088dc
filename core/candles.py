"""Candle validation at the feed boundary, and V7's candle CSV format.

CSV: header `timestamp,open,high,low,close,volume`; timestamp in unix seconds or ISO-8601 UTC;
rows in any order. Every feed passes its rows through `validate_candles`, so theories always
see unique increasing timestamps and sane, positive, finite prices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .logs import get_logger
from .models import GRANULARITY_SECONDS, CandleSeries, count_gaps

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]


class CandleDataError(ValueError):
    """Candle data that cannot be used at all (missing columns, unreadable file)."""


def _to_unix_seconds(values: "pd.Series") -> "pd.Series":
    import pandas as pd

    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        # Milliseconds are a common slip (CoinGecko, many exports): normalise them.
        return numeric.where(numeric < 1e11, numeric // 1000)
    parsed = pd.to_datetime(values.where(numeric.isna()), utc=True, errors="coerce", format="mixed")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return numeric.where(numeric.notna(), seconds)


def validate_candles(frame: "pd.DataFrame", symbol: str, granularity: str, source: str = "") -> CandleSeries:
    """Sort, de-duplicate and drop invalid rows; the reasons and counts are logged, not hidden."""
    import numpy as np
    import pandas as pd

    missing = [c for c in COLUMNS[:5] if c not in frame.columns]
    if missing:
        raise CandleDataError(f"{source or symbol}: missing column(s) {', '.join(missing)}; expected header {','.join(COLUMNS)}")
    frame = frame.copy()
    if "volume" not in frame.columns:
        frame["volume"] = 0.0
    frame["timestamp"] = _to_unix_seconds(frame["timestamp"])
    for column in COLUMNS[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")

    dropped: dict[str, int] = {}

    def drop(mask: "pd.Series", reason: str) -> None:
        nonlocal frame
        count = int(mask.sum())
        if count:
            dropped[reason] = dropped.get(reason, 0) + count
            frame = frame[~mask]

    drop(frame["timestamp"].isna(), "unreadable timestamp")
    prices = frame[["open", "high", "low", "close"]]
    drop(~np.isfinite(prices).all(axis=1), "non-finite price")
    prices = frame[["open", "high", "low", "close"]]
    drop((prices <= 0).any(axis=1), "non-positive price")
    drop(frame["high"] < frame[["open", "close"]].max(axis=1), "high below open/close")
    drop(frame["low"] > frame[["open", "close"]].min(axis=1), "low above open/close")
    drop(~np.isfinite(frame["volume"]) | (frame["volume"] < 0), "invalid volume")
    frame = frame.sort_values("timestamp", kind="stable")
    drop(frame["timestamp"].duplicated(keep="last"), "duplicate timestamp")

    step = GRANULARITY_SECONDS.get(granularity)
    timestamps = frame["timestamp"].to_numpy(dtype="int64")
    gaps = count_gaps(timestamps, step)
    if dropped:
        get_logger().warning("dropped invalid candles", symbol=symbol, source=source or None, dropped=dropped)
    return CandleSeries(
        symbol=symbol,
        granularity=granularity,
        timestamp=timestamps,
        open=frame["open"].to_numpy(dtype="float64"),
        high=frame["high"].to_numpy(dtype="float64"),
        low=frame["low"].to_numpy(dtype="float64"),
        close=frame["close"].to_numpy(dtype="float64"),
        volume=frame["volume"].to_numpy(dtype="float64"),
        gaps=gaps,
        dropped=dropped,
    )


def read_candles_csv(path: str | Path, symbol: str, granularity: str = "1h") -> CandleSeries:
    """Read a V7 candle CSV and validate it."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"timestamp": str})
    except FileNotFoundError:
        raise CandleDataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CandleDataError(f"{path}: not a readable CSV: {exc}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return validate_candles(frame, symbol, granularity, source=str(path))


def series_from_frame(frame: "pd.DataFrame", symbol: str = "UNKNOWN-USD", granularity: str = "1h") -> CandleSeries:
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    if "timestamp" not in frame.columns and frame.index.name and str(frame.index.name).lower() in ("timestamp", "time", "date"):
        frame = frame.reset_index().rename(columns={frame.index.name: "timestamp"})
    return validate_candles(frame, symbol, granularity, source="DataFrame")


def check_spacing(series: CandleSeries, granularity: str, source: str) -> None:
    """Refuse candles whose usual spacing is not the granularity: hourly data read as `1d` mislabels every signal."""
    import numpy as np

    if len(series) < 2:
        return
    step = int(np.median(np.diff(series.timestamp)))
    expected = GRANULARITY_SECONDS[granularity]
    if step != expected:
        raise CandleDataError(f"{source}: candles are {step} s apart, but engine.granularity is {granularity!r} ({expected} s)")
