"""The Platt step of `learned`'s calibration: outcomes counted by their autocorrelation time, a slice with few
independent outcomes shrunk towards the training window's base rate, the slope scaled by its reliability."""

from __future__ import annotations

import numpy as np
import pytest

from v7.plugins.synthesizers.learned.model import _logit, _platt, _sigmoid, autocorrelation_time


def test_the_autocorrelation_time_counts_rows_per_independent_outcome():
    rng = np.random.default_rng(1)
    assert autocorrelation_time((rng.random(20_000) < 0.5).astype(float)) == pytest.approx(1.0, abs=0.1)
    # Signs of 6-bar sums of i.i.d. steps, one per bar: consecutive labels share most of their outcome (τ ≈ 4 measured, ≤ 6).
    steps = rng.standard_normal(20_006)
    overlapping = (np.convolve(steps, np.ones(6), "valid")[:20_000] > 0).astype(float)
    assert 3 < autocorrelation_time(overlapping) < 7
    # A persistent regime (kept with probability 0.99) sets the outcome's mean 0.75 or 0.25: ρ_k = 0.25 × 0.98^k,
    # so τ = 1 + 2 × 0.25 × 0.98 / 0.02 ≈ 25.5 rows per independent outcome.
    states = np.cumsum(rng.random(20_000) > 0.99) % 2
    persistent = (rng.random(20_000) < np.where(states == 0, 0.75, 0.25)).astype(float)
    assert 15 < autocorrelation_time(persistent) < 40
    assert autocorrelation_time(np.ones(100)) == 1.0  # no variation: nothing to count


def test_platt_recovers_a_known_map_from_many_independent_outcomes():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1, 50_000)
    y = (rng.random(z.shape[0]) < _sigmoid(0.6 * z - 0.2)).astype(float)
    a, b = _platt(z, y, 1.0, prior=0.0)
    assert a == pytest.approx(0.6, abs=0.03) and b == pytest.approx(-0.2, abs=0.03)


def test_few_independent_outcomes_stay_near_the_window_s_base_rate():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 0.3, 250)
    y = (rng.random(250) < 0.8).astype(float)  # a slice of one up regime: 80% up whatever the score
    prior = float(_logit(np.array([0.5]))[0])
    free_a, free_b = _platt(z, y, 1.0, prior)
    few_a, few_b = _platt(z, y, 1.0 / 60, prior)  # the same rows counted as ~4 outcomes
    assert _sigmoid(np.array([free_b]))[0] > 0.7  # counted as 250 outcomes it follows the slice
    assert _sigmoid(np.array([few_b]))[0] < _sigmoid(np.array([free_b]))[0] - 0.1  # pulled towards the window's 0.5
    assert few_a == 0.0  # and no slope it cannot tell from zero


def test_the_slope_is_scaled_by_its_reliability():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 0.5, 2_000)
    y = (rng.random(z.shape[0]) < _sigmoid(0.3 * z)).astype(float)
    a, _ = _platt(z, y, 1.0, 0.0)
    # The estimate's own standard error here is ~0.09: the slope is shrunk by 1 − se²/a², not to zero.
    estimates = []
    for seed in range(40):
        r = np.random.default_rng(100 + seed)
        yy = (r.random(z.shape[0]) < _sigmoid(0.3 * z)).astype(float)
        estimates.append(_platt(z, yy, 1.0, 0.0)[0])
    # Shrunk estimates are on average at most the true slope (unshrunk ones average about it), never negative.
    assert 0 < a < 0.6 and np.mean(estimates) < 0.3 and min(estimates) >= 0
