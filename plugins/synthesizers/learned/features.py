"""The features of one bar: every theory's reading plus a few causal price and volume features.

Per theory (in the request's order): `<theory>.ok` (1 when it answered `ok`), `<theory>.bias`
(NaN when it states none), `<theory>.confidence`, `<theory>.metric.<name>` for each metric, and
`<theory>.label=<label>` = 1 for the label it gave (one-hot; labels never seen in training are
ignored). From the candles the theories saw: `price.return_<k>` (log return over k bars, each of
`lags`), `price.volatility` (standard deviation of the last `volatility_bars` one-bar log returns)
and `volume.z` (today's log volume against the last `volume_bars`). Nothing reads a bar after t.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from v7 import SynthesisRequest

from .config import LearnedConfig

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

LABEL_MARK = "="  # `<theory>.label=<label>`: a one-hot column, 0 (not NaN) where another label was given


class MissingFeature(Exception):
    """A feature the bar cannot have (a theory did not answer, too few candles): the fallback answers."""


def bar_features(request: SynthesisRequest, cfg: LearnedConfig) -> dict[str, float]:
    """The named features of the request's bar; raises MissingFeature with the reason."""
    out: dict[str, float] = {}
    for result in request.results:
        if not result.ok:
            raise MissingFeature(f"theory {result.theory!r} answered {result.status}" + (f" ({result.message})" if result.message else ""))
        name = result.theory
        out[f"{name}.ok"] = 1.0
        out[f"{name}.bias"] = math.nan if result.bias is None else float(result.bias)
        out[f"{name}.confidence"] = float(result.confidence)
        for metric, value in result.metrics.items():
            out[f"{name}.metric.{metric}"] = float(value)
        if result.label:
            out[f"{name}.label{LABEL_MARK}{result.label}"] = 1.0
    out.update(price_features(request, cfg))
    if cfg.exclude_features:
        out = {k: v for k, v in out.items() if not any(fnmatchcase(k, pattern) for pattern in cfg.exclude_features)}
    return out


def price_features(request: SynthesisRequest, cfg: LearnedConfig) -> dict[str, float]:
    import numpy as np

    candles = request.candles
    need = max(max(cfg.lags), cfg.volatility_bars, cfg.volume_bars) + 1
    if candles is None or len(candles) < need:
        raise MissingFeature(f"price features need {need} candles; the request has {0 if candles is None else len(candles)}")
    close = np.asarray(candles.close[-need:], dtype=np.float64)
    volume = np.asarray(candles.volume[-need:], dtype=np.float64)
    if not (np.all(np.isfinite(close)) and np.all(close > 0)):
        raise MissingFeature("a close in the feature window is not a positive number")
    logs = np.log(close)
    out = {f"price.return_{lag}": float(logs[-1] - logs[-1 - lag]) for lag in cfg.lags}
    steps = np.diff(logs[-cfg.volatility_bars - 1:])
    out["price.volatility"] = float(steps.std(ddof=1))
    out["volume.z"] = _zscore(np.log1p(np.clip(volume[-cfg.volume_bars - 1:], 0, None)))
    return out


def _zscore(values: "np.ndarray") -> float:
    past = values[:-1]
    spread = float(past.std(ddof=1))
    return float((values[-1] - past.mean()) / spread) if spread > 0 else 0.0
