"""Known answer: Kelly on synthetic bets with a known edge converges to the analytic fraction.

A bet is won with probability p and then pays b per unit staked; lost, it costs the stake. The
fraction estimated from n simulated outcomes, f̂ = p̂ − (1 − p̂)/b̂ (p̂ the share of wins, b̂ the mean
gain over the mean loss), must close in on f* = p − (1 − p)/b at the 1/√n rate, and the fraction
that maximises the log growth of those same outcomes, found numerically, must agree with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from v7.core.sizing.rule import kelly

BETS = [(0.55, 1.0), (0.6, 1.5), (0.4, 2.0), (0.7, 0.8)]
SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)


def outcomes(p: float, b: float, n: int, seed: int) -> np.ndarray:
    """n bets: +b per unit staked with probability p, −1 otherwise."""
    return np.where(np.random.default_rng(seed).random(n) < p, b, -1.0)


def estimated(x: np.ndarray) -> float:
    """Kelly from the outcomes alone: their win rate and their payoff ratio."""
    wins, losses = x[x > 0], x[x < 0]
    return kelly(wins.size / x.size, wins.mean() / -losses.mean())


def growth_optimal(x: np.ndarray) -> float:
    """argmax over f in [0, 1) of the mean log growth (1/n) Σ log(1 + f·x_i) of the outcomes, numerically."""
    found = minimize_scalar(lambda f: -np.log1p(f * x).mean(), bounds=(0.0, 1.0 - 1e-9), method="bounded", options={"xatol": 1e-10})
    assert found.success
    return float(found.x)


@pytest.mark.parametrize("p, b", BETS)
def test_estimated_kelly_converges_to_the_analytic_fraction(p, b):
    """The error of f̂ shrinks as 1/√n: its mean over 20 samples is about E|N(0, 1)|·σ_f/√n, where
    σ_f = √(p(1 − p))·(1 + 1/b) (f̂ moves with p̂ only: b̂ = b for a fixed payoff)."""
    analytic = p - (1 - p) / b
    sigma_f = math.sqrt(p * (1 - p)) * (1 + 1 / b)
    errors = []
    for n in SIZES:
        error = np.mean([abs(estimated(outcomes(p, b, n, seed)) - analytic) for seed in range(20)])
        expected = math.sqrt(2 / math.pi) * sigma_f / math.sqrt(n)
        assert error == pytest.approx(expected, rel=0.4), n  # the 1/√n rate, not merely "smaller"
        errors.append(error)
    assert all(a > c for a, c in zip(errors, errors[1:]))
    assert abs(estimated(outcomes(p, b, 4_000_000, 99)) - analytic) < 0.002


@pytest.mark.parametrize("p, b", BETS)
def test_the_numerical_growth_optimum_of_the_outcomes_agrees_and_converges(p, b):
    """On the very outcomes simulated, the fraction maximising their log growth is the estimated Kelly
    fraction (to the optimiser's tolerance), so it converges to the analytic f* with it."""
    analytic = p - (1 - p) / b
    assert analytic > 0  # a positive edge: the optimum is inside [0, 1)
    gaps = []
    for n in (1_000, 100_000, 1_000_000):
        x = outcomes(p, b, n, seed=n)
        optimum = growth_optimal(x)
        assert optimum == pytest.approx(estimated(x), abs=1e-6)
        gaps.append(abs(optimum - analytic))
    assert gaps[-1] < 5 * math.sqrt(p * (1 - p)) * (1 + 1 / b) / math.sqrt(1_000_000)
    assert gaps[-1] < gaps[0]


def test_random_payoffs_the_estimate_converges_and_half_kelly_stays_below_the_growth_optimum():
    """Wins of random size (exponential, mean 2u) against losses of u, as the rule sees returns: the
    estimate from the outcomes converges to p − (1 − p)/b of the true p and b = 2. That two-outcome
    fraction overstates the growth optimum of such outcomes (their spread costs growth), while half
    Kelly, the default, stays below it: the rule's fraction is not an over-bet."""
    p, u = 0.45, 0.1
    analytic = kelly(p, 2.0)  # b = E gain / E loss = 2u / u
    for n, tolerance in ((10_000, 0.03), (1_000_000, 0.003)):
        rng = np.random.default_rng(n)
        x = np.where(rng.random(n) < p, rng.exponential(2 * u, n), -u) / u  # per unit at risk
        assert estimated(x) == pytest.approx(analytic, abs=tolerance)
    optimum = growth_optimal(x)
    assert 0.5 * estimated(x) < optimum < estimated(x)
