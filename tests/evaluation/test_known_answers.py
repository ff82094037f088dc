"""Known answers: no evidence on random walks at about the nominal rate, evidence where structure is planted.

The momentum signal's score (its past 12-bar return) overlaps itself over 12 bars as the forward
returns overlap over `horizon`; a block of exactly `block_length(horizon, step)` leaves the
bootstrap variance about 30% short (measured on these 200 walks of 3,000 bars, horizon 6: 89% "none"
and 88.5% of BUY-edge intervals covering zero; with four times that block: 92% and 95%), so these
tests use blocks of four times `block_length`, which a persistent signal needs.
"""

from __future__ import annotations

import numpy as np
import pytest

from v7.core.evaluation import Interval, block_length, edge, rank_ic, signed_score, verdict

LOOKBACK = 12
BLOCK_FACTOR = 4
RESAMPLES = 300


def ar1_close(seed: int, bars: int, phi: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal(bars) * 0.01
    returns = np.empty(bars)
    previous = 0.0
    for i, shock in enumerate(shocks):
        previous = phi * previous + shock
        returns[i] = previous
    return np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


def momentum(close: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BUY when the past 12-bar return is positive, else SELL (causal), with the forward return; step 1."""
    t = np.arange(LOOKBACK, close.shape[0] - horizon)
    past = close[t] / close[t - LOOKBACK] - 1
    forward = close[t + horizon] / close[t] - 1
    direction = np.where(past > 0, "BUY", "SELL")
    return direction, signed_score(direction, np.abs(past)), forward


def test_random_walks_give_no_evidence_at_about_the_nominal_rate():
    horizon = 6
    block = BLOCK_FACTOR * block_length(horizon, 1)
    kinds, covered = [], []
    for seed in range(200):
        direction, score, forward = momentum(ar1_close(seed, 3000, 0.0), horizon)
        kinds.append(verdict("BTC-USD", rank_ic(score, forward, block, RESAMPLES, seed)).kind)
        covered.append(edge(direction, forward, "BUY", block, RESAMPLES, seed).covers(0.0))
    assert set(kinds) <= {"none", "information", "inverse"}
    assert 0.88 <= kinds.count("none") / 200 <= 0.995
    assert 0.88 <= np.mean(covered) <= 0.995


@pytest.mark.parametrize("phi, kind", [(0.15, "information"), (-0.15, "inverse")])
def test_autocorrelated_returns_are_found_by_momentum(phi, kind):
    direction, score, forward = momentum(ar1_close(1, 20_000, phi), horizon=1)
    ic = rank_ic(score, forward, BLOCK_FACTOR * block_length(1, 1), RESAMPLES, seed=1)
    result = verdict("BTC-USD", ic)
    assert result.kind == kind, result.text
    assert abs(ic.value) > 0.02


def test_a_score_that_peeks_at_the_next_return_carries_information():
    rng = np.random.default_rng(90)  # not the walk's own seed: its noise would be the returns themselves
    close = ar1_close(9, 1500, 0.0)
    forward = close[1:] / close[:-1] - 1
    score = np.sign(forward) + rng.standard_normal(forward.shape[0]) * 3
    result = verdict("pooled", rank_ic(score, forward, 1, RESAMPLES, seed=2))
    assert result.kind == "information" and result.text.startswith("evidence of information (IC +0.")
    assert 0.1 < result.ic.low < result.ic.value < result.ic.high < 0.5


def ic(value, low, high, n=500):
    return Interval(value=value, low=low, high=high, n=n, method="moving-block bootstrap, block 4, 2000 resamples, seed 7")


def test_verdict_texts():
    assert verdict("BTC-USD", ic(0.031, 0.012, 0.05)).text == "evidence of information (IC +0.031 [+0.012, +0.050])"
    inverse = verdict("BTC-USD", ic(-0.04, -0.07, -0.01))
    assert inverse.kind == "inverse" and inverse.text == "evidence of inverse information (IC -0.040 [-0.070, -0.010])"
    none = verdict("pooled", ic(0.004, -0.018, 0.025))
    assert none.kind == "none" and none.scope == "pooled"
    assert none.text == "no evidence of information (IC +0.004 [-0.018, +0.025])"
    assert none.ic.n == 500


def test_verdict_is_insufficient_without_enough_signals():
    assert verdict("ETH-USD", None).kind == "insufficient"
    few = verdict("ETH-USD", ic(0.5, 0.2, 0.8, n=29))
    assert few.kind == "insufficient" and few.text == "insufficient data (29 scored signals)"
    assert verdict("ETH-USD", ic(0.5, 0.2, 0.8, n=30)).kind == "information"
    assert verdict("ETH-USD", Interval(value=None, low=None, high=None, n=400, method="m")).kind == "insufficient"
