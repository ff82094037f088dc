"""Python entry points for notebooks and scripts.

`v7.analyze` is called in loops: the plugin registry, the validated config and the theories (with
their warm caches) are built once per process and config, and rebuilt only when the config file
or the installed packages change (a `pip install` touches a folder on `sys.path`).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .candles import series_from_frame
from .models import CandleSeries, TheoryResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .config import V7Config
    from .engine import Pipeline

_PIPELINES: dict[Any, tuple["V7Config", "Pipeline"]] = {}
_LOCK = threading.Lock()
_THREADPOOLS: list[Any] = []


def _installed_stamp() -> tuple[tuple[str, int], ...]:
    """The modification times of the folders on sys.path: installing or removing a package changes one."""
    stamp = []
    for entry in sys.path:
        try:
            stamp.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return tuple(stamp)


def _config_key(config: str | Path | None) -> tuple[str | None, int, int]:
    if config is None:
        return (None, 0, 0)
    path = Path(config).resolve()
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)  # load_config says what is wrong with it
    return (str(path), stat.st_mtime_ns, stat.st_size)


def cached_pipeline(config: str | Path | None) -> tuple["V7Config", "Pipeline"]:
    """The validated config and a theories-only pipeline for it, built once per process and config."""
    from .config import load_config
    from .engine import Pipeline
    from .registry import load_registry

    key = (_config_key(config), _installed_stamp())
    with _LOCK:
        cached = _PIPELINES.get(key)
        if cached is None:
            registry = load_registry()
            cfg = load_config(config, registry)
            cached = (cfg, Pipeline.build(cfg, registry, kinds=("theory",)))
            stale = [k for k in _PIPELINES if k[0][0] == key[0][0]]
            for k in stale:  # an older version of this config, or of the installed packages
                del _PIPELINES[k]
            _PIPELINES[key] = cached
    return cached


def _thread_limits(max_threads: int) -> Any:
    """threadpoolctl's limit as a context manager, with the thread pools probed once per process."""
    from threadpoolctl import ThreadpoolController

    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=max_threads)


def analyze(candles: "pd.DataFrame | CandleSeries", config: str | Path | None = None, symbol: str = "UNKNOWN-USD") -> list[TheoryResult]:
    """Run the enabled theories (config order; the five built-ins without a config) on candles.

    `candles` is a DataFrame with the candle CSV's columns (timestamp, open, high, low, close, volume),
    validated as every feed's rows are, or an already validated `CandleSeries`.
    """
    cfg, pipeline = cached_pipeline(config)
    series = candles if isinstance(candles, CandleSeries) else series_from_frame(candles, symbol, cfg.engine.granularity)
    # Scoped, not process-wide: a notebook's own numpy keeps its threads after the call.
    with _thread_limits(cfg.engine.max_threads):
        return pipeline.analyze(series if len(series) <= cfg.engine.lookback else series.tail(cfg.engine.lookback))
