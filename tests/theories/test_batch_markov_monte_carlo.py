"""The batch paths of markov_regime and monte_carlo (#13): at every bar equal to `analyze` on that bar's window,
on a fresh instance as on a warm one, on real candles, short windows, a gap, a flat stretch, steps and other configs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from v7 import InsufficientData
from v7.core.batch_runner import run_theory_batch
from v7.testing import assert_batch_matches, bundled_candles

from v7.plugins.theories.markov_regime import MarkovRegime
from v7.plugins.theories.monte_carlo import MonteCarlo

ARRAYS = ("timestamp", "open", "high", "low", "close", "volume")


@pytest.fixture(scope="module")
def btc():
    return bundled_candles("BTC-USD").slice(0, 6000)


@pytest.fixture(scope="module")
def eth():
    return bundled_candles("ETH-USD")


def with_gap(series, start: int, bars: int):
    """The series without bars [start, start + bars): a gap of that many hours."""
    keep = np.ones(len(series), dtype=bool)
    keep[start:start + bars] = False
    return dataclasses.replace(series, **{name: getattr(series, name)[keep] for name in ARRAYS})


def with_flat(series, start: int, bars: int):
    """The series with every price of bars [start, start + bars) equal to the close before them."""
    price = float(series.close[start - 1])
    changed = {}
    for name in ("open", "high", "low", "close"):
        values = getattr(series, name).copy()
        values[start:start + bars] = price
        changed[name] = values
    return dataclasses.replace(series, **changed)


def findings_equal(a, b) -> bool:
    if isinstance(a, InsufficientData) or isinstance(b, InsufficientData):
        return type(a) is type(b) and str(a) == str(b)
    return a.model_dump() == b.model_dump()


def assert_close(fast, slow) -> None:
    assert fast.label == slow.label and fast.interpretation == slow.interpretation
    assert (fast.bias is None) == (slow.bias is None)
    assert fast.bias is None or fast.bias == pytest.approx(slow.bias, rel=1e-9, abs=1e-9)
    assert fast.confidence == pytest.approx(slow.confidence, rel=1e-9, abs=1e-9)
    assert fast.metrics == pytest.approx(slow.metrics, rel=1e-9, abs=1e-9)


def markov(**config) -> MarkovRegime:
    return MarkovRegime(MarkovRegime.Config.model_validate(config))


def monte_carlo(**config) -> MonteCarlo:
    return MonteCarlo(MonteCarlo.Config.model_validate(config))


def analyze_or_insufficient(theory, window):
    try:
        return theory.analyze(window)
    except InsufficientData as exc:
        return exc


# -- markov_regime ------------------------------------------------------------------------------


def test_markov_batch_matches_on_btc_across_refit_anchors(btc):
    ends = range(5200, 5560)  # 360 hourly bars: 15 anchors (00:00 UTC), warm starts between them
    assert assert_batch_matches(MarkovRegime(), btc.slice(0, 5560), ends, 1000) == 360


def test_markov_batch_on_a_fresh_instance_equals_analyze_on_fresh_instances(btc):
    """No cache shared: the batch on one new instance, every bar's analyze on its own new instance."""
    ends = list(range(5000, 5080, 3))
    fast = MarkovRegime().analyze_batch(btc.slice(0, 5080), ends, 1000)
    for t, f in zip(ends, fast):
        assert_close(f, MarkovRegime().analyze(btc.slice(t - 999, t + 1)))


def test_markov_analyze_does_not_depend_on_the_instance_history(btc):
    """A fresh instance per bar (what --check-lookahead does) gives what one instance stepping bar by bar gives."""
    ends = range(5100, 5150, 2)
    stepping = MarkovRegime()
    for t in ends:
        window = btc.slice(t - 999, t + 1)
        assert findings_equal(MarkovRegime().analyze(window), stepping.analyze(window)), t


def test_markov_short_lookback_from_the_start(btc):
    # lookback 200 < window 500: every bar is a full fit; windows grow from the 200 candles min_candles asks for
    assert assert_batch_matches(MarkovRegime(), btc.slice(0, 330), range(199, 330), 200) == 131


