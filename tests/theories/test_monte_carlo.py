"""Monte Carlo VaR / CVaR: the analytic normal answer, compounding, flat windows, fat tails, labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

import synthetic
from v7.plugins.theories.monte_carlo import MonteCarlo, simulate, tail_size, var_cvar


def prices_from_simple(simple_returns: np.ndarray, start: float = 100.0):
    return synthetic.series(start * np.concatenate([[1.0], np.cumprod(1.0 + simple_returns)]))


def analytic(mu: float, sigma: float, alpha: float) -> tuple[float, float]:
    z = norm.ppf(alpha)
    return sigma * z - mu, sigma * norm.pdf(z) / (1 - alpha) - mu


def test_tail_size_and_definition():
    assert tail_size(10_000, 0.95) == 500  # not 501 from 1 - 0.95 = 0.05000000000000004
    assert tail_size(10_000, 0.99) == 100
    assert tail_size(20, 0.99) == 1
    outcomes = np.array([-0.05, -0.04, -0.03, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    assert var_cvar(outcomes, 0.8) == pytest.approx((0.04, 0.045))  # worst 2: -5%, -4%


def test_defined_on_a_flat_window_and_never_negative():
    assert var_cvar(np.zeros(10_000), 0.95) == (0.0, 0.0)
    assert var_cvar(np.full(10_000, 0.01), 0.99) == (0.0, 0.0)  # all gains: no loss at this confidence


@pytest.mark.parametrize("alpha", [0.95, 0.99])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_normal_model_matches_the_analytic_formula(alpha, seed):
    simple = np.random.default_rng(seed).normal(0.0003, 0.01, 500)
    theory = MonteCarlo(MonteCarlo.Config(model="normal", confidence_level=alpha, seed=seed))
    f = theory.analyze(prices_from_simple(simple))
    window = np.expm1(np.diff(np.log(np.concatenate([[1.0], np.cumprod(1.0 + simple)]))))
    var, cvar = analytic(float(window.mean()), float(window.std(ddof=1)), alpha)
    # Monte Carlo standard error with 10,000 paths: ~1.3% of VaR at 95%, ~1.6% at 99%; allow 3 of them.
    assert f.metrics["var"] == pytest.approx(var, rel=0.05)
    assert f.metrics["cvar"] == pytest.approx(cvar, rel=0.05)


def test_bootstrap_of_normal_returns_is_close_to_the_analytic_formula():
    errors = []
    for seed in range(20):
        simple = np.random.default_rng(100 + seed).normal(0.0, 0.01, 1000)
        f = MonteCarlo(MonteCarlo.Config(window=1001)).analyze(prices_from_simple(simple))
        var, cvar = analytic(float(simple.mean()), float(simple.std(ddof=1)), 0.95)
        errors.append((f.metrics["var"] / var - 1, f.metrics["cvar"] / cvar - 1))
    errors = np.array(errors)
    # The bootstrap reproduces the SAMPLE's tail (sampling error of a 5% quantile of 1,000 draws ~4%).
    assert np.abs(errors.mean(axis=0)).max() < 0.03
    assert np.abs(errors).max() < 0.15


def test_horizon_compounds():
    one_percent = np.full(50, math.log(1.01))
    outcomes = simulate(one_percent, 10, 1000, "bootstrap", np.random.default_rng(0))
    assert np.allclose(outcomes, 1.01**10 - 1, rtol=1e-12)
    rng_returns = np.random.default_rng(5).normal(0.0, 0.03, 400)
    outcomes = simulate(rng_returns, 30, 20_000, "bootstrap", np.random.default_rng(1))
    picks = np.random.default_rng(1).integers(0, 400, size=(20_000, 30))
    assert np.allclose(outcomes, np.prod(np.exp(rng_returns[picks]), axis=1) - 1)
    assert outcomes.min() > -1.0  # compounding can never lose more than everything


def test_longer_horizon_has_more_risk():
    simple = np.random.default_rng(8).normal(0.0, 0.01, 500)
    candles = prices_from_simple(simple)
    one = MonteCarlo().analyze(candles).metrics["var"]
    day = MonteCarlo(MonteCarlo.Config(horizon=24)).analyze(candles).metrics["var"]
    assert day == pytest.approx(one * math.sqrt(24), rel=0.2)


def test_bootstrap_keeps_fat_tails_a_normal_fit_loses():
    ratios = []
    for seed in range(10):
        simple = np.random.default_rng(200 + seed).standard_t(3, 1000) * 0.006
        candles = prices_from_simple(simple)
        boot = MonteCarlo(MonteCarlo.Config(window=1001, confidence_level=0.99)).analyze(candles)
        normal = MonteCarlo(MonteCarlo.Config(window=1001, confidence_level=0.99, model="normal")).analyze(candles)
        ratios.append(boot.metrics["cvar"] / normal.metrics["cvar"])
    assert np.mean(ratios) > 1.15


def test_seeded():
    candles = prices_from_simple(np.random.default_rng(3).normal(0.0, 0.01, 500))
    a = MonteCarlo().analyze(candles)
    b = MonteCarlo().analyze(candles)
    c = MonteCarlo(MonteCarlo.Config(seed=8)).analyze(candles)
    assert a == b
    # VaR is an order statistic of draws from 499 returns, so it can coincide; the tail mean does not.
    assert a.metrics["cvar"] != c.metrics["cvar"]
    assert c.metrics["var"] == pytest.approx(a.metrics["var"], rel=0.1)


@pytest.mark.parametrize("sigma,label", [(0.002, "low"), (0.008, "moderate"), (0.015, "high"), (0.04, "extreme")])
def test_labels_follow_var(sigma, label):
    f = MonteCarlo().analyze(prices_from_simple(np.random.default_rng(4).normal(0.0, sigma, 500)))
    assert f.label == label
    assert f.bias is None
    assert 0 < f.metrics["var"] <= f.metrics["cvar"]


def test_all_up_window_has_no_var_but_a_positive_expected_return():
    simple = np.random.default_rng(6).uniform(0.001, 0.01, 300)
    f = MonteCarlo().analyze(prices_from_simple(simple))
    assert f.metrics["var"] == 0.0 and f.metrics["cvar"] == 0.0
    assert f.metrics["expected_return"] > 0 and f.label == "low"


def test_confidence_reflects_the_historical_tail():
    candles = prices_from_simple(np.random.default_rng(9).normal(0.0, 0.01, 500))
    assert MonteCarlo().analyze(candles).confidence == 1.0  # ~25 returns beyond the 95% VaR
    # 499 returns x 1% = ~5 in the 99% tail, of the 20 wanted.
    assert MonteCarlo(MonteCarlo.Config(confidence_level=0.99)).analyze(candles).confidence == pytest.approx(499 * 0.01 / 20)
