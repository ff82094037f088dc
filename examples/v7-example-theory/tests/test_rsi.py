"""Tests for the RSI theory: known answers, a reference implementation, and V7's own harness.

Run with the plugin installed (`pip install -e ".[test]"`, then `pytest`).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from v7 import CandleSeries, InsufficientData, TheoryFinding
from v7.testing import bundled_candles, registry_with, run_theory
from v7_example_theory import rsi as rsi_plugin
from v7_example_theory.rsi import RelativeStrengthIndex, RsiConfig, wilder_rsi


def series(closes, symbol: str = "TEST-USD") -> CandleSeries:
    """Candles whose open, high, low and close are all the given closes (RSI only reads closes)."""
    close = np.asarray(closes, dtype=np.float64)
    return CandleSeries(
        symbol=symbol, granularity="1h", timestamp=np.arange(len(close), dtype=np.int64) * 3600,
        open=close, high=close, low=close, close=close, volume=np.zeros_like(close),
    )


def theory(**settings) -> RelativeStrengthIndex:
    return RelativeStrengthIndex(RsiConfig(**settings))


def reference_rsi(closes: list[float], period: int) -> float:
    """Wilder's RSI straight from the textbook: seed with simple means, then ((prev × (n − 1)) + current) / n."""
    moves = [b - a for a, b in zip(closes, closes[1:])]
    gains = [m if m > 0 else 0.0 for m in moves]
    losses = [-m if m < 0 else 0.0 for m in moves]
    avg_gain = sum(gains[:period]) / period
    avg_loss = sum(losses[:period]) / period
    for gain, loss in zip(gains[period:], losses[period:]):
        avg_gain = (avg_gain * (period - 1) + gain) / period
        avg_loss = (avg_loss * (period - 1) + loss) / period
    if avg_loss == 0:
        return 100.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def bundled_btc() -> CandleSeries:
    return bundled_candles("BTC-USD")


# -- known answers -------------------------------------------------------------------------


def test_strictly_rising_series_is_100_and_overbought():
    finding = theory().analyze(series(np.linspace(100, 200, 60)))
    assert finding.metrics["rsi"] == 100.0
    assert finding.label == "overbought"
    assert finding.bias == -1.0 and finding.confidence == 1.0


def test_strictly_falling_series_is_0_and_oversold():
    finding = theory().analyze(series(np.linspace(200, 100, 60)))
    assert finding.metrics["rsi"] == 0.0
    assert finding.label == "oversold"
    assert finding.bias == 1.0 and finding.confidence == 1.0


@pytest.mark.parametrize("period", [2, 14, 20])
def test_alternating_equal_moves_over_one_period_is_50(period):
    closes = [100.0 + (i % 2) for i in range(period + 1)]  # period moves: half up, half down
    finding = theory(period=period).analyze(series(closes))
    assert finding.metrics["rsi"] == pytest.approx(50.0, abs=1e-12)
    assert finding.label == "neutral"
    assert finding.bias == pytest.approx(0.0, abs=1e-12)


def test_long_alternating_series_settles_on_wilders_fixed_point():
    # Gains and losses alternate, so the smoothed averages settle at p/(2p−1) and (p−1)/(2p−1).
    period = 14
    closes = [100.0 + (i % 2) for i in range(2000)]  # the last move (index 1998 → 1999) is up
    assert wilder_rsi(closes, period)[0] == pytest.approx(100 * period / (2 * period - 1), abs=1e-9)
    assert wilder_rsi(closes[:-1], period)[0] == pytest.approx(100 * (period - 1) / (2 * period - 1), abs=1e-9)


@pytest.mark.parametrize("period", [2, 5, 14, 50])
def test_matches_reference_implementation_on_random_walks(period):
    rng = np.random.default_rng(period)
    for _ in range(20):
        closes = (1000 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))).tolist()
        assert wilder_rsi(closes, period)[0] == pytest.approx(reference_rsi(closes, period), abs=1e-9)


def test_matches_pandas_exponential_smoothing():
    pd = pytest.importorskip("pandas")
    period = 14
    closes = np.cumsum(np.random.default_rng(7).normal(0, 1, 800)) + 500
    moves = np.diff(closes)
    averages = []
    for values in (np.clip(moves, 0, None), np.clip(-moves, 0, None)):
        seeded = np.concatenate([[values[:period].mean()], values[period:]])
        averages.append(pd.Series(seeded).ewm(alpha=1 / period, adjust=False).mean().iloc[-1])
    expected = 100 * averages[0] / (averages[0] + averages[1])
    assert wilder_rsi(closes, period)[0] == pytest.approx(expected, abs=1e-9)