def test_markov_eth(eth):
    assert assert_batch_matches(MarkovRegime(), eth.slice(0, 7400), range(7100, 7400), 1000) == 300


def test_markov_gap_and_flat_stretch(btc):
    gapped = with_gap(btc.slice(0, 5400), 5100, 30)
    assert assert_batch_matches(MarkovRegime(), gapped, range(5060, 5200), 1000) == 140
    flat = with_flat(btc.slice(0, 5300), 5150, 40)
    results = MarkovRegime().analyze_batch(flat, list(range(5140, 5230)), 1000)
    assert any(isinstance(r, InsufficientData) and "stale" in str(r) for r in results)
    assert assert_batch_matches(MarkovRegime(), flat, range(5140, 5230), 1000) == 90


def test_markov_step_six_and_other_configs(btc):
    assert assert_batch_matches(MarkovRegime(), btc.slice(0, 6000), range(4200, 6000, 6), 1000) == 300
    assert assert_batch_matches(markov(window=300, refit_every_bars=12, restarts=2, seed=3), btc.slice(0, 4700),
                                range(4500, 4700), 800) == 200
    assert assert_batch_matches(markov(refit_every_bars=0, screen_iterations=0, restarts=2), btc.slice(0, 4540),
                                range(4500, 4540), 1000) == 40


def test_markov_through_the_core_batch_runner(btc):
    history = btc.slice(0, 1100)
    ends = [100, 150, 199, 200, 600, 1099]
    results = run_theory_batch(MarkovRegime(), history, ends, 1000, timeout=30)
    assert [r.status for r in results[:2]] == ["insufficient_data", "insufficient_data"]
    assert all(r.status == "ok" for r in results[2:])


# -- monte_carlo --------------------------------------------------------------------------------


def test_monte_carlo_batch_matches_on_btc(btc):
    assert assert_batch_matches(MonteCarlo(), btc.slice(0, 5600), range(5000, 5600), 1000) == 600


def test_monte_carlo_analyze_does_not_depend_on_the_instance_history(btc):
    stepping = MonteCarlo()
    ends = list(range(3000, 3040))
    fast = MonteCarlo().analyze_batch(btc.slice(0, 3040), ends, 1000)
    for t, f in zip(ends, fast):
        window = btc.slice(t - 999, t + 1)
        fresh = MonteCarlo().analyze(window)
        assert findings_equal(fresh, stepping.analyze(window)), t
        assert_close(f, fresh)


def test_monte_carlo_short_lookback_eth_gap_flat_and_steps(btc, eth):
    assert assert_batch_matches(MonteCarlo(), btc.slice(0, 500), range(99, 500), 200) == 401
    assert assert_batch_matches(MonteCarlo(), eth.slice(0, 4000), range(3000, 4000), 1000) == 1000
    assert assert_batch_matches(MonteCarlo(), with_gap(btc.slice(0, 3000), 2500, 48), range(2300, 2952), 1000) == 652
    flat = with_flat(btc.slice(0, 2400), 2000, 60)
    results = MonteCarlo().analyze_batch(flat, list(range(1990, 2400)), 1000)
    assert any(isinstance(r, InsufficientData) and "stale" in str(r) for r in results)
    assert assert_batch_matches(MonteCarlo(), flat, range(1990, 2400), 1000) == 410
    assert assert_batch_matches(MonteCarlo(), btc.slice(0, 6000), range(2400, 6000, 6), 1000) == 600


@pytest.mark.parametrize("config", [
    {"model": "normal"},
    {"horizon": 5},
    {"model": "normal", "horizon": 3, "paths": 2000},
    {"window": 100, "confidence_level": 0.99, "paths": 5000, "seed": 11},
])
def test_monte_carlo_other_configs(btc, config):
    assert assert_batch_matches(monte_carlo(**config), btc.slice(0, 4400), range(4100, 4400), 1000) == 300
    assert assert_batch_matches(monte_carlo(**config), btc.slice(0, 260), range(99, 260), 150) == 161
