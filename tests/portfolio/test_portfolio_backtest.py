"""The portfolio backtest's arithmetic on synthetic candles: the basket, the unsized book, the step, no lookahead."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from v7.core.backtest import BarSignal, buy_and_hold, follow
from v7.core.backtest.portfolio import book_of, curves, portfolio_result, sized_decisions, stepped
from v7.core.config import BacktestConfig
from v7.core.models import CandleSeries
from v7.core.portfolio import PortfolioConfig

T0, HOUR = 1_700_006_400, 3600
COSTS = BacktestConfig(fees_bps=10, slippage_bps=5)


def history(symbol: str, seed: int, n: int = 600, vol: float = 0.01, skip: tuple[int, ...] = ()) -> CandleSeries:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * (1 + rng.normal(0, vol / 4, n))
    keep = np.setdiff1d(np.arange(n), skip)
    return CandleSeries(
        symbol=symbol, granularity="1h", timestamp=(T0 + HOUR * np.arange(n, dtype=np.int64))[keep], open=open_[keep],
        high=np.maximum(open_, close)[keep], low=np.minimum(open_, close)[keep], close=close[keep], volume=np.ones(keep.size),
    )


def signals_of(h: CandleSeries, seed: int, every: int = 6, start: int = 100) -> list[BarSignal]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(start, len(h), every):
        direction = str(rng.choice(["BUY", "SELL", "HOLD"]))
        position = float(rng.uniform(0.1, 1.0)) if direction == "BUY" else 0.0
        out.append(BarSignal(index=t, timestamp=int(h.timestamp[t]), price=float(h.close[t]), direction=direction, confidence=0.5,
                             synthesizer="test", fallback_reason=None, theories=(), position=position))
    return out


@pytest.fixture
def pair():
    histories = {"BTC-USD": history("BTC-USD", 1, vol=0.01), "ETH-USD": history("ETH-USD", 2, vol=0.02)}
    signals = {s: signals_of(h, 10 + i) for i, (s, h) in enumerate(histories.items())}
    lasts = {s: len(h) - 1 for s, h in histories.items()}
    return histories, signals, lasts


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_the_basket_is_the_mean_of_the_buy_and_holds_net_of_costs(pair, execution):
    histories, signals, lasts = pair
    settings = COSTS.model_copy(update={"execution": execution})
    book = book_of(histories, signals, lasts, list(histories))
    first = 100
    basket = curves(book, first, book.last, settings, PortfolioConfig())["basket"]
    each = [np.cumprod(1 + buy_and_hold(h, first, lasts[s], settings).returns) for s, h in histories.items()]
    assert np.cumprod(1 + basket.returns) == pytest.approx(np.mean(each, axis=0), rel=1e-12)
    assert basket.traded.sum() == pytest.approx(1.0)  # each half bought once, never rebalanced


def test_the_basket_by_hand():
    # A doubles, B stays flat; bought at the first close, 15 bps on entry: ((1 − c)·2 + (1 − c)·1) / 2 − 1.
    a = dataclasses.replace(history("AAA-USD", 1, n=3), close=np.array([10.0, 15.0, 20.0]), open=np.array([10.0, 10.0, 15.0]))
    b = dataclasses.replace(history("BBB-USD", 2, n=3), close=np.array([5.0, 5.0, 5.0]), open=np.array([5.0, 5.0, 5.0]))
    book = book_of({"A": a, "B": b}, {"A": [], "B": []}, {"A": 2, "B": 2}, ["A", "B"])
    basket = curves(book, 0, 2, COSTS.model_copy(update={"execution": "close"}), PortfolioConfig())["basket"]
    c = 15 / 10_000
    assert np.prod(1 + basket.returns) - 1 == pytest.approx(((1 - c) * 2 + (1 - c) * 1) / 2 - 1)


def test_the_unsized_book_is_the_mean_of_the_per_symbol_strategies_without_costs(pair):
    histories, signals, lasts = pair
    settings = BacktestConfig(fees_bps=0, slippage_bps=0, execution="close")  # no cost, close fills: returns add up linearly
    book = book_of(histories, signals, lasts, list(histories))
    unsized = curves(book, 100, book.last, settings, PortfolioConfig())["unsized"]
    each = [follow(h, signals[s], 100, lasts[s], settings).returns for s, h in histories.items()]
    assert unsized.returns == pytest.approx(np.mean(each, axis=0), abs=1e-15)


def test_equal_weights_with_loose_caps_fill_the_sized_positions_themselves(pair):
    histories, signals, lasts = pair
    symbols = ["BTC-USD"]
    book = book_of(histories, signals, lasts, symbols)
    loose = PortfolioConfig(method="equal", max_symbol=1.0, max_gross=1.0)
    book_curves = curves(book, 100, book.last, COSTS, loose)["portfolio"]
    # One symbol, weight 1, caps that never bind: the book holds each signal's own position.
    held = book_curves.held[0]
    for s in signals["BTC-USD"]:
        if s.direction != "HOLD" and s.index + 1 <= book.last:
            assert held[s.index + 1 - 100] == pytest.approx(s.position)


def test_the_step_keeps_the_caps_at_every_bar_and_moves_weight_to_the_calmer_symbol(pair):
    histories, signals, lasts = pair
    for s in signals:  # both long at every signal: the allocation alone decides the split
        signals[s] = [dataclasses.replace(x, direction="BUY", position=0.9) for x in signals[s]]
    config = PortfolioConfig(method="min_variance", covariance_bars=200, max_symbol=0.8, max_gross=1.0)
    result = portfolio_result(histories, signals, lasts, list(histories), COSTS, config)
    book = book_of(histories, signals, lasts, list(histories))
    portfolio = curves(book, 100, book.last, COSTS, config)["portfolio"]
    assert np.all(np.abs(portfolio.held) <= 0.8 + 1e-12) and np.all(portfolio.gross <= 1.0 + 1e-12)
    assert result.mean_weight["BTC-USD"] > 0.7 > result.mean_weight["ETH-USD"]  # BTC's returns are half as volatile here
    assert result.mean_position["BTC-USD"] > result.mean_position["ETH-USD"]
    unsized = curves(book, 100, book.last, COSTS, config)["unsized"]
    assert not np.allclose(portfolio.held, unsized.held)


def test_decisions_never_see_later_bars(pair):
    histories, signals, lasts = pair
    config = PortfolioConfig(covariance_bars=150)
    book = book_of(histories, signals, lasts, list(histories))
    t = 400
    changed = {s: dataclasses.replace(h, close=np.concatenate([h.close[:t + 1], h.close[t + 1:] * 3.0])) for s, h in histories.items()}
    other = book_of(changed, signals, lasts, list(histories))
    proposed = np.vstack([sized_decisions(s, 100, book.last, True) for s in book.signals])
    a, _ = stepped(book, proposed, 100, config)
    b, _ = stepped(other, proposed, 100, config)
    upto = t - 100 + 1
    assert np.array_equal(a[:, :upto], b[:, :upto], equal_nan=True)
    assert not np.array_equal(a[:, upto:], b[:, upto:], equal_nan=True)


def test_signals_on_bars_another_symbol_lacks_are_dropped_and_folds_start_flat(pair):
    histories, signals, lasts = pair
    histories["ETH-USD"] = history("ETH-USD", 2, vol=0.02, skip=(106, 107))
    signals["ETH-USD"] = signals_of(histories["ETH-USD"], 11)
    lasts["ETH-USD"] = len(histories["ETH-USD"]) - 1
    result = portfolio_result(histories, signals, lasts, list(histories), COSTS.model_copy(update={"folds": 3}), PortfolioConfig())
    assert result.dropped_signals >= 1
    assert len(result.folds) == 3
    assert [f.start for f in result.folds] == sorted(f.start for f in result.folds)
    assert result.folds[0].start == result.overall.start and result.folds[-1].end == result.overall.end
    for fold in result.folds:
        assert fold.basket.turnover == pytest.approx(1.0)  # each fold buys its basket afresh


def forward_filled(matrix: np.ndarray, start: float) -> np.ndarray:
    out, current = np.empty_like(matrix), np.full(matrix.shape[0], start)
    for j in range(matrix.shape[1]):
        current = np.where(np.isfinite(matrix[:, j]), matrix[:, j], current)
        out[:, j] = current
    return out


@pytest.mark.parametrize("seed", range(5))
def test_the_backtest_step_keeps_each_symbol_within_its_own_limit_and_the_proposed_gross(pair, seed):
    """Random limits ≥ each proposal, loose caps: at every decision the book's |q_i| ≤ the limit in force and
    Σ|q| ≤ Σ|p| of the proposals in force; BTC, the calmer, is lifted up to its limit, never past it."""
    histories, signals, lasts = pair
    rng = np.random.default_rng(seed)
    for s in signals:
        signals[s] = [dataclasses.replace(x, limit=min(1.0, x.position * float(rng.uniform(1.0, 1.5))) if x.position else 1.0)
                      for x in signals[s]]
    config = PortfolioConfig(method="min_variance", covariance_bars=200, max_symbol=1.0, max_gross=2.0)
    book = book_of(histories, signals, lasts, list(histories))
    proposed = np.vstack([sized_decisions(s, 100, book.last, True) for s in book.signals])
    limits = np.vstack([sized_decisions(s, 100, book.last, True, "limit") for s in book.signals])
    decided, _ = stepped(book, proposed, 100, config, limits)
    at = np.flatnonzero(np.any(np.isfinite(proposed), axis=0))
    p, lim = forward_filled(proposed, 0.0)[:, at], forward_filled(limits, 1.0)[:, at]
    q = decided[:, at]
    assert np.all(np.abs(q) <= lim + 1e-12) and np.all(np.abs(q).sum(axis=0) <= np.abs(p).sum(axis=0) + 1e-12)
    assert np.all(q >= 0)  # shorting off in these signals: no negative position
    assert np.any((q[0] > p[0] + 1e-9) & np.isclose(q[0], lim[0]))  # lifted by its weight, stopped at its limit
    unlimited, _ = stepped(book, proposed, 100, config)  # limits of 1: the weights alone would go past them
    assert np.any(np.abs(unlimited[:, at]) > lim + 1e-9)


def test_backtest_signals_carry_their_sizing_limit_and_the_book_keeps_it(tmp_path):
    """A real backtest with monte_carlo's CVaR and a binding loss budget: each BarSignal.limit is
    min(max_position, loss_budget / CVaR) of its own bar, and no position of the book goes past it."""
    from v7.core.backtest import run_backtest
    from v7.core.backtest.portfolio import portfolio_result
    from v7.core.config import validate_config
    from v7.core.engine import Pipeline
    from v7.core.sizing.rule import tail_loss
    from portfolio_plugins import make_registry

    registry = make_registry()
    cfg = validate_config({
        "engine": {"symbols": ["BTC-USD", "ETH-USD"], "lookback": 300},
        "theories": {"enabled": ["hurst_exponent", "monte_carlo"]},
        "synthesizer": {"use": "always_buy"},
        "sinks": {"enabled": []},
        "backtest": {"step": 12, "workers": 1, "feature_cache": ""},
        "sizing": {"uncalibrated_fraction": 1.0, "target_volatility": 10.0, "max_position": 0.8, "loss_budget": 0.004},
    }, registry)
    from v7.core.candles import read_candles_csv
    from helpers import REPO

    csv = {s: read_candles_csv(REPO / "data" / "candles" / f"{s}.csv", s) for s in ("BTC-USD", "ETH-USD")}
    end = int(csv["ETH-USD"].timestamp[-1])  # the same 900 hours for both (ETH's history ends first)
    histories = {s: c.slice(0, int(np.searchsorted(c.timestamp, end, side="right"))).tail(900) for s, c in csv.items()}
    run = run_backtest(cfg, registry, histories=histories)
    pipeline = Pipeline.build(cfg, registry, kinds=("theory",))
    for symbol, bars in run.signals.items():
        buys = [b for b in bars if b.direction == "BUY"][:3]
        assert buys
        for bar in buys:
            window = run.histories[symbol].slice(bar.index + 1 - 300, bar.index + 1)
            cvar, _ = tail_loss(pipeline.analyze(window), pipeline.theories)
            assert bar.limit == pytest.approx(min(0.8, 0.004 / cvar)) and bar.position == pytest.approx(bar.limit)
    config = PortfolioConfig(method="min_variance", covariance_bars=200, max_symbol=1.0, max_gross=2.0)
    symbols = list(run.signals)
    book = book_of(run.histories, run.signals, run.lasts, symbols)
    first = min(b.index for bars in book.signals for b in bars)
    proposed = np.vstack([sized_decisions(s, first, book.last, True) for s in book.signals])
    limits = np.vstack([sized_decisions(s, first, book.last, True, "limit") for s in book.signals])
    at = np.flatnonzero(np.any(np.isfinite(proposed), axis=0))
    in_force = forward_filled(limits, 1.0)[:, at]
    decided, _ = stepped(book, proposed, first, config, limits)
    assert np.all(np.abs(decided[:, at]) <= in_force + 1e-12)
    assert np.any(np.abs(stepped(book, proposed, first, config)[0][:, at]) > in_force + 1e-9)  # without them: past the budget
    held = curves(book, first, book.last, run.settings, config)["portfolio"].held  # what the backtest holds: the same book
    assert np.all(np.abs(held) <= in_force.max(axis=1, keepdims=True) + 1e-12)
    assert portfolio_result(run.histories, run.signals, run.lasts, symbols, run.settings, config).overall.portfolio.bars > 0
