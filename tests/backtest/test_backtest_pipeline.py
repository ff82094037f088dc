"""Backtests through the real pipeline: no lookahead, parallel = serial, the lookahead check."""

from __future__ import annotations

import numpy as np

import backtest_plugins
from backtest_plugins import make_registry
from backtest_setup import LOOKBACK, make_config
from helpers import BTC_CSV
from v7 import CandleSeries
from v7.core.backtest import check_lookahead, own_copy, resolve_settings, run_backtest, signals_for
from v7.core.engine import Pipeline


def essence(signal):
    """Everything a signal says, without timings."""
    return (
        signal.index, signal.timestamp, signal.direction, signal.confidence, signal.synthesizer,
        [(o.theory, o.status, o.bias, o.confidence, o.label, o.metrics_digest) for o in signal.theories],
    )


def perturbed_after(series: CandleSeries, t: int, seed: int = 1) -> CandleSeries:
    """The same candles up to bar t; after it, a different random walk (valid OHLC)."""
    rng = np.random.default_rng(seed)
    factor = np.ones(len(series))
    factor[t + 1:] = np.cumprod(1 + rng.normal(0.002, 0.03, len(series) - t - 1))
    return CandleSeries(
        symbol=series.symbol, granularity=series.granularity, timestamp=series.timestamp.copy(),
        open=series.open * factor, high=series.high * factor, low=series.low * factor, close=series.close * factor,
        volume=series.volume[::-1].copy(),
    )


def test_changing_candles_after_t_leaves_every_signal_up_to_t_unchanged(registry, btc):
    config = make_config(registry)
    assert [t for t in config.enabled["theory"]] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
    t = 379
    changed = perturbed_after(btc, t)
    pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter", "synthesizer"))
    indices = list(range(LOOKBACK - 1, len(btc), 20))
    original = signals_for(pipeline, own_copy(btc), indices, LOOKBACK)
    again = signals_for(pipeline, own_copy(changed), indices, LOOKBACK)
    before = [(a, b) for a, b in zip(original, again) if a.index <= t]
    after = [(a, b) for a, b in zip(original, again) if a.index > t]
    assert len(before) == 5 and len(after) == 4
    for a, b in before:
        assert essence(a) == essence(b)
        assert all(o.status == "ok" for o in a.theories), a.theories
    # The perturbation is real: every later bar's theories see it.
    assert all(essence(a)[5] != essence(b)[5] for a, b in after)

    # The same through `run_backtest`, forked workers included.
    settings = resolve_settings(config, workers=2, step=10)
    runs = [run_backtest(config, registry, settings=settings, histories={"BTC-USD": h}) for h in (btc, changed)]
    for a, b in zip(runs[0].signals["BTC-USD"], runs[1].signals["BTC-USD"]):
        if a.index <= t:
            assert essence(a) == essence(b)


def test_parallel_workers_give_exactly_the_serial_signals(registry, btc):
    config = make_config(registry, backtest={"step": 8})
    serial = run_backtest(config, registry, histories={"BTC-USD": btc}, settings=resolve_settings(config, workers=1))
    parallel = run_backtest(config, registry, histories={"BTC-USD": btc}, settings=resolve_settings(config, workers=2))
    assert parallel.result.workers == 2 and serial.result.workers == 1
    assert [essence(s) for s in serial.signals["BTC-USD"]] == [essence(s) for s in parallel.signals["BTC-USD"]]
    assert serial.result.symbols[0].scores == parallel.result.symbols[0].scores
    # Signal bars: from the first bar with a full lookback, every `step` bars, to the end.
    assert [s.index for s in serial.signals["BTC-USD"]] == list(range(LOOKBACK - 1, len(btc), 8))


def test_lookahead_check_finds_nothing_in_the_real_pipeline(registry, btc):
    config = make_config(registry, backtest={"step": 40, "lookahead_sample": 3})
    run = run_backtest(config, registry, histories={"BTC-USD": btc})
    report = check_lookahead(run)
    assert report.error is None
    assert report.checked == 3 and report.differences == [] and report.ok


def test_a_theory_cannot_reach_the_bars_after_its_window(registry, btc):
    # The peeking theory reads the memory behind its arrays (a numpy view's `.base`); the backtest
    # hands out copies, so there is nothing after bar t to find.
    config = make_config(registry, theories=["peeking"], backtest={"step": 5, "horizon": 1, "lookahead_sample": 4})
    run = run_backtest(config, registry, histories={"BTC-USD": btc})
    assert run.result.symbols[0].scores.directions["BUY"].count == 0
    report = check_lookahead(run, registry_factory=make_registry)
    assert report.error is None and report.ok


def test_lookahead_check_catches_a_synthesizer_reading_a_global_future_array(registry, tmp_path):
    backtest_plugins.FUTURE.clear()
    config = make_config(
        registry, theories=["constant"], synthesizer={"use": "foresight"},
        feeds={"enabled": ["future_replay"], "future_replay": {"path": str(BTC_CSV)}},
        backtest={"step": 3, "horizon": 1, "lookahead_sample": 4},
    )
    run = run_backtest(config, registry, bars=60)
    assert "BTC-USD" in backtest_plugins.FUTURE  # the feed left the whole history in a global
    scores = run.result.symbols[0].scores
    assert scores.directions["BUY"].hit_rate == 1.0 and scores.directions["SELL"].hit_rate == 1.0
    report = check_lookahead(run, registry_factory=make_registry)
    assert report.error is None and report.checked == 4
    assert {d.field for d in report.differences} >= {"direction"}
    assert all(d.recomputed == "HOLD" for d in report.differences if d.field == "direction")


def test_backtest_settings_do_not_change_the_config_hash(registry):
    plain = make_config(registry)
    other = make_config(registry, backtest={"horizon": 48, "fees_bps": 0, "short_on_sell": True, "folds": 5})
    assert plain.config_hash() == other.config_hash()
    assert other.effective()["backtest"]["horizon"] == 48
