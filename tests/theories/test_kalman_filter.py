"""Kalman filter: equal to pykalman, right about trend direction, blind to the price level."""

from __future__ import annotations

import math

import numpy as np
import pytest

import synthetic
from v7.plugins.theories._common import robust_std
from v7.plugins.theories.kalman_filter import KalmanFilter, constant_velocity_filter

F = [[1.0, 1.0], [0.0, 1.0]]
H = [[1.0, 0.0]]


def prices(returns: np.ndarray, start: float = 100.0):
    return synthetic.series(synthetic.prices_from_log_returns(returns, start))


@pytest.mark.parametrize("source", ["btc", "synthetic_60000"])
def test_equals_pykalman(source, btc_candles):
    from pykalman import KalmanFilter as PyKalman

    theory = KalmanFilter()
    if source == "btc":
        close = btc_candles.close[-theory.config.window:]
    else:
        close = synthetic.prices_from_log_returns(synthetic.white_noise(499, 5) + 0.0005, 60000.0)
    log_price = np.log(close)
    sigma = robust_std(np.diff(log_price))
    q_level, q_velocity, r = theory.noise(sigma)
    path = []
    last = constant_velocity_filter(
        log_price.tolist(), q_level, q_velocity, r, float(log_price[0]), 0.0, sigma**2, sigma**2, path=path
    )
    reference = PyKalman(
        transition_matrices=F,
        observation_matrices=H,
        transition_covariance=np.diag([q_level, q_velocity]),
        observation_covariance=[[r]],
        initial_state_mean=[log_price[0], 0.0],
        initial_state_covariance=np.diag([sigma**2, sigma**2]),
    )
    means, covariances = reference.filter(log_price)
    ours_means = np.array([[s.level, s.velocity] for s in path])
    ours_cov = np.array([[[s.p00, s.p01], [s.p01, s.p11]] for s in path])
    assert np.abs(ours_means - means).max() < 1e-9
    assert np.abs(ours_cov - covariances).max() < 1e-9
    # The theory reports exactly this last state.
    finding = theory.analyze(synthetic.series(close))
    assert finding.metrics["filtered_price"] == pytest.approx(math.exp(last.level), rel=1e-12)
    assert finding.metrics["velocity_z"] == pytest.approx(last.velocity / math.sqrt(last.p11), rel=1e-12)


@pytest.mark.parametrize(
    "drift,right_sign,trend_label",
    [(0.003, 0.97, 0.85), (-0.003, 0.97, 0.85), (0.002, 0.90, 0.60), (-0.002, 0.90, 0.60)],
)
def test_velocity_sign_on_noisy_trends(drift, right_sign, trend_label):
    """Drifts of 0.3% and 0.2% per bar under 1% noise per bar (signal/noise 0.3 and 0.2 per bar)."""
    theory = KalmanFilter()
    results = [theory.analyze(prices(synthetic.white_noise(600, 400 + s) + drift)) for s in range(100)]
    right = sum(np.sign(f.metrics["velocity"]) == np.sign(drift) for f in results) / len(results)
    assert right >= right_sign, right
    assert all(np.sign(f.bias) == np.sign(f.metrics["velocity_z"]) for f in results)
    trend_labels = ("up", "strong_up") if drift > 0 else ("down", "strong_down")
    assert sum(f.label in trend_labels for f in results) / len(results) >= trend_label


def test_random_walk_mostly_flat():
    theory = KalmanFilter()
    results = [theory.analyze(prices(synthetic.white_noise(600, 900 + s))) for s in range(200)]
    z = np.array([f.metrics["velocity_z"] for f in results])
    assert abs(z.mean()) < 0.2 and 0.5 < z.std() < 1.1
    assert sum(f.label == "flat" for f in results) >= 0.7 * len(results)
    assert sum(f.label.startswith("strong") for f in results) <= 0.05 * len(results)


def test_same_answer_at_60000_and_at_one_cent():
    theory = KalmanFilter()
    returns = synthetic.white_noise(800, 77) + 0.001
    high = theory.analyze(prices(returns, 60000.0))
    low = theory.analyze(prices(returns, 0.01))
    assert high.label == low.label
    assert high.bias == pytest.approx(low.bias, abs=1e-9)
    assert high.confidence == pytest.approx(low.confidence, abs=1e-9)
    for key in ("velocity", "velocity_z", "velocity_se", "deviation", "return_std"):
        assert high.metrics[key] == pytest.approx(low.metrics[key], rel=1e-9, abs=1e-15)
    assert high.metrics["filtered_price"] / low.metrics["filtered_price"] == pytest.approx(6e6, rel=1e-9)


def test_starts_from_the_first_observation():
    """pykalman's default start (0, 0) puts the level 100% off on BTC; ours starts at the first close."""
    path = []
    constant_velocity_filter([math.log(90000.0)] * 3, 1e-4, 1e-8, 1e-5, math.log(90000.0), 0.0, 1e-4, 1e-4, path=path)
    assert math.exp(path[0].level) == pytest.approx(90000.0, rel=1e-12)
    assert path[0].velocity == 0.0


def test_labels_follow_the_thresholds():
    theory = KalmanFilter(KalmanFilter.Config(up_z=0.5, strong_z=3.0, bias_scale=1.0))
    for s, drift in enumerate([-0.01, -0.001, 0.0, 0.001, 0.01]):
        f = theory.analyze(prices(synthetic.white_noise(600, s) + drift))
        z = f.metrics["velocity_z"]
        expected = "strong_up" if z >= 3 else "up" if z >= 0.5 else "strong_down" if z <= -3 else "down" if z <= -0.5 else "flat"
        assert f.label == expected
        assert f.bias == pytest.approx(math.tanh(z))
