"""The batch paths (`analyze_batch`) of hurst_exponent, kalman_filter and shannon_entropy equal `analyze` bar by bar:
real BTC and ETH candles, windows shorter than the lookback, a gap, flat, stale, ramped and broken stretches,
non-default configurations and every 6th bar. Speed is measured by benchmarks/theory_batch.py, not here."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic
from v7.core.models import CandleSeries
from v7.plugins.theories.hurst_exponent import HurstExponent
from v7.plugins.theories.kalman_filter import KalmanFilter
from v7.plugins.theories.shannon_entropy import ShannonEntropy
from v7.testing import assert_batch_matches, bundled_candles

THEORIES = {
    "hurst_exponent": (HurstExponent, {"window": 300, "min_lag": 2, "max_lag": 12, "drift_bars": 48, "false_alarm": 0.2, "null_paths": 400}),
    "kalman_filter": (KalmanFilter, {"window": 200, "observation_noise": 1.0, "level_noise": 0.5, "velocity_noise": 0.05,
                                     "up_z": 0.5, "strong_z": 1.5, "bias_scale": 1.0}),
    "shannon_entropy": (ShannonEntropy, {"window": 600, "order": 4, "delay": 2, "histogram_bins": 20, "predictable_z": 3.0,
                                         "weak_z": 1.0, "null_paths": 100}),
}


def make(name: str, custom: bool = False, **extra):
    cls, settings = THEORIES[name]
    return cls(cls.Config(**({**settings, **extra} if custom else extra)))


@pytest.fixture(scope="module")
def btc() -> CandleSeries:
    return bundled_candles("BTC-USD")


@pytest.fixture(scope="module")
def eth() -> CandleSeries:
    return bundled_candles("ETH-USD")


def joined(parts: list[CandleSeries]) -> CandleSeries:
    first = parts[0]
    return CandleSeries(
        symbol=first.symbol, granularity=first.granularity,
        **{f: np.concatenate([getattr(p, f) for p in parts]) for f in ("timestamp", "open", "high", "low", "close", "volume")},
    )


def with_stretch(history: CandleSeries, begin: int, values: np.ndarray) -> CandleSeries:
    close = history.close.astype(np.float64).copy()
    close[begin:begin + values.shape[0]] = values
    return synthetic.with_closes(history, close)


def count_insufficient(theory, history, ends, lookback) -> int:
    from v7 import InsufficientData

    return sum(isinstance(f, InsufficientData) for f in theory.analyze_batch(history, ends, lookback))


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_real_btc_consecutive_bars(name, btc):
    n = len(btc)
    assert assert_batch_matches(make(name), btc, range(n - 300, n), 1000) == 300


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_early_windows_shorter_than_the_lookback(name, btc):
    # From bar 0: windows of 1..200 candles, below every theory's minimum at first.
    assert assert_batch_matches(make(name), btc.slice(0, 1500), range(0, 320), 200) == 320
    assert assert_batch_matches(make(name, custom=True), btc.slice(0, 1500), range(0, 320), 250) == 320


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_real_eth_every_sixth_bar(name, eth):
    n = len(eth)
    assert assert_batch_matches(make(name), eth, range(n - 6 * 300, n, 6), 1000) == 300


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_non_default_configuration(name, btc, eth):
    n = len(btc)
    theory = make(name, custom=True)
    assert assert_batch_matches(theory, btc, range(n - 300, n), 1000) == 300
    assert assert_batch_matches(theory, eth, range(4000, 5800, 6), 700) == 300


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_a_gap_in_the_history(name, btc):
    history = joined([btc.slice(5000, 6500), btc.slice(6550, 7200)])  # 50 hours missing
    assert history.slice(0, len(history)).gaps >= 1
    assert assert_batch_matches(make(name), history, range(1300, 1650), 1000) == 350


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_flat_stale_and_illiquid_stretches(name, btc):
    history = btc.slice(8000, 10400)
    closes = history.close.astype(np.float64)
    # 1,100 equal closes (flat windows, then stale and illiquid ones as they slide out), then a
    # stretch where every other close repeats the previous one (around the unchanged-fraction limit).
    history = with_stretch(history, 900, np.full(1100, closes[900]))
    sticky = closes[2000:2400].copy()
    sticky[1::2] = sticky[0::2]
    history = with_stretch(history, 2000, sticky)
    ends = range(900, 2400)
    theory = make(name)
    assert assert_batch_matches(theory, history, ends, 1000) == 1500
    assert count_insufficient(theory, history, ends, 1000) > 100
    assert assert_batch_matches(make(name, custom=True), history, range(900, 2400, 6), 700) == 250


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_ramp_and_broken_closes(name, btc):
    history = btc.slice(12000, 14000)
    closes = history.close.astype(np.float64)
    ramp = closes[600] * 1.001 ** np.arange(1, 801)  # the same ratio every bar: log_returns abstains
    history = with_stretch(history, 600, ramp)
    broken = history.close.astype(np.float64).copy()
    broken[1700] = np.nan
    broken[1750] = 0.0
    history = synthetic.with_closes(history, broken)
    ends = range(600, 2000, 3)
    theory = make(name)
    assert assert_batch_matches(theory, history, ends, 1000) == len(ends)
    assert count_insufficient(theory, history, ends, 1000) > 50


def test_period_two_series_hurst_variogram_undefined():
    # Closes alternating between two values: the 2-bar change is always 0, the variogram undefined.
    rng = np.random.default_rng(3)
    close = synthetic.prices_from_log_returns(rng.normal(0, 0.01, 1500))
    close[700:1300] = np.where(np.arange(600) % 2 == 0, 100.0, 101.0)
    history = synthetic.series(close)
    assert assert_batch_matches(make("hurst_exponent"), history, range(900, 1500), 1000) == 600


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_only_candles_up_to_each_bar_matter(name, btc):
    theory = make(name)
    whole = btc.slice(3000, 4600)
    ends = list(range(1200, 1600, 7))
    full = theory.analyze_batch(whole, ends, 1000)
    for cut in (1250, 1400):
        part = theory.analyze_batch(whole.slice(0, cut + 1), [t for t in ends if t <= cut], 1000)
        assert [f.model_dump() for f in part] == [f.model_dump() for f in full[:len(part)]]


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_supports_the_batch_capability(name):
    assert type(make(name)).supports("analyze_batch")
