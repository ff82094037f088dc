"""What the portfolio backtest stores with a result (`BacktestResult.portfolio`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .equity import EquityCurve


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class PortfolioPerformance(_Model):
    """One book's equity curve, summarised; returns are fractions of the whole capital (0.12 = +12%)."""

    total_return: float
    annual_return: float | None = Field(default=None, description="compound annual growth: equity^(bars per year / bars) − 1")
    annual_volatility: float | None = Field(default=None, description="std of per-bar returns × sqrt(bars per year)")
    sharpe: float | None = Field(default=None, description="annualised: mean / std of per-bar returns × sqrt(bars per year)")
    max_drawdown: float = Field(description="largest fall from a running peak, as a fraction of the peak")
    cvar_95: float | None = Field(
        default=None, description="expected loss on the worst 5% of days: −mean of the ceil(5% × days) lowest daily returns",
    )
    turnover: float = Field(description="Σ |position change| over every symbol; costs are charged on it")
    exposure: float = Field(description="mean gross exposure Σ|position| over the bars")
    bars: int
    days: int


class PortfolioWindow(_Model):
    """The sized portfolio, the same signals unsized at equal weight, and the equal-weight buy-and-hold basket, over one window."""

    start: datetime
    end: datetime
    portfolio: PortfolioPerformance
    unsized: PortfolioPerformance
    basket: PortfolioPerformance


class PortfolioResult(_Model):
    """`v7 backtest --portfolio`: every symbol together, sized, through the portfolio step, costs and execution."""

    symbols: list[str]
    settings: dict[str, Any] = Field(description="the [portfolio] settings used (method, covariance_bars, caps)")
    bars: int = Field(description="bars every symbol has (the common timeline), first decision to last bar")
    dropped_signals: int = Field(default=0, description="signals at bars some symbol lacks (left out of the book)")
    overall: PortfolioWindow
    folds: list[PortfolioWindow] = Field(default_factory=list, description="walk-forward windows, each starting flat")
    mean_weight: dict[str, float] = Field(default_factory=dict, description="each symbol's mean allocation weight over the decisions where it was held")
    mean_position: dict[str, float] = Field(default_factory=dict, description="each symbol's mean position in force over the bars")
    equity: EquityCurve | None = Field(default=None, description="the portfolio, unsized and basket equity over the run (None in results stored before it was kept)")
