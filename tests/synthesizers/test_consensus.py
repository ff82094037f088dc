"""The consensus rule on known cases, through the engine with a third-party theory, and on real history."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime, timezone

import pytest

from helpers import REPO
from plugin_samples import SamplePlugin
from v7 import SynthesisRequest, TheoryResult
from v7.core.config import validate_config
from v7.core.engine import Pipeline
from v7.core.registry import PluginSource, load_registry
from v7.plugins.synthesizers.consensus import ConsensusConfig, ConsensusSynthesizer


def one_signal(pipeline, symbol):
    """One symbol through feeds, theories, formatters and synthesizer, as one iteration of `v7 run` does."""
    return pipeline.evaluate(symbol, pipeline.fetch(symbol))


def result(theory: str, bias: float | None = None, confidence: float = 1.0, label: str = "x", status: str = "ok",
           **metrics: float) -> TheoryResult:
    return TheoryResult(theory=theory, version="1", status=status, bias=bias, confidence=confidence, label=label,
                        metrics=metrics, message=None if status == "ok" else "failed")


def decide(*results: TheoryResult, **config):
    request = SynthesisRequest(symbol="BTC-USD", granularity="1h", bar_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
                               price=100.0, results=list(results))
    return ConsensusSynthesizer(ConsensusConfig(**config)).synthesize(request)


def kalman(bias: float, confidence: float = 1.0) -> TheoryResult:
    return result("kalman_filter", bias, confidence, "up" if bias > 0 else "down")


def hurst(label: str, bias: float = 0.0) -> TheoryResult:
    return result("hurst_exponent", bias, 0.8, label, hurst=0.6)


def entropy(value: float) -> TheoryResult:
    return result("shannon_entropy", None, 0.5, "random", entropy=value)


def risk(label: str, var: float, confidence: float = 0.9) -> TheoryResult:
    return result("monte_carlo", None, confidence, label, var=var)


def test_bullish_theories_buy_and_bearish_sell():
    bullish = decide(kalman(0.8, 0.6), result("markov_regime", 0.6, 0.8, "calm_uptrend"))
    # (1.0 × 0.48 + 0.5 × 0.48) / 1.5
    assert (bullish.direction, bullish.confidence) == ("BUY", pytest.approx(0.48))
    bearish = decide(kalman(-0.8, 0.6), result("markov_regime", -0.6, 0.8, "stressed_downtrend"))
    assert (bearish.direction, bearish.confidence) == ("SELL", pytest.approx(0.48))


def test_weak_evidence_holds_with_the_depth_inside_the_band():
    hold = decide(kalman(0.05))
    assert (hold.direction, hold.confidence) == ("HOLD", pytest.approx(0.5))  # 0.05 is halfway into the 0.10 band


def test_trending_regime_follows_the_move():
    answer = decide(kalman(0.2), hurst("trending"))
    assert (answer.direction, answer.confidence) == ("BUY", pytest.approx(0.25))  # 0.2 × 1.25
    assert "trending regime ×+1.25" in answer.reasoning


def test_mean_reverting_regime_fades_the_move():
    answer = decide(kalman(0.2), hurst("mean_reverting"))
    assert (answer.direction, answer.confidence) == ("SELL", pytest.approx(0.15))  # 0.2 × −0.75
    assert decide(kalman(-0.2), hurst("mean_reverting")).direction == "BUY"


def test_random_walk_regime_damps_a_borderline_move_into_hold():
    assert decide(kalman(0.11)).direction == "BUY"
    assert decide(kalman(0.11), hurst("random_walk")).direction == "HOLD"  # 0.11 × 0.8 < 0.10
    assert decide(kalman(0.11), hurst("trending")).direction == "BUY"


def test_the_regime_theory_bias_itself_is_not_a_vote():
    answer = decide(hurst("trending", bias=0.9), entropy(0.95))
    assert (answer.direction, answer.confidence) == ("HOLD", 0.0)


def test_high_entropy_scales_confidence_down_not_the_direction():
    clear = decide(kalman(0.5), entropy(0.95))  # below the 0.97 floor: full trust
    assert (clear.direction, clear.confidence) == ("BUY", pytest.approx(0.5))
    noisy = decide(kalman(0.5), entropy(0.99))  # trust 1 − 0.5 × (0.99 − 0.97) / 0.03
    assert (noisy.direction, noisy.confidence) == ("BUY", pytest.approx(0.5 * (1 - 0.5 * 0.02 / 0.03)))
    assert "entropy 0.990 scales confidence" in noisy.reasoning
    harsher = decide(kalman(0.5), entropy(0.99), entropy_penalty=1.0)
    assert harsher.confidence < noisy.confidence


def test_extreme_var_vetoes_a_trade():
    answer = decide(kalman(0.8), risk("extreme", 0.12, confidence=0.9))
    assert (answer.direction, answer.confidence) == ("HOLD", 0.9)
    assert "BUY vetoed by extreme risk (VaR 12.00%)" in answer.reasoning
    assert decide(kalman(0.8), risk("high", 0.04)).direction == "BUY"  # only `extreme` vetoes by default
    assert decide(kalman(0.8), risk("high", 0.04), max_var=0.03).direction == "HOLD"
    assert decide(kalman(-0.8), risk("high", 0.04), veto_labels=["high", "extreme"]).direction == "HOLD"


def test_a_third_party_directional_theory_shifts_the_result_with_its_weight():
    base = [kalman(0.3)]
    assert decide(*base).direction == "BUY"
    bearish = result("my_sentiment", -0.6, 1.0, "fearful")
    assert decide(*base, bearish).direction == "SELL"  # (0.3 − 0.6) / 2 = −0.15, default weight 1
    assert decide(*base, bearish, default_weight=0.25).direction == "BUY"  # (0.3 − 0.15) / 1.25 = 0.12
    assert decide(*base, bearish, weights={"my_sentiment": 0.5}).direction == "HOLD"  # (0.3 − 0.3) / 1.5 = 0
    assert decide(*base, bearish, weights={"my_sentiment": 0.0}).direction == "BUY"


def test_no_directional_theory_is_hold_with_confidence_zero():
    for results in ([], [entropy(0.98), risk("low", 0.01)], [result("kalman_filter", status="error", confidence=0.0)]):
        answer = decide(*results)
        assert (answer.direction, answer.confidence) == ("HOLD", 0.0)


def test_failed_theories_are_named_in_the_reasoning():
    answer = decide(kalman(0.5), result("markov_regime", status="insufficient_data", confidence=0.0))
    assert answer.direction == "BUY"
    assert answer.reasoning.endswith("without markov_regime.")


def test_a_third_party_theory_takes_part_through_the_engine(tmp_path):
    registry = load_registry()
    registry.add_plugin(SamplePlugin(), PluginSource("samples", "v7-test-samples", "1.0"))

    def signal(bias: float, **consensus):
        raw = {
            "engine": {"symbols": ["BTC-USD"], "lookback": 300},
            "theories": {"enabled": ["kalman_filter", "constant"], "constant": {"bias": bias}},
            "synthesizer": {"use": "consensus", "consensus": consensus},
            "sinks": {"enabled": []},
        }
        return one_signal(Pipeline.build(validate_config(raw, registry), registry), "BTC-USD")

    kalman_only = signal(0.0, weights={"constant": 0.0})
    assert kalman_only.direction == "HOLD"  # the first replay bar of BTC: Kalman is flat
    assert signal(0.9).direction == "BUY"
    assert signal(-0.9).direction == "SELL"
    assert signal(-0.9, default_weight=0.05).direction == "HOLD"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("signal_mix", REPO / "benchmarks" / "signal_mix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["signal_mix"] = module  # worker processes unpickle its functions by module name
    spec.loader.exec_module(module)
    return module


def test_all_three_directions_occur_on_real_history():
    """300 bars (150 per symbol, spread over the whole history), default config, no lookahead."""
    benchmark = load_benchmark()
    mix = benchmark.signal_mix(["BTC-USD", "ETH-USD"], step=1, lookback=1000, workers=2, limit=150)
    total = mix["BTC-USD"] + mix["ETH-USD"]
    assert sum(total.values()) == 300
    assert all(total[d] >= 15 for d in ("BUY", "SELL", "HOLD")), total  # at least 5 % each
    assert 0.4 <= total["HOLD"] / 300 <= 0.8, total


def test_the_benchmark_never_looks_ahead():
    benchmark = load_benchmark()
    assert benchmark.bar_indices(20, 5, 4) == [4, 8, 12, 16]
    assert benchmark.bar_indices(1000, 100, 1, limit=3) == [99, 399, 699]


def test_the_regime_rereads_momentum_only_not_a_contrarian_theory():
    # An oversold RSI-style theory says BUY on its own terms; a mean-reverting regime must not flip it.
    contrarian = result("rsi", bias=0.6)
    answer = decide(contrarian, hurst("mean_reverting"))
    assert answer.direction == "BUY" and answer.confidence == pytest.approx(0.6)
    # …while the same regime fades the Kalman momentum: 0.6 × −0.75 = −0.45.
    assert decide(kalman(0.6), hurst("mean_reverting")).direction == "SELL"
    # Declared momentum, the third-party theory is re-read too.
    assert decide(contrarian, hurst("mean_reverting"), momentum_theories=["rsi"]).direction == "SELL"
