"""The figures of a portfolio's per-bar returns: annualised return and volatility, Sharpe, drawdown, daily CVaR.

Sharpe and drawdown come from core/evaluation and core/backtest/scoring, as for a single symbol.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..evaluation import sharpe as sharpe_ratio
from .portfolio_models import PortfolioPerformance
from .scoring import max_drawdown

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

CVAR_LEVEL = 0.95
SECONDS_PER_DAY = 86400


def annual_return(returns: "np.ndarray", per_year: float) -> float | None:
    """Compound annual growth of per-bar `returns`: (Π(1 + r))^(per_year / bars) − 1; −1 once the equity is gone."""
    import numpy as np

    if returns.shape[0] == 0:
        return None
    end = float(np.prod(1.0 + returns))
    return end ** (per_year / returns.shape[0]) - 1.0 if end > 0 else -1.0


def annual_volatility(returns: "np.ndarray", per_year: float) -> float | None:
    """std(ddof = 1) of per-bar returns × sqrt(bars per year)."""
    if returns.shape[0] < 2:
        return None
    return float(returns.std(ddof=1)) * math.sqrt(per_year)


def daily_returns(returns: "np.ndarray", ends: "np.ndarray") -> "np.ndarray":
    """Per-bar returns compounded per UTC day; `ends` = the Unix time at which each bar's interval ends."""
    import numpy as np

    if returns.shape[0] == 0:
        return np.array([])
    day = np.asarray(ends, dtype=np.int64) // SECONDS_PER_DAY
    starts = np.flatnonzero(np.concatenate([[True], day[1:] != day[:-1]]))
    return np.multiply.reduceat(1.0 + returns, starts) - 1.0


def cvar(returns: "np.ndarray", level: float = CVAR_LEVEL) -> float | None:
    """Expected loss beyond the (1 − level) quantile: −mean of the ceil((1 − level) × n) lowest returns."""
    import numpy as np

    n = returns.shape[0]
    if n == 0:
        return None
    worst = max(1, math.ceil(round((1.0 - level) * n, 9)))
    return float(-np.sort(returns)[:worst].mean())


def portfolio_performance(returns: "np.ndarray", traded: "np.ndarray", gross: "np.ndarray", ends: "np.ndarray", per_year: float) -> PortfolioPerformance:
    """The figures of a book: per-bar net `returns`, units `traded` and gross exposure per bar, interval end times."""
    import numpy as np

    equity = np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    daily = daily_returns(returns, ends)
    return PortfolioPerformance(
        total_return=float(equity[-1] - 1.0),
        annual_return=annual_return(returns, per_year),
        annual_volatility=annual_volatility(returns, per_year),
        sharpe=sharpe_ratio(returns, per_year),
        max_drawdown=max_drawdown(equity),
        cvar_95=cvar(daily),
        turnover=float(np.sum(traded)),
        exposure=float(np.mean(gross)) if gross.shape[0] else 0.0,
        bars=int(returns.shape[0]),
        days=int(daily.shape[0]),
    )
