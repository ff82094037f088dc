"""The feature store: theory results per bar kept as Parquet, so a backtest re-scores without recomputing theories.

Results live under `[backtest] feature_cache` (relative to the working directory), one file per
symbol, granularity, theory and theory key (`keys.theory_key`: the theory's name, version, config,
the lookback and the granularity); each row is one bar, with the digest of the window the theory
saw (`keys.window_digest`), so edited candles never reuse a stale result. `load_features` turns the
stored results into the DataFrame a learned synthesizer trains on (`v7.load_features`).
"""

from __future__ import annotations

from .cache import FeatureCache
from .frame import load_features
from .keys import theory_key, window_digest
from .store import FeatureStore

__all__ = ["FeatureCache", "FeatureStore", "load_features", "theory_key", "window_digest"]
