"""The replay's candle cache: each CSV validated once, kept as .npy arrays and memory-mapped.

A replay of 1,000 symbols with 20,000 hourly bars each holds ~0.9 GB of candles if every history
lives in memory, and parses 1,000 CSV files before its first signal. Validated arrays in `.npy`
files, opened with `mmap_mode="r"`, cost resident memory only for the pages the windows touch,
and load in microseconds. A cache entry is keyed by the CSV's resolved path, size and modification
time and the granularity: an edited file is validated again. The arrays are read-only, so no
theory can change a candle another symbol or a later bar will read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from v7 import CandleSeries, create_private, get_logger, read_candles_csv

FORMAT = 1  # bump when the layout below changes: old entries are then never read


def cache_key(path: Path, granularity: str) -> str:
    resolved = path.resolve()
    stat = resolved.stat()
    text = json.dumps([FORMAT, str(resolved), stat.st_size, stat.st_mtime_ns, granularity])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load(path: Path, symbol: str, granularity: str, root: Path) -> CandleSeries:
    """The validated candles of `path`, memory-mapped from the cache (written on first use)."""
    import numpy as np

    key = cache_key(path, granularity)
    stamps_file, prices_file, meta_file = (root / f"{key}.{part}" for part in ("timestamp.npy", "ohlcv.npy", "json"))
    if not (stamps_file.exists() and prices_file.exists() and meta_file.exists()):
        series = read_candles_csv(path, symbol, granularity)
        try:
            _write(root, stamps_file, prices_file, meta_file, series)
        except OSError as exc:  # an unwritable cache only costs memory: the series is still good
            get_logger(plugin="replay").warning("replay cache unwritable", path=str(root), error=f"{type(exc).__name__}: {exc}")
            return series
        return _mapped(stamps_file, prices_file, meta_file, symbol, granularity) or series
    mapped = _mapped(stamps_file, prices_file, meta_file, symbol, granularity)
    if mapped is None:  # a damaged entry: validate the CSV again and replace it
        for stale in (stamps_file, prices_file, meta_file):
            stale.unlink(missing_ok=True)
        return load(path, symbol, granularity, root)
    if mapped.dropped:
        get_logger().warning("dropped invalid candles", symbol=symbol, source=str(path), dropped=mapped.dropped)
    return mapped


def _write(root: Path, stamps_file: Path, prices_file: Path, meta_file: Path, series: CandleSeries) -> None:
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    prices = np.stack([series.open, series.high, series.low, series.close, series.volume])
    for target, array in ((stamps_file, np.ascontiguousarray(series.timestamp, dtype=np.int64)), (prices_file, prices)):
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        create_private(temporary)
        with temporary.open("wb") as handle:
            np.save(handle, array)
        os.replace(temporary, target)
    temporary = meta_file.with_name(f"{meta_file.name}.{os.getpid()}.tmp")
    create_private(temporary)
    temporary.write_text(json.dumps({"rows": len(series), "gaps": series.gaps, "dropped": series.dropped}), encoding="utf-8")
    os.replace(temporary, meta_file)  # last: an entry counts only once all three files are in place


def _mapped(stamps_file: Path, prices_file: Path, meta_file: Path, symbol: str, granularity: str) -> CandleSeries | None:
    import numpy as np

    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        stamps = np.load(stamps_file, mmap_mode="r")
        prices = np.load(prices_file, mmap_mode="r")
        rows = int(meta["rows"])
        if stamps.shape != (rows,) or prices.shape != (5, rows) or stamps.dtype != np.int64 or prices.dtype != np.float64:
            raise ValueError(f"shapes {stamps.shape} and {prices.shape} do not hold {rows} rows")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        get_logger(plugin="replay").warning("replay cache entry unreadable", path=str(meta_file), error=f"{type(exc).__name__}: {exc}")
        return None
    return CandleSeries(
        symbol=symbol, granularity=granularity, timestamp=stamps, open=prices[0], high=prices[1], low=prices[2],
        close=prices[3], volume=prices[4], gaps=int(meta.get("gaps", 0)), dropped=dict(meta.get("dropped", {})),
    )
