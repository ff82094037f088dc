"""The abstention checks every theory can use: bad data becomes an abstention, never a made-up answer.

Public as `v7.SeriesConfig`, `v7.window_closes` and `v7.log_returns`. Light to import (numpy is
loaded inside the functions) so `v7 plugins` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from .components import InsufficientData, TheoryConfig
from .models import CandleSeries

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


class SeriesConfig(TheoryConfig):
    """Settings every built-in theory shares: when a series counts as stale."""

    stale_bars: int = Field(
        default=10, ge=2, le=10_000,
        description="Abstain when the last this-many closes are all identical (a stale feed or a halted market).",
    )
    max_unchanged_fraction: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="Abstain when more than this share of the window's bars did not move the close (too illiquid to read).",
    )


def window_closes(candles: CandleSeries, window: int, min_bars: int, config: SeriesConfig) -> "np.ndarray":
    """The last `window` closes (fewer when fewer are given), checked; raises `InsufficientData` when unusable.

    Only the window is checked, because only the window is used: the theories are causal and look
    at the END of the series.
    """
    import numpy as np

    close = np.asarray(candles.close, dtype=np.float64)
    close = close[max(0, close.shape[0] - window):]
    n = close.shape[0]
    if n < min_bars:
        raise InsufficientData(f"needs {min_bars} candles in the window, got {n}")
    finite = np.isfinite(close)
    if not finite.all():
        raise InsufficientData(f"{int((~finite).sum())} non-finite close price(s) in the last {n} candles")
    if (close <= 0).any():
        raise InsufficientData(f"{int((close <= 0).sum())} non-positive close price(s) in the last {n} candles")
    if close.min() == close.max():
        raise InsufficientData(f"flat series: all {n} closes equal {close[0]:g}")
    stale = min(config.stale_bars, n)
    tail = close[n - stale:]
    if tail.min() == tail.max():
        raise InsufficientData(f"stale series: the last {stale} closes are all {tail[0]:g}")
    unchanged = float(np.count_nonzero(close[1:] == close[:-1])) / (n - 1)
    if unchanged > config.max_unchanged_fraction:
        raise InsufficientData(f"{unchanged:.0%} of the last {n} bars left the close unchanged; too illiquid to read")
    return close


def log_returns(close: "np.ndarray") -> "np.ndarray":
    """Log returns of checked, positive closes; abstains when they carry no noise at all.

    A series that moves by the same ratio every bar (a synthetic ramp) has a return variance of
    rounding error only: every volatility-scaled statistic would be noise divided by noise.
    """
    import numpy as np

    returns = np.diff(np.log(close))
    spread = float(returns.std())
    if not spread > 1e-9 * max(float(np.abs(returns).mean()), 1e-300):
        raise InsufficientData("the close moves by the same ratio every bar; no variation to analyse")
    return returns
