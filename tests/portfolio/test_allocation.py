"""Known answers of the allocation: analytic minimum-variance weights, caps that always hold, signs kept."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from v7.core.portfolio import PortfolioConfig, aligned_returns, allocate, cap, covariance, inverse_vol, min_variance, weights


def analytic(sigma: np.ndarray) -> np.ndarray:
    raw = np.linalg.solve(sigma, np.ones(sigma.shape[0]))
    return raw / raw.sum()


def brute_force_long_only(sigma: np.ndarray) -> np.ndarray:
    """The long-only optimum by enumeration: the best non-negative unconstrained solution over every support."""
    n = sigma.shape[0]
    best, best_var = None, np.inf
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            idx = list(support)
            raw = np.linalg.solve(sigma[np.ix_(idx, idx)], np.ones(k))
            w = np.zeros(n)
            w[idx] = raw / raw.sum()
            if np.all(w >= -1e-12) and w @ sigma @ w < best_var:
                best, best_var = w, w @ sigma @ w
    return best


def test_two_by_two_matches_the_closed_form():
    s1, s2, rho = 0.04, 0.06, 0.5  # ρ < σ1/σ2: both weights positive
    sigma = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    # w1 = (σ2² − ρσ1σ2) / (σ1² + σ2² − 2ρσ1σ2)
    w1 = (s2**2 - rho * s1 * s2) / (s1**2 + s2**2 - 2 * rho * s1 * s2)
    assert min_variance(sigma) == pytest.approx([w1, 1 - w1], abs=1e-12)
    assert min_variance(sigma) == pytest.approx(analytic(sigma), abs=1e-12)


def test_three_by_three_long_only_case_is_sigma_inverse_one():
    sigma = np.array([[0.040, 0.006, 0.004], [0.006, 0.090, 0.010], [0.004, 0.010, 0.060]])
    expected = analytic(sigma)
    assert np.all(expected > 0)
    assert min_variance(sigma) == pytest.approx(expected, abs=1e-12)


def test_a_negative_analytic_weight_is_solved_long_only():
    # Highly correlated, the second more volatile: Σ⁻¹1 shorts it; long-only puts everything on the first.
    s1, s2, rho = 0.03, 0.06, 0.9
    sigma = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    assert analytic(sigma)[1] < 0
    assert min_variance(sigma) == pytest.approx([1.0, 0.0], abs=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_long_only_weights_equal_the_enumerated_optimum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    factor = rng.normal(size=(n, n)) * rng.uniform(0.1, 2.0, size=n)
    sigma = factor @ factor.T + np.diag(rng.uniform(0.01, 0.5, size=n))
    w = min_variance(sigma)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    best = brute_force_long_only(sigma)
    assert w @ sigma @ w == pytest.approx(best @ sigma @ best, rel=1e-9)
    assert w == pytest.approx(best, abs=1e-7)


def test_inverse_vol_weights():
    sigma = np.diag([0.01, 0.04])  # σ = 0.1, 0.2
    assert inverse_vol(sigma) == pytest.approx([2 / 3, 1 / 3])


def test_allocation_scales_relative_to_equal_weight_and_keeps_signs():
    config = PortfolioConfig(enabled=True, max_symbol=1.0, max_gross=2.0)
    rng = np.random.default_rng(1)
    returns = rng.normal(0, [0.01, 0.03], size=(2000, 2))
    sigma = covariance(returns)
    w = min_variance(sigma)
    out = allocate([0.4, 0.4], returns, config)
    assert out.weights == pytest.approx(w) and w[0] > 0.85  # the calmer symbol carries most of the book
    # Equal proposals, limits not binding: the textbook answer, q_i = p_i · w_i · n (the gross stays 0.8).
    assert out.positions == pytest.approx([0.4 * w[0] * 2, 0.4 * w[1] * 2])
    assert out.positions == pytest.approx(0.8 * analytic(sigma))
    # Unequal proposals: p · w · n would add gross (0.4·2w₀ + 0.3·2w₁ > 0.7); scaled back to the proposed 0.7.
    raw = np.array([0.4 * w[0] * 2, 0.3 * w[1] * 2])
    assert raw.sum() > 0.7
    assert allocate([0.4, 0.3], returns, config).positions == pytest.approx(raw * 0.7 / raw.sum())
    # A short ETH beside a long BTC: the covariance of the returns as held (signs applied) decides.
    hedged = allocate([0.8, -0.6], returns, config)
    assert hedged.positions[0] > 0 > hedged.positions[1]
    assert hedged.weights == pytest.approx(min_variance(covariance(returns * [1, -1])))


def test_symbols_not_held_stay_flat_and_one_held_symbol_is_only_capped():
    config = PortfolioConfig(enabled=True, max_symbol=0.5, max_gross=1.0)
    returns = np.random.default_rng(2).normal(0, 0.01, size=(100, 3))
    out = allocate([0.0, 0.9, 0.0], returns, config)
    assert out.positions == pytest.approx([0.0, 0.5, 0.0]) and out.equal_because == "one symbol held"
    assert np.all(allocate([0.0, 0.0, 0.0], returns, config).positions == 0)


def test_too_few_bars_fall_back_to_equal_weights():
    config = PortfolioConfig(enabled=True, max_symbol=1.0, max_gross=3.0)
    out = allocate([0.3, 0.6, 0.9], np.zeros((2, 3)), config)
    assert out.positions == pytest.approx([0.3, 0.6, 0.9]) and "fewer than the 4" in out.equal_because
    assert allocate([0.3, 0.6], None, config).positions == pytest.approx([0.3, 0.6])


@pytest.mark.parametrize("method", ["min_variance", "inverse_vol", "equal"])
@pytest.mark.parametrize("seed", range(25))
def test_caps_always_hold_and_shorting_off_stays_long(method, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    max_symbol = float(rng.uniform(0.05, 1.0))
    config = PortfolioConfig(enabled=True, method=method, max_symbol=max_symbol, max_gross=float(rng.uniform(max_symbol, 3.0)))
    returns = rng.normal(0, rng.uniform(0.001, 0.05, size=n), size=(int(rng.integers(0, 300)), n))
    longs = rng.uniform(0, 1, size=n) * (rng.uniform(size=n) < 0.7)
    for proposed in (longs, rng.uniform(-1, 1, size=n)):
        q = allocate(proposed, returns, config).positions
        assert np.all(np.abs(q) <= config.max_symbol + 1e-12)
        assert np.abs(q).sum() <= config.max_gross + 1e-12
        assert np.all(q * proposed >= 0) and np.all(q[proposed == 0] == 0)  # no sign flips; flat stays flat
    assert np.all(allocate(longs, returns, config).positions >= 0)


def btc_only_returns(bars: int = 500) -> np.ndarray:
    """ETH moving with BTC at twice its size plus noise: long-only minimum variance puts all the weight on BTC."""
    rng = np.random.default_rng(5)
    btc = rng.normal(0, 0.01, bars)
    return np.column_stack([btc, 2 * btc + rng.normal(0, 0.002, bars)])


def test_the_step_never_takes_a_position_past_its_own_loss_limit():
    """max_position 0.3, loss budget 0.005, CVaR 0.02: each symbol's limit is min(0.3, 0.005 / 0.02) = 0.25,
    and both are sized at it. Weights [1, 0] would double BTC (p · w · n = 0.5: CVaR 0.01, twice the budget)."""
    returns = btc_only_returns()
    config = PortfolioConfig(enabled=True, max_symbol=1.0, max_gross=2.0)
    assert min_variance(covariance(returns)) == pytest.approx([1.0, 0.0], abs=1e-12)
    limit = min(0.3, 0.005 / 0.02)
    out = allocate([0.25, 0.25], returns, config, limits=[limit, limit])
    assert out.positions == pytest.approx([0.25, 0.0])
    assert out.positions[0] * 0.02 <= 0.005 + 1e-15  # the position's CVaR within the loss budget
    assert allocate([0.25, 0.25], returns, config).positions == pytest.approx([0.5, 0.0])  # a limit of 1: the weight acts


def test_the_step_never_raises_the_gross():
    # [0.25, 0.05] with weights [1, 0]: p · w · n = [0.5, 0] has gross 0.5 > 0.3 proposed: scaled to 0.3.
    config = PortfolioConfig(enabled=True, max_symbol=1.0, max_gross=2.0)
    out = allocate([0.25, 0.05], btc_only_returns(), config)
    assert out.positions == pytest.approx([0.3, 0.0])


@pytest.mark.parametrize("method", ["min_variance", "inverse_vol", "equal"])
@pytest.mark.parametrize("seed", range(40))
def test_random_books_keep_every_limit_the_gross_and_the_caps(method, seed):
    """Random proposals, returns (so weights) and own limits ≥ |p|: no |q_i| above its limit, Σ|q| ≤ Σ|p|,
    the caps hold, signs kept, no negative position with shorting off; the limits bind only by clipping."""
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 7))
    max_symbol = float(rng.uniform(0.05, 1.0))
    config = PortfolioConfig(enabled=True, method=method, max_symbol=max_symbol, max_gross=float(rng.uniform(max_symbol, 4.0)))
    returns = rng.normal(0, rng.uniform(0.001, 0.05, size=n), size=(int(rng.integers(0, 300)), n)) + rng.normal(0, 0.01, size=(1, 1))
    longs = rng.uniform(0, 1, size=n) * (rng.uniform(size=n) < 0.8)
    for proposed in (longs, rng.uniform(-1, 1, size=n)):
        limits = np.minimum(1.0, np.abs(proposed) * rng.uniform(1.0, 3.0, size=n))  # a sizing never proposes past its limit
        q = allocate(proposed, returns, config, limits=limits).positions
        assert np.all(np.abs(q) <= limits + 1e-12)
        assert np.abs(q).sum() <= np.abs(proposed).sum() + 1e-12
        assert np.all(np.abs(q) <= config.max_symbol + 1e-12) and np.abs(q).sum() <= config.max_gross + 1e-12
        assert np.all(q * proposed >= 0) and np.all(q[proposed == 0] == 0)
    assert np.all(allocate(longs, returns, config, limits=np.ones(n)).positions >= 0)


@pytest.mark.parametrize("seed", range(10))
def test_limits_that_do_not_bind_leave_the_weighted_book_unchanged(seed):
    """Equal proposals (so the gross is never raised) and limits above p · w · n: exactly p_i · w_i · n,
    the analytic weights of the returns' covariance where they are all positive."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, [0.01, 0.015, 0.02], size=(400, 3))
    sigma = covariance(returns)
    expected = analytic(sigma)
    assert np.all(expected > 0)
    config = PortfolioConfig(enabled=True, max_symbol=1.0, max_gross=3.0)
    out = allocate([0.2, 0.2, 0.2], returns, config, limits=[0.6 * max(expected) + 1e-9] * 3)
    assert out.positions == pytest.approx(0.2 * 3 * expected, abs=1e-12)
    assert out.weights == pytest.approx(weights("min_variance", sigma))


def test_cap_scales_the_gross_after_the_symbol_cap():
    assert cap(np.array([0.9, -0.2, 0.4]), 0.5, 0.8) == pytest.approx(np.array([0.5, -0.2, 0.4]) * 0.8 / 1.1)


def test_aligned_returns_use_only_common_timestamps_and_the_last_bars():
    ts_a = np.array([0, 1, 2, 3, 4, 5])
    ts_b = np.array([1, 2, 4, 5])  # bar 3 missing
    close_a = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    close_b = np.array([10.0, 11.0, 12.1, 13.31])
    out = aligned_returns([ts_a, ts_b], [close_a, close_b], bars=2)
    assert out == pytest.approx(np.array([[3.0, 0.1], [1.0, 0.1]]))  # 2→4 then... common 2, 4, 5: 4→16, 16→32


def test_config_errors_name_the_field():
    with pytest.raises(ValidationError, match="max_symbol"):
        PortfolioConfig(max_symbol=0.8, max_gross=0.5)
    with pytest.raises(ValidationError, match="method"):
        PortfolioConfig(method="kelly")
    assert PortfolioConfig().enabled is False
