"""The execution model: decisions on the closed bar, filled at the next open (default) or the close, later by
`delay_bars`; every change of position pays fees and slippage, buy-and-hold's entry included."""

from __future__ import annotations

import numpy as np
import pytest

from v7.core.backtest import BarSignal, score
from v7.core.config import BacktestConfig
from v7.core.models import CandleSeries

T0, HOUR = 1_700_000_000, 3600


def candles(open_, close) -> CandleSeries:
    open_, close = np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    return CandleSeries(
        symbol="TEST-USD", granularity="1h", timestamp=T0 + HOUR * np.arange(n, dtype=np.int64),
        open=open_, high=np.maximum(open_, close), low=np.minimum(open_, close), close=close, volume=np.ones(n),
    )


def signal(history: CandleSeries, index: int, direction: str) -> BarSignal:
    return BarSignal(index=index, timestamp=int(history.timestamp[index]), price=float(history.close[index]),
                     direction=direction, confidence=1.0, synthesizer="test", fallback_reason=None, theories=())


# Opens differ from the previous closes, so each convention gives a different, hand-computable answer.
OPEN = [100.0, 101.0, 104.0, 99.0, 108.0, 111.0]
CLOSE = [100.0, 102.0, 100.0, 106.0, 110.0, 109.0]


def test_next_open_fills_at_the_following_bars_open():
    history = candles(OPEN, CLOSE)
    sigs = [signal(history, 0, "BUY"), signal(history, 3, "SELL")]
    s = score(history, sigs, 5, BacktestConfig(horizon=1, fees_bps=0, slippage_bps=0))  # next_open is the default
    # Bought at open[1] = 101, sold at open[4] = 108.
    assert s.strategy.total_return == pytest.approx(108 / 101 - 1)
    assert s.strategy.trades == 2 and s.strategy.turnover == pytest.approx(2.0)
    # Buy-and-hold enters at the same first fill, open[1], and is marked at the last close.
    assert s.buy_and_hold.total_return == pytest.approx(109 / 101 - 1)


def test_close_execution_fills_at_the_decision_bars_close():
    history = candles(OPEN, CLOSE)
    sigs = [signal(history, 0, "BUY"), signal(history, 3, "SELL")]
    s = score(history, sigs, 5, BacktestConfig(horizon=1, fees_bps=0, slippage_bps=0, execution="close"))
    assert s.strategy.total_return == pytest.approx(106 / 100 - 1)  # bought at close[0], sold at close[3]
    assert s.buy_and_hold.total_return == pytest.approx(109 / 100 - 1)


@pytest.mark.parametrize(("execution", "bought", "sold"), [("next_open", 104.0, 111.0), ("close", 102.0, 110.0)])
def test_delay_bars_moves_every_fill_later(execution, bought, sold):
    history = candles(OPEN, CLOSE)
    sigs = [signal(history, 0, "BUY"), signal(history, 3, "SELL")]
    s = score(history, sigs, 5, BacktestConfig(horizon=1, fees_bps=0, slippage_bps=0, execution=execution, delay_bars=1))
    assert s.strategy.total_return == pytest.approx(sold / bought - 1)


def test_costs_are_charged_on_every_change_and_on_buy_and_hold():
    history = candles(OPEN, CLOSE)
    sigs = [signal(history, 0, "BUY"), signal(history, 3, "SELL")]
    cost = (10 + 5) / 10_000
    s = score(history, sigs, 5, BacktestConfig(horizon=1, fees_bps=10, slippage_bps=5))
    assert s.strategy.total_return == pytest.approx((1 - cost) ** 2 * 108 / 101 - 1)
    assert s.buy_and_hold.total_return == pytest.approx((1 - cost) * 109 / 101 - 1)
    assert s.buy_and_hold.trades == 1


def test_a_short_flip_trades_two_units_at_the_open():
    history = candles(OPEN, CLOSE)
    sigs = [signal(history, 0, "BUY"), signal(history, 3, "SELL")]
    s = score(history, sigs, 5, BacktestConfig(horizon=1, fees_bps=0, slippage_bps=0, short_on_sell=True))
    # Long from open[1] to open[4] (close to close in between), then short from open[4], rebalanced at each close.
    long_leg = 108 / 101
    short_leg = (1 - (110 / 108 - 1)) * (1 - (109 / 110 - 1))
    assert s.strategy.total_return == pytest.approx(long_leg * short_leg - 1)
    assert s.strategy.turnover == pytest.approx(3.0)


def test_a_decision_on_the_last_bar_is_never_filled():
    history = candles(OPEN, CLOSE)
    s = score(history, [signal(history, 0, "HOLD"), signal(history, 5, "BUY")], 5, BacktestConfig(horizon=1))
    assert s.strategy.total_return == 0.0 and s.strategy.trades == 0 and s.strategy.exposure == 0.0


@pytest.mark.parametrize("lag", [0, 1, 3, 50])
def test_the_position_in_force_carries_the_last_decision_forward(lag):
    """`in_force`, step by step: before the first decision (lag bars late) flat, then each bar holds the
    latest decision made up to it; NaN = no decision at that bar."""
    from v7.core.backtest.execution import in_force

    rng = np.random.default_rng(lag)
    decided = rng.choice([np.nan, np.nan, -1.0, 0.0, 0.5, 1.0], size=40)
    expected, current = [], 0.0
    for i in range(40):
        if i >= lag and not np.isnan(decided[i - lag]):
            current = decided[i - lag]
        expected.append(current)
    assert in_force(decided, lag).tolist() == expected
    assert in_force(np.full(5, np.nan), 0).tolist() == [0.0] * 5
