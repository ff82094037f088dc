"""Shared by the benchmarks that replay many symbols: the pipeline over copies of the bundled history,
and the process's resident memory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def memory_mb(field: str = "VmRSS") -> float:
    """A /proc/self/status figure in MB: VmRSS (resident now) or VmHWM (the peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def replay_pipeline(work: Path, count: int, lookback: int, theories: list[str] | None = None, copy: bool = False) -> Any:
    """A replay pipeline of `count` symbols (S0000-USD…), alternately BTC-USD's and ETH-USD's bundled
    candles, stored in `work`/v7.db. `copy` gives each symbol a file of its own (its own replay
    cache entry); otherwise they are symbolic links (no disk for 1,000 symbols)."""
    from v7.core.config import validate_config
    from v7.core.engine import Pipeline
    from v7.core.registry import load_registry

    candles = work / "candles"
    candles.mkdir()
    symbols = [f"S{i:04d}-USD" for i in range(count)]
    sources = [REPO / "data" / "candles" / name for name in ("BTC-USD.csv", "ETH-USD.csv")]
    for i, symbol in enumerate(symbols):
        target = candles / f"{symbol}.csv"
        if copy:
            shutil.copy(sources[i % 2], target)
        else:
            target.symlink_to(sources[i % 2])
    registry = load_registry()
    raw: dict[str, Any] = {
        "engine": {"symbols": symbols, "lookback": lookback},
        "feeds": {"enabled": ["replay"], "replay": {"path": str(candles)}},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(work / "v7.db")}},
    }
    if theories is not None:
        raw["theories"] = {"enabled": theories}
    return Pipeline.build(validate_config(raw, registry), registry)
