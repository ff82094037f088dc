"""Positions across symbols: the portfolio step after the per-symbol signals of an iteration.

- `config`: `[portfolio]` (off by default);
- `weights`: long-only weights from a covariance (minimum variance, inverse volatility, equal);
- `allocate`: proposed positions to the book (weights relative to equal weight, signs kept, caps);
- `step`: the run-time step over an iteration's signals (core/scheduler.py calls it).

The portfolio backtest is core/backtest/portfolio.py; the formulas are in docs/portfolio.md.
"""

from __future__ import annotations

from .allocate import Allocation, aligned_returns, allocate, cap, within_limits
from .config import METHODS, PortfolioConfig
from .weights import covariance, equal, inverse_vol, min_variance, weights

__all__ = [
    "METHODS", "Allocation", "PortfolioConfig", "aligned_returns", "allocate", "cap", "covariance", "equal", "inverse_vol",
    "min_variance", "weights", "within_limits",
]