def test_labels_follow_the_configured_thresholds():
    up = [100.0 + (i % 2) for i in range(200)]  # RSI ≈ 51.85 (last move up)
    down = up[:-1]  # RSI ≈ 48.15 (last move down)
    assert theory().analyze(series(up)).label == "neutral"
    assert theory(overbought=51).analyze(series(up)).label == "overbought"
    assert theory().analyze(series(down)).label == "neutral"
    assert theory(oversold=49).analyze(series(down)).label == "oversold"
    # On the line counts: RSI 100 is overbought even at overbought = 100, RSI 0 oversold at oversold = 0.
    assert theory(overbought=100).analyze(series(np.linspace(100, 200, 60))).label == "overbought"
    assert theory(oversold=0).analyze(series(np.linspace(200, 100, 60))).label == "oversold"


# -- abstaining ----------------------------------------------------------------------------


def test_too_few_closes_is_insufficient_data():
    with pytest.raises(InsufficientData, match="needs 15"):
        theory().analyze(series([100.0 + i for i in range(14)]))


def test_flat_series_is_insufficient_data():
    with pytest.raises(InsufficientData, match="flat series"):
        theory().analyze(series([100.0] * 100))


def test_min_candles_follows_the_period():
    assert theory().min_candles == 15
    assert theory(period=30).min_candles == 31
    assert theory(min_candles=200).min_candles == 200


# -- config --------------------------------------------------------------------------------


def test_config_defaults_and_validation():
    cfg = RsiConfig()
    assert (cfg.period, cfg.overbought, cfg.oversold) == (14, 70.0, 30.0)
    with pytest.raises(ValidationError, match="extra"):
        RsiConfig(perod=10)  # a typo is an error, not a silent default
    with pytest.raises(ValidationError):
        RsiConfig(period=1)
    with pytest.raises(ValidationError):
        RsiConfig(overbought=40)


# -- inside V7 -----------------------------------------------------------------------------


def test_runs_through_the_engine_on_real_candles():
    registry = registry_with(rsi_plugin)
    component = registry.get("theory", "rsi")
    assert component is not None and component.cls is RelativeStrengthIndex

    candles = bundled_btc().tail(1000)
    result = run_theory(component.cls(), candles, timeout=10)
    assert result.status == "ok", result.message
    assert 0 <= result.metrics["rsi"] <= 100
    assert result.label in {"overbought", "oversold", "neutral"}
    assert result.metrics["rsi"] == pytest.approx(reference_rsi(candles.close.tolist(), 14), abs=1e-9)
    # Deterministic: the same candles give the same finding.
    assert run_theory(component.cls(), candles, timeout=10).metrics == result.metrics


def test_is_causal_later_bars_do_not_change_earlier_answers():
    history = bundled_btc().tail(1200)
    rsi = theory()
    before = rsi.analyze(history.slice(0, 1000))
    rsi.analyze(history)  # no state may leak from one call into the next
    assert rsi.analyze(history.slice(0, 1000)) == before


def test_too_short_history_is_answered_by_the_engine():
    result = run_theory(theory(), series([100.0 + i for i in range(10)]), timeout=10)
    assert result.status == "insufficient_data"


def test_prompt_section():
    rsi = theory()
    result = run_theory(rsi, series(np.linspace(200, 100, 60)), timeout=10)
    text = rsi.prompt_section(result)
    assert text is not None and text.startswith("### rsi")
    assert "RSI: 0.0 → oversold" in text
    assert rsi.prompt_section(run_theory(rsi, series([100.0] * 40), timeout=10)) is None


def test_finding_is_a_valid_theory_finding():
    finding = theory().analyze(bundled_btc().tail(500))
    assert TheoryFinding.model_validate(finding.model_dump()) == finding
    assert list(finding.metrics)[0] == "rsi"  # `v7` shows the first metric in its one-line summary


def test_importing_the_plugin_does_not_import_numpy():
    # V7 imports every installed plugin for `v7 plugins`; numpy must wait until `analyze` runs.
    code = "import sys, v7_example_theory.rsi; print(sorted(m for m in ('numpy', 'pandas', 'scipy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_entry_point_is_declared():
    """Passes once the distribution is installed (`pip install .`): V7 discovers it by this entry point."""
    try:
        dist = importlib.metadata.distribution("v7-example-theory")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("v7-example-theory is not installed")
    (entry_point,) = [ep for ep in dist.entry_points if ep.group == "v7"]
    assert (entry_point.name, entry_point.value) == ("rsi", "v7_example_theory.rsi")
