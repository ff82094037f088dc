"""`v7.load_features`: the stored theory results as one DataFrame, the table a learned synthesizer trains on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .keys import theory_key
from .store import FeatureStore

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..config import V7Config
    from ..registry import Registry

FIELDS = ("status", "bias", "confidence", "label")


def _utc(value: Any) -> "pd.Timestamp | None":
    import pandas as pd

    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def load_features(
    config: "V7Config | str | Path | None" = None,
    symbols: list[str] | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    *,
    registry: "Registry | None" = None,
) -> "pd.DataFrame":
    """The feature store's results for a config's enabled theories: one row per (symbol, bar_time).

    Columns: `symbol`, `bar_time` (UTC datetime), then per enabled theory, in config order,
    `<theory>.status`, `<theory>.bias`, `<theory>.confidence`, `<theory>.label` and one
    `<theory>.metric.<name>` per metric it reported. Only results stored under the theories'
    current keys count (the same version, config, lookback and granularity as `config`); a bar a
    theory has no result for holds missing values in its columns.

    `config` is a V7Config, a config file's path, or None for the built-in defaults; `symbols`
    defaults to every symbol stored at the config's granularity; `start`/`end` bound `bar_time`
    (inclusive, UTC when naive). Raises ValueError when the config's `feature_cache` is "" (off).
    """
    import pandas as pd

    from ..config import load_config
    from ..registry import load_registry

    if config is None or isinstance(config, (str, Path)):
        registry = registry or load_registry()
        config = load_config(config, registry)
    if not config.backtest.feature_cache:
        raise ValueError('[backtest] feature_cache is "" (the feature store is off): there are no stored features')
    store = FeatureStore(Path(config.backtest.feature_cache).resolve())
    granularity = config.engine.granularity
    theories = config.enabled.get("theory", [])
    versions = _versions(config, theories, registry)
    symbols = symbols if symbols is not None else store.symbols(granularity)
    low, high = _utc(start), _utc(end)

    frames = []
    for symbol in symbols:
        merged: pd.DataFrame | None = None
        for theory in theories:
            part = _theory_frame(store, symbol, granularity, theory, theory_key(config, theory, versions[theory]))
            if part is not None:
                merged = part if merged is None else merged.merge(part, on="bar_time", how="outer")
        if merged is None:
            continue
        merged.insert(0, "symbol", symbol)
        frames.append(merged)
    columns = ["symbol", "bar_time"] + [f"{t}.{f}" for t in theories for f in FIELDS]
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype="datetime64[ns, UTC]" if name == "bar_time" else object) for name in columns})
    frame = pd.concat(frames, ignore_index=True)
    for name in columns:
        if name not in frame.columns:
            frame[name] = None
    metric_columns = [c for t in theories for c in frame.columns if c.startswith(f"{t}.metric.")]
    frame = frame[columns + metric_columns].sort_values(["symbol", "bar_time"], kind="stable")
    frame["bar_time"] = pd.to_datetime(frame["bar_time"], unit="s", utc=True)
    if low is not None:
        frame = frame[frame["bar_time"] >= low]
    if high is not None:
        frame = frame[frame["bar_time"] <= high]
    return frame.reset_index(drop=True)


def _versions(config: "V7Config", theories: list[str], registry: "Registry | None") -> dict[str, str]:
    """Each enabled theory's version, from its plugin class (what `run_theory` records)."""
    from ..registry import load_registry

    registry = registry or load_registry()
    out = {}
    for name in theories:
        component = registry.get("theory", name)
        if component is None:
            raise ValueError(f"theory {name!r} is enabled but not installed: its stored results cannot be keyed")
        out[name] = str(component.cls.version)
    return out


def _theory_frame(store: FeatureStore, symbol: str, granularity: str, theory: str, key: str) -> "pd.DataFrame | None":
    import pandas as pd

    stored = store.frame(symbol, granularity, theory, key)
    if stored is None or stored.empty:
        return None
    part = pd.DataFrame({"bar_time": stored["bar_time"].astype("int64")})
    for name in FIELDS:
        part[f"{theory}.{name}"] = stored[name].to_numpy()
    metrics = pd.DataFrame.from_records(list(stored["metrics"]), index=part.index)
    for name in metrics.columns:
        part[f"{theory}.metric.{name}"] = metrics[name].astype("float64")
    return part
