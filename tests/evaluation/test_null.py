"""The circular-shift null finds planted foresight, is fair on random walks, and keeps exposure; deflated Sharpe."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kurtosis, norm, skew

from v7.core.evaluation import circular_shift_pvalue, deflated_sharpe, sharpe, strategy_returns

HOURS_PER_YEAR = 365 * 24


def test_strategy_returns_pay_cost_on_every_position_change():
    held = np.array([1.0, 1.0, 0.0, -1.0])
    bar = np.array([0.01, 0.02, 0.03, -0.01])
    expected = [(1 - 0.001) * 1.01 - 1, 1.02 - 1, (1 - 0.001) * 1.0 - 1, (1 - 0.001) * 1.01 - 1]
    assert strategy_returns(held, bar, 0.001) == pytest.approx(expected)


def test_sharpe_is_annualised_and_undefined_without_spread():
    r = np.array([0.01, -0.005, 0.02, 0.0])
    assert sharpe(r, 100) == pytest.approx(r.mean() / r.std(ddof=1) * 10)
    assert sharpe(np.array([0.01]), 100) is None
    assert sharpe(np.full(10, 0.01), 100) is None


def test_planted_foresight_is_significant():
    rng = np.random.default_rng(1)
    bar = rng.standard_normal(3000) * 0.01
    held = np.sign(bar + rng.standard_normal(3000) * 0.02)  # sees the coming bar's sign, noisily
    result = circular_shift_pvalue(held, bar, 0.0005, HOURS_PER_YEAR, shifts=500, seed=2)
    assert result.shifts == 500
    assert result.p_value < 0.01
    assert result.sharpe > result.null_p95 > result.null_mean


def momentum_positions(close: np.ndarray, lookback: int) -> np.ndarray:
    """Long when the past `lookback`-bar return (known at the bar's open) is positive, else short."""
    held = np.zeros(close.shape[0] - 1)
    past = close[lookback:-1] / close[:-lookback - 1] - 1
    held[lookback:] = np.where(past > 0, 1.0, -1.0)
    return held


def test_a_momentum_rule_on_random_walks_is_significant_at_the_nominal_rate():
    p_values = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        close = np.exp(np.cumsum(rng.standard_normal(1001) * 0.01))
        bar = close[1:] / close[:-1] - 1
        held = momentum_positions(close, 12)
        p_values.append(circular_shift_pvalue(held, bar, 0.0005, HOURS_PER_YEAR, shifts=200, seed=seed).p_value)
    share = np.mean(np.array(p_values) < 0.05)
    assert 0.0 < share <= 0.12
    assert 0.35 < np.median(p_values) < 0.65


def test_shifting_keeps_exposure_exactly():
    """With a constant bar return and no cost, a strategy's Sharpe depends only on its mix of positions."""
    rng = np.random.default_rng(3)
    held = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=40), rng.integers(1, 9, size=40))
    bar = np.full(held.shape[0], 0.001)
    result = circular_shift_pvalue(held, bar, 0.0, 365, shifts=50, seed=1)
    assert result.null_mean == pytest.approx(result.sharpe, rel=1e-9)
    assert result.p_value == pytest.approx(1.0)  # every shift ties the real Sharpe


def test_all_shifts_are_used_when_there_are_few():
    held = np.array([1.0, 0, 1, 1, 0, 0, 1, 0, 1, 1])
    bar = np.random.default_rng(1).standard_normal(10) * 0.01
    assert circular_shift_pvalue(held, bar, 0.0, 365, shifts=100, seed=1).shifts == 9
    assert circular_shift_pvalue(held, bar, 0.0, 365, shifts=100, seed=1, min_shift=2).shifts == 7
    a = circular_shift_pvalue(held, bar, 0.0, 365, shifts=4, seed=1)
    assert a.shifts == 4 and a == circular_shift_pvalue(held, bar, 0.0, 365, shifts=4, seed=1)


def probabilistic_sharpe(r: np.ndarray) -> float:
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = skew(r), kurtosis(r, fisher=False)
    return float(norm.cdf(sr * math.sqrt(r.shape[0] - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr * sr)))


def test_deflated_sharpe_with_one_trial_is_the_probabilistic_sharpe_ratio():
    r = np.random.default_rng(4).standard_t(5, size=1000) * 0.01 + 0.0008
    best = float(r.mean() / r.std(ddof=1))
    assert deflated_sharpe([best], r) == pytest.approx(probabilistic_sharpe(r), abs=1e-12)


def test_more_trials_deflate_the_same_best_sharpe_more():
    r = np.random.default_rng(5).standard_normal(2000) * 0.01 + 0.001
    best = float(r.mean() / r.std(ddof=1))
    values = []
    for trials in (2, 10, 100, 1000):
        z = np.random.default_rng(trials).standard_normal(trials)
        z = (z - z.mean()) / z.std(ddof=1)
        sharpes = best + 0.01 * (z - z.max())  # the same best and the same spread (0.01) every time
        assert max(sharpes) == pytest.approx(best) and np.var(sharpes, ddof=1) == pytest.approx(1e-4)
        values.append(deflated_sharpe(list(sharpes), r))
    psr = deflated_sharpe([best], r)
    assert psr > values[0] and all(a > b for a, b in zip(values, values[1:]))
    assert 0 < values[-1] < 1


