"""`v7 run` and `v7 backtest` size each signal through the same rule, from the candles up to its bar."""

from __future__ import annotations

import pytest

from v7.core.backtest import run_backtest
from v7.core.candles import read_candles_csv
from v7.core.config import validate_config
from v7.core.engine import Fetched, Pipeline
from v7.core.sizing import SizingConfig, position_for
from v7.core.sizing.rule import tail_loss

from helpers import BTC_CSV
from sizing_plugins import make_registry


@pytest.fixture(scope="module")
def registry():
    return make_registry()


@pytest.fixture(scope="module")
def btc():
    return read_candles_csv(BTC_CSV, "BTC-USD").tail(1500)


def config(registry, probability=0.7, direction="BUY", payoff=None, **sizing):
    return validate_config({
        "engine": {"symbols": ["BTC-USD"], "lookback": 500},
        "sinks": {"enabled": []},
        "theories": {"enabled": ["hurst_exponent", "monte_carlo"]},
        "synthesizer": {"use": "fixed_probability", "fixed_probability": {"probability": probability, "direction": direction, "payoff": payoff}},
        "backtest": {"horizon": 12, "step": 50, "workers": 1, "feature_cache": ""},
        "sizing": sizing,
    }, registry)


def test_a_run_signal_carries_the_rule_s_position(registry, btc):
    cfg = config(registry)
    pipeline = Pipeline.build(cfg, registry)
    window = btc.tail(500)
    signal = pipeline.evaluate("BTC-USD", Fetched(window, 1.0))
    cvar, missing = tail_loss(signal.theory_results, pipeline.theories)
    assert missing is None and cvar is not None and cvar > 0  # monte_carlo declares its loss metrics
    expected = position_for("BUY", 0.7, True, window.close, "1h", cvar, cfg.sizing)
    assert signal.position == pytest.approx(expected.position) and signal.position > 0
    assert signal.sizing == expected.rule and "Kelly" in signal.sizing


def test_a_synthesizer_s_payoff_of_past_signals_sizes_its_signal_in_run_and_backtest(registry, btc):
    cfg = config(registry, payoff=1.6)
    pipeline = Pipeline.build(cfg, registry)
    window = btc.tail(500)
    signal = pipeline.evaluate("BTC-USD", Fetched(window, 1.0))
    cvar, _ = tail_loss(signal.theory_results, pipeline.theories)
    expected = position_for("BUY", 0.7, True, window.close, "1h", cvar, cfg.sizing, payoff=1.6)
    assert signal.position == pytest.approx(expected.position) and "b 1.60 from past signals" in signal.sizing
    assert signal.position != pytest.approx(position_for("BUY", 0.7, True, window.close, "1h", cvar, cfg.sizing).position)
    run = run_backtest(cfg, registry, histories={"BTC-USD": btc})
    bar = run.signals["BTC-USD"][0]
    bars = btc.slice(bar.index + 1 - 500, bar.index + 1)
    cvar, _ = tail_loss(pipeline.analyze(bars), pipeline.theories)
    assert bar.position == pytest.approx(position_for("BUY", 0.7, True, bars.close, "1h", cvar, cfg.sizing, payoff=1.6).position)


def test_the_fallback_s_uncalibrated_answer_gets_the_conservative_rule(registry, btc):
    cfg = validate_config({"engine": {"symbols": ["BTC-USD"], "lookback": 500}, "sinks": {"enabled": []}}, registry)
    pipeline = Pipeline.build(cfg, registry)
    signal = pipeline.evaluate("BTC-USD", Fetched(btc.tail(500), 1.0))
    assert not type(pipeline.synthesizer).calibrated
    if signal.direction == "BUY":
        assert "uncalibrated" in signal.sizing and 0 < signal.position <= SizingConfig().uncalibrated_fraction
    else:
        assert signal.position == 0.0


def test_every_backtest_bar_is_sized_from_its_own_window(registry, btc):
    cfg = config(registry, direction="SELL", short_enabled=True)
    run = run_backtest(cfg, registry, histories={"BTC-USD": btc})
    bars = run.signals["BTC-USD"]
    assert len(bars) > 10 and all(-1 <= s.position < 0 for s in bars)
    pipeline = Pipeline.build(cfg, registry, kinds=("theory", "synthesizer"))
    for bar in bars[:3]:
        window = btc.slice(bar.index + 1 - 500, bar.index + 1)
        cvar, _ = tail_loss(pipeline.analyze(window), pipeline.theories)
        assert bar.position == pytest.approx(position_for("SELL", 0.7, True, window.close, "1h", cvar, cfg.sizing).position)
    unsized = run_backtest(config(registry, direction="SELL"), registry, histories={"BTC-USD": btc})
    assert all(s.position == 0.0 for s in unsized.signals["BTC-USD"])  # shorting off: SELL is flat
