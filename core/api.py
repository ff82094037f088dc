"""Python entry points for notebooks and scripts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .candles import series_from_frame
from .config import load_config
from .engine import Pipeline
from .models import CandleSeries, TheoryResult
from .registry import load_registry

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def analyze(candles: "pd.DataFrame | CandleSeries", config: str | Path | None = None, symbol: str = "UNKNOWN-USD") -> list[TheoryResult]:
    """Run the enabled theories (config order; the five built-ins without a config) on candles.

    `candles` is a DataFrame with the candle CSV's columns (timestamp, open, high, low, close, volume).
    """
    from threadpoolctl import threadpool_limits

    registry = load_registry()
    cfg = load_config(config, registry)
    pipeline = Pipeline.build(cfg, registry, kinds=("theory",))
    series = candles if isinstance(candles, CandleSeries) else series_from_frame(candles, symbol, cfg.engine.granularity)
    # Scoped, not process-wide: a notebook's own numpy keeps its threads after the call.
    with threadpool_limits(limits=cfg.engine.max_threads):
        return pipeline.analyze(series.tail(cfg.engine.lookback))