def test_deflated_sharpe_is_undefined_without_returns_or_spread():
    assert deflated_sharpe([0.1], np.array([0.01, 0.02])) is None
    assert deflated_sharpe([0.1], np.full(100, 0.01)) is None
    assert deflated_sharpe([], np.random.default_rng(1).standard_normal(100)) is None


def test_a_custom_execution_model_is_shifted_as_the_default_one():
    from v7.core.evaluation import circular_shift_pvalue, strategy_returns

    rng = np.random.default_rng(11)
    bar = rng.normal(0, 0.01, 600)
    held = np.sign(rng.normal(size=600))
    default = circular_shift_pvalue(held, bar, 0.001, 8760, shifts=200, seed=3)
    custom = circular_shift_pvalue(held, bar, 0.001, 8760, shifts=200, seed=3, returns_of=lambda h: strategy_returns(h, bar, 0.001))
    assert custom == default
    # A model that ignores costs is what it says: the real Sharpe changes, the shifts stay the same.
    free = circular_shift_pvalue(held, bar, 0.001, 8760, shifts=200, seed=3, returns_of=lambda h: strategy_returns(h, bar, 0.0))
    assert free.sharpe > default.sharpe and free.shifts == default.shifts


def test_the_deflated_sharpe_from_stored_moments_equals_the_one_from_returns():
    from scipy.stats import kurtosis, skew

    from v7.core.evaluation import deflated_sharpe, deflated_sharpe_of

    rng = np.random.default_rng(5)
    r = rng.standard_t(5, 2000) * 0.01 + 0.0005
    trials = [0.01, 0.03, 0.02, float(r.mean() / r.std(ddof=1))]
    sr = float(r.mean() / r.std(ddof=1))
    assert deflated_sharpe_of(sr, r.shape[0], float(skew(r)), float(kurtosis(r, fisher=False)), trials) == deflated_sharpe(trials, r)


@pytest.mark.parametrize("next_open, delay, cost", [(True, 0, 0.0015), (False, 0, 0.0015), (True, 2, 0.0), (False, 1, 0.01)])
def test_looking_shifted_returns_up_by_position_pair_equals_filling_every_shifted_sequence(next_open, delay, cost):
    """Signals hold −1, 0 or 1: the null's table of every pair at every bar gives the same null, to the bit."""
    from v7.core.backtest.execution import Execution, fill, in_force, interval_returns
    from v7.core.models import CandleSeries

    rng = np.random.default_rng(delay + 10 * next_open)
    bars = 900
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))
    opens = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.002, bars))
    history = CandleSeries(symbol="X-USD", granularity="1h", timestamp=3600 * np.arange(bars), open=opens,
                           high=np.maximum(opens, close) * 1.01, low=np.minimum(opens, close) * 0.99, close=close, volume=np.ones(bars))
    execution = Execution(next_open, delay, cost)
    first = 20
    decided = np.where(rng.random(bars - first - 5) < 0.05, rng.choice([-1.0, 0.0, 1.0], bars - first - 5), np.nan)
    held = in_force(decided, execution.lag)
    filled = circular_shift_pvalue(held, None, cost, 8760, shifts=400, seed=4, min_shift=6,
                                   returns_of=lambda rows: fill(history, first, rows, execution).returns)
    looked_up = circular_shift_pvalue(held, None, cost, 8760, shifts=400, seed=4, min_shift=6,
                                      returns_of=lambda rows: fill(history, first, rows, execution).returns,
                                      pair_returns=lambda before, after: interval_returns(history, first, before, after, execution)[0],
                                      pairing="lead" if next_open else "from_flat")
    assert looked_up == filled and filled.shifts == 400 and filled.p_value is not None


def test_the_default_model_looks_up_as_it_computes():
    rng = np.random.default_rng(8)
    bar = rng.normal(0, 0.01, 700)
    held = np.sign(rng.normal(size=700)) * (rng.random(700) < 0.6)
    computed = circular_shift_pvalue(held, bar, 0.001, 8760, shifts=300, seed=2, returns_of=lambda h: strategy_returns(h, bar, 0.001))
    assert circular_shift_pvalue(held, bar, 0.001, 8760, shifts=300, seed=2) == computed
    many = rng.normal(size=700)  # more distinct positions than the table takes: every shifted sequence is computed
    assert circular_shift_pvalue(many, bar, 0.001, 8760, shifts=50, seed=2) == circular_shift_pvalue(
        many, bar, 0.001, 8760, shifts=50, seed=2, returns_of=lambda h: strategy_returns(h, bar, 0.001))
