"""Small numeric helpers the built-in theories share (the abstention checks are public in `v7`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def robust_std(values: "np.ndarray") -> float:
    """Scale estimate that ignores a few outliers: 1.4826·MAD, falling back to the plain std when MAD is 0."""
    import numpy as np

    mad = float(np.median(np.abs(values - np.median(values)))) * 1.482602218505602
    if mad > 0.0:
        return mad
    return float(np.std(values))


def clip(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def batch_windows(history, ends, lookback: int, window: int, min_bars: int, config):
    """`window_closes` + `log_returns` for the window of every bar of `ends`, for batch paths.

    Returns `(close, starts, problems)`: the checked closes of bar `t` are `close[starts[i]:t + 1]`
    and `problems[i]` is None or the `InsufficientData` those two checks raise on that window. A
    window that every check clearly passes (integer counts over running sums, and a return spread
    bounded below by its range) is not re-checked; any other window is checked by the real
    functions on its own candles, so the verdict and the message are those of `analyze`.
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    from v7 import InsufficientData, log_returns, window_closes

    close = np.asarray(history.close, dtype=np.float64)
    stops = np.asarray(ends, dtype=np.int64) + 1
    size = min(window, lookback)
    starts = np.maximum(0, stops - size)
    n = stops - starts
    bad = ~(np.isfinite(close) & (close > 0))
    bad_before = np.concatenate([[0], np.cumsum(bad)])
    equal = np.concatenate([[0, 0], np.cumsum(close[1:] == close[:-1])])  # equal[j]: bars i in 1..j-1 with close[i] == close[i-1]
    unchanged = equal[stops] - equal[starts + 1]
    stale = np.minimum(config.stale_bars, n)
    stale_unchanged = equal[stops] - equal[stops - stale + 1]
    clear = (n >= max(min_bars, 3)) & (bad_before[stops] == bad_before[starts]) & (unchanged < n - 1) & (stale_unchanged < stale - 1)
    clear &= np.array([m > 1 and float(u) / (m - 1) <= config.max_unchanged_fraction for u, m in zip(unchanged.tolist(), n.tolist())], dtype=bool)
    # log_returns abstains when std(r) <= 1e-9·mean|r|; std(r) >= range(r)/sqrt(2·len) and mean|r| <= max|r|.
    with np.errstate(all="ignore"):
        returns = np.diff(np.log(np.where(bad, 1.0, close)))
    spread_ok = np.zeros(len(stops), dtype=bool)
    rows = np.flatnonzero(clear)
    full = rows[n[rows] == size]
    for chunk in np.array_split(full, max(1, -(-len(full) * size // 2_000_000))) if len(full) else []:
        view = sliding_window_view(returns, size - 1)[starts[chunk]]
        spread_ok[chunk] = (view.max(axis=1) - view.min(axis=1)) / math.sqrt(2.0 * (size - 1)) > 2e-9 * np.maximum(np.abs(view).max(axis=1), 1e-290)
    for i in rows[n[rows] != size]:
        r = returns[starts[i]:stops[i] - 1]
        spread_ok[i] = (r.max() - r.min()) / math.sqrt(2.0 * r.shape[0]) > 2e-9 * max(float(np.abs(r).max()), 1e-290)
    problems: list = [None] * len(stops)
    for i in np.flatnonzero(~(clear & spread_ok)).tolist():
        t = int(stops[i]) - 1
        try:
            log_returns(window_closes(history.slice(max(0, t + 1 - lookback), t + 1), window, min_bars, config))
        except InsufficientData as exc:
            problems[i] = exc
    return close, starts, problems
