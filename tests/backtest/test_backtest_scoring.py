"""Backtest scores on cases with known answers: Wilson intervals, drawdown, Sharpe, the strategy, folds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from v7 import CandleSeries
from v7.core.backtest import (
    BarSignal, fold_bounds, forward_returns, max_drawdown, periods_per_year, score, sharpe_ratio, spread,
    symbol_result, wilson_interval,
)
from v7.core.config import BacktestConfig

HOUR = 3600
T0 = 1_600_000_000 // HOUR * HOUR


def series(close, symbol="TEST-USD", granularity="1h") -> CandleSeries:
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    return CandleSeries(
        symbol=symbol, granularity=granularity, timestamp=T0 + HOUR * np.arange(n, dtype=np.int64),
        open=close, high=close, low=close, close=close, volume=np.ones(n),
    )


def signals(history: CandleSeries, directions: dict[int, str]) -> list[BarSignal]:
    return [
        BarSignal(index=i, timestamp=int(history.timestamp[i]), price=float(history.close[i]), direction=d, confidence=1.0,
                  synthesizer="test", fallback_reason=None, theories=())
        for i, d in sorted(directions.items())
    ]


@pytest.mark.parametrize(("hits", "n", "low", "high"), [
    # Hand-computed: centre (p + z²/2n)/(1 + z²/n), half-width z·sqrt(p(1−p)/n + z²/4n²)/(1 + z²/n), z = 1.95996.
    (8, 10, 0.4902, 0.9433),
    (55, 100, 0.4524, 0.6439),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (1, 2, 0.0945, 0.9055),
])
def test_wilson_interval_matches_hand_computed_values(hits, n, low, high):
    got_low, got_high = wilson_interval(hits, n)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_without_data_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_max_drawdown_of_a_known_equity_curve():
    # Peak 1.2, trough 0.6 later: half of the peak lost.
    assert max_drawdown([1.0, 1.2, 0.9, 1.1, 0.6, 1.3]) == pytest.approx(0.5)
    assert max_drawdown([1.0, 1.1, 1.2]) == 0.0
    assert max_drawdown([1.0, 0.8]) == pytest.approx(0.2)


def test_sharpe_of_a_known_return_series():
    returns = [0.01, -0.02, 0.03, 0.0]
    # mean 0.005, sample std sqrt(0.0013/3) = 0.0208167; hourly: × sqrt(365 × 24).
    assert sharpe_ratio(returns, periods_per_year("1h")) == pytest.approx(0.005 / math.sqrt(0.0013 / 3) * math.sqrt(8760))
    assert sharpe_ratio(returns, periods_per_year("1h")) == pytest.approx(22.48076, rel=1e-6)
    assert sharpe_ratio(returns, periods_per_year("1d")) == pytest.approx(4.58887, rel=1e-5)
    assert sharpe_ratio([0.01, 0.01, 0.01], 8760) is None  # no variation: undefined, not infinite
    assert sharpe_ratio([0.01], 8760) is None


def test_forward_returns_and_the_end_of_history():
    close = np.array([100.0, 110.0, 99.0, 120.0])
    fwd = forward_returns(close, [0, 1, 2, 3], 2)
    assert fwd[0] == pytest.approx(-0.01) and fwd[1] == pytest.approx(120 / 110 - 1)
    assert np.isnan(fwd[2]) and np.isnan(fwd[3])


def test_always_up_buy_everywhere_wins_every_time_and_pays_the_entry_cost_once():
    rng = np.random.default_rng(3)
    close = 100 * np.cumprod(1 + rng.uniform(0.0005, 0.003, 300))  # strictly rising
    history = series(close)
    sigs = signals(history, {i: "BUY" for i in range(50, 300, 5)})
    settings = BacktestConfig(horizon=10, fees_bps=10, slippage_bps=5, execution="close")
    s = score(history, sigs, 299, settings)
    buy = s.directions["BUY"]
    assert buy.count == 50 and buy.hit_rate == 1.0 and buy.hits == buy.scored == 48  # the last 2 have no 10-bar future
    assert buy.ci_low == pytest.approx(wilson_interval(48, 48)[0])
    assert s.directions["SELL"].count == 0 and s.directions["SELL"].hit_rate is None
    assert s.hold_share == 0.0
    gross = close[299] / close[50] - 1
    # Buy-and-hold pays its entry too: the same one trade, so no excess either way.
    assert s.buy_and_hold.total_return == pytest.approx((1 - 0.0015) * (1 + gross) - 1)
    assert s.strategy.total_return == pytest.approx((1 - 0.0015) * (1 + gross) - 1)
    assert s.strategy.trades == 1 and s.strategy.exposure == 1.0 and s.buy_and_hold.trades == 1
    assert 0 <= s.strategy.max_drawdown < 0.0015  # only the entry cost, partly earned back in the first bar
    assert s.excess_return == pytest.approx(0.0)


def test_sell_goes_flat_or_short_and_hold_keeps_or_closes():
    close = np.array([100.0, 110.0, 99.0, 99.0, 120.0, 120.0])
    history = series(close)
    sigs = signals(history, {0: "BUY", 2: "SELL", 4: "HOLD"})
    free = dict(fees_bps=0, slippage_bps=0, horizon=1, execution="close")
    flat = score(history, sigs, 5, BacktestConfig(**free))
    assert flat.strategy.total_return == pytest.approx(99 / 100 - 1)  # long 0→2, flat after
    short = score(history, sigs, 5, BacktestConfig(**free, short_on_sell=True))
    # long 0→2 (×0.99), short 2→3 (×1), short 3→4 (×(1 − 21/99)), HOLD keeps the short: 4→5 ×1
    assert short.strategy.total_return == pytest.approx(0.99 * (1 - 21 / 99) - 1)
    assert short.strategy.trades == 2 and short.strategy.turnover == pytest.approx(3.0)
    hold_flat = score(history, signals(history, {0: "BUY", 3: "HOLD"}), 5, BacktestConfig(**free, hold_keeps_position=False))
    assert hold_flat.strategy.total_return == pytest.approx(99 / 100 - 1)
    # SELL hit = the close fell over the horizon.
    assert short.directions["SELL"].hits == 0 and short.directions["SELL"].scored == 1  # 99 → 99: not lower
    assert flat.directions["BUY"].hit_rate == 1.0 and flat.directions["HOLD"].mean_forward_return == pytest.approx(0.0)


def test_fees_and_slippage_are_charged_on_every_change_of_position():
    close = np.full(11, 100.0)
    close[1::2] = 101.0  # flat market with wiggles
    history = series(close)
    sigs = signals(history, {i: ("BUY" if i % 2 == 0 else "SELL") for i in range(10)})
    s = score(history, sigs, 10, BacktestConfig(fees_bps=20, slippage_bps=5, horizon=1, execution="close"))
    # Long on even bars (each +1%), flat on odd ones; 10 changes of position at 25 bps each.
    assert s.strategy.trades == 10
    assert s.strategy.total_return == pytest.approx(1.01 ** 5 * (1 - 0.0025) ** 10 - 1)


def test_folds_are_consecutive_cover_every_signal_and_their_spread_is_right():
    rng = np.random.default_rng(5)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, 400))
    history = series(close)
    directions = {i: ("BUY", "SELL", "HOLD")[int(rng.integers(3))] for i in range(100, 400, 2)}
    sigs = signals(history, directions)
    assert [(lo, hi) for lo, hi, _ in fold_bounds(sigs, 399, 3)] == [(0, 50), (50, 100), (100, 150)]
    assert [(lo, hi) for lo, hi, _ in fold_bounds(sigs[:10], 399, 3)] == [(0, 3), (3, 7), (7, 10)]

    result = symbol_result(history, sigs, 399, BacktestConfig(folds=4, horizon=6, execution="close", fees_bps=0, slippage_bps=0), theories=[])
    folds = result.folds
    assert len(folds) == 4 and sum(f.signals for f in folds) == len(sigs)
    for before, after in zip(folds, folds[1:]):
        assert before.end == after.start  # out-of-sample windows, back to back
    assert folds[0].start == result.scores.start and folds[-1].end == result.scores.end
    # Without costs (each fold's buy-and-hold pays its own entry otherwise), buy-and-hold compounds exactly across folds.
    assert np.prod([1 + f.buy_and_hold.total_return for f in folds]) == pytest.approx(1 + result.scores.buy_and_hold.total_return)
    values = [f.strategy.total_return for f in folds]
    sp = result.fold_spread["strategy_return"]
    assert sp.n == 4 and sp.mean == pytest.approx(np.mean(values)) and sp.std == pytest.approx(np.std(values, ddof=1))
    assert sp.min == min(values) and sp.max == max(values)
    assert spread(folds[:1])["strategy_return"].std == 0.0


def test_a_window_carries_no_counts_from_bars_after_it():
    from dataclasses import replace

    from v7.core.backtest import window_at

    full = series(np.linspace(100, 120, 20))
    stamps = full.timestamp.copy()
    stamps[15:] += HOUR  # one missing hour between bars 14 and 15
    history = replace(full, timestamp=stamps, gaps=1, dropped={"non-finite price": 2})
    early, late = window_at(history, 10, 5), window_at(history, 17, 5)
    assert (len(early), early.timestamp[-1]) == (5, stamps[10]) and early.gaps == 0 and early.dropped == {}
    assert late.gaps == 1 and late.timestamp[0] == stamps[13]
    assert window_at(history, 2, 5).timestamp.tolist() == stamps[:3].tolist()
