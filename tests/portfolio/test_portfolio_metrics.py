"""Portfolio figures on synthetic returns with known answers: annualised volatility, drawdown, daily CVaR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from v7.core.backtest.portfolio_metrics import annual_return, annual_volatility, cvar, daily_returns, portfolio_performance

DAY, HOUR = 86400, 3600


def test_annualised_volatility_of_alternating_returns():
    a = 0.01
    returns = np.array([a, -a] * 500)  # mean 0, std(ddof=1) = a·sqrt(n / (n − 1))
    n = returns.size
    assert annual_volatility(returns, 8760) == pytest.approx(a * math.sqrt(n / (n - 1)) * math.sqrt(8760))


def test_annual_return_compounds_to_a_year():
    per_day = 1.10 ** (1 / 365) - 1  # +10% a year, in 365 daily steps, over two years
    assert annual_return(np.full(730, per_day), 365) == pytest.approx(0.10)
    assert annual_return(np.array([-1.0, 0.5]), 365) == -1.0


def test_cvar_of_a_known_distribution():
    returns = np.arange(-50, 50) / 100  # −0.50 … +0.49: the worst 5 of 100 are −0.50 … −0.46
    assert cvar(returns) == pytest.approx(0.48)
    assert cvar(np.random.default_rng(0).permutation(returns)) == pytest.approx(0.48)
    # Uniform on [−1, 1]: the mean of the worst 5% is −0.95, for a large sample.
    assert cvar(np.random.default_rng(1).uniform(-1, 1, 1_000_000)) == pytest.approx(0.95, abs=2e-3)
    assert cvar(np.array([0.02])) == pytest.approx(-0.02)  # one day: its own return, a gain
    assert cvar(np.array([])) is None


def test_hourly_returns_compound_into_utc_days():
    ends = 10 * DAY + HOUR * np.arange(48)  # two whole days of hourly bars
    returns = np.full(48, 0.001)
    daily = daily_returns(returns, ends)
    assert daily == pytest.approx([1.001**24 - 1, 1.001**24 - 1])


def test_drawdown_turnover_and_exposure_of_a_known_book():
    returns = np.array([0.10, -0.20, 0.05, 0.25])  # equity 1.1, 0.88, 0.924, 1.155
    ends = DAY * np.arange(1, 5)
    perf = portfolio_performance(returns, np.array([1.0, 0.5, 0.0, 0.5]), np.array([1.0, 0.5, 0.5, 1.0]), ends, 365)
    assert perf.total_return == pytest.approx(1.1 * 0.8 * 1.05 * 1.25 - 1)
    assert perf.max_drawdown == pytest.approx(0.20)
    assert perf.turnover == pytest.approx(2.0) and perf.exposure == pytest.approx(0.75)
    assert perf.days == 4 and perf.cvar_95 == pytest.approx(0.20)  # ceil(5% × 4) = 1 worst day
