"""What the learned synthesizer answers: BUY/SELL/HOLD from the calibrated P(up) and the threshold, a reasoning that
names the features, and the fallback (with the reason on the signal) before the first model or when a feature is missing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from learned_helpers import SYMBOL, ar1, backtest, drive, learned_config, make_learned_registry, request_at, series
from v7 import SynthesisFailed
from v7.plugins.synthesizers.learned import LearnedConfig, LearnedSynthesizer


@pytest.fixture(scope="module")
def registry():
    return make_learned_registry()


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_direction_and_confidence_follow_p_up_and_the_threshold(model):
    cfg = LearnedConfig(model=model, horizon=1, min_train=200, retrain_every=200, threshold=0.52, trees=30, min_leaf_rows=20)
    synthesizer = LearnedSynthesizer(cfg)
    candles = ar1(21, 900, 0.2)
    answers = [(t, a) for t, a in drive(synthesizer, candles, 39) if not isinstance(a, SynthesisFailed)]
    assert len(answers) > 600
    learner = synthesizer._learners[SYMBOL]
    # The last bar again: the same model (shown the same bar, it learns nothing new) gives its P(up) directly.
    t, last = answers[-1]
    request = request_at(candles, t)
    again = synthesizer.synthesize(request)
    from v7.plugins.synthesizers.learned.features import bar_features

    p = float(learner.model.probability(learner.table.vector(bar_features(request, cfg), learner.model.names).reshape(1, -1))[0])
    assert (again.direction, again.confidence) == (last.direction, last.confidence)
    assert re.search(rf"= {p:.3f} ", again.reasoning)
    for _, a in answers:
        shown = float(re.search(r"\) = (\d\.\d+) \(", a.reasoning).group(1))  # P(up) as the reasoning states it
        if a.direction == "BUY":
            assert a.confidence >= 0.52 and a.confidence == pytest.approx(shown, abs=5e-4)
            assert a.decided_by == "P(up) ≥ threshold"
        elif a.direction == "SELL":
            assert a.confidence >= 0.52 and a.confidence == pytest.approx(1 - shown, abs=5e-4)
            assert a.decided_by == "P(up) ≤ 1 − threshold"
        else:
            assert 0.5 <= a.confidence < 0.52 and a.confidence == pytest.approx(max(shown, 1 - shown), abs=5e-4)
            assert a.decided_by == "P(up) inside the threshold band"
    assert {a.direction for _, a in answers} == {"BUY", "SELL", "HOLD"}


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_the_reasoning_names_the_features_that_moved_the_decision(model):
    cfg = LearnedConfig(model=model, horizon=1, min_train=200, retrain_every=200, explain=2, trees=30, min_leaf_rows=20)
    answers = [a for _, a in drive(LearnedSynthesizer(cfg), ar1(22, 600, 0.2), 39) if not isinstance(a, SynthesisFailed)]
    names = {"price.return_1", "price.return_6", "price.return_24", "price.volatility", "volume.z"}
    for a in answers:
        assert a.reasoning.startswith("P(up over 1 bars) = ")
        assert f"({model}, platt calibration on " in a.reasoning and "base rate 0." in a.reasoning
        moved = re.search(r"Moved most by \(log-odds\): (.*)$", a.reasoning)
        assert moved, a.reasoning
        named = [re.fullmatch(r"(\S+) ([+-]\d\.\d{3})", part.strip()).groups() for part in moved.group(1).split(",")]
        assert 1 <= len(named) <= 2 and {n for n, _ in named} <= names
    # The planted structure is in the last return: it is the feature named first most often.
    first = [re.search(r"log-odds\): (\S+)", a.reasoning).group(1) for a in answers]
    assert max(names, key=first.count) == "price.return_1", {n: first.count(n) for n in names}

    quiet = LearnedSynthesizer(cfg.model_copy(update={"explain": 0}))
    assert all("Moved most by" not in a.reasoning for _, a in drive(quiet, ar1(22, 600, 0.2), 39) if not isinstance(a, SynthesisFailed))


# -- the fallback --------------------------------------------------------------------------------


def test_the_fallback_answers_until_the_first_model_and_says_why(registry):
    run = backtest(learned_config(registry, min_train=300, retrain_every=250), registry, ar1(23, 900, 0.1))
    signals = run.signals[SYMBOL]
    first = next(i for i, s in enumerate(signals) if s.synthesizer == "learned")
    assert all(s.synthesizer == "consensus" for s in signals[:first])
    assert [s.fallback_reason for s in signals[:3]] == [
        "learning: 0 labelled rows, the first model needs 300 (min_train)",
        "learning: 0 labelled rows, the first model needs 300 (min_train)",  # horizon 1 + embargo 1: a label is known 2 bars later
        "learning: 1 labelled rows, the first model needs 300 (min_train)",
    ]
    assert signals[first - 1].fallback_reason == "learning: 299 labelled rows, the first model needs 300 (min_train)"
    assert all(s.synthesizer == "learned" and s.fallback_reason is None for s in signals[first:])
    comparison = run.result.learning[0]
    assert comparison.first_model_bar == signals[first].bar_time and comparison.bars == len(signals) - first


def test_a_missing_theory_result_hands_the_bar_to_the_fallback(registry):
    run = backtest(learned_config(registry, theories=["gappy"], min_train=200), registry, ar1(24, 900, 0.1))
    signals = run.signals[SYMBOL]
    gaps = [s for s in signals if (s.timestamp // 3600) % 7 == 0]
    assert len(gaps) > 100
    for s in gaps:
        assert s.synthesizer == "consensus"
        assert s.fallback_reason == "feature missing: theory 'gappy' answered insufficient_data (every 7th hour)"
    later = [s for s in signals[400:] if (s.timestamp // 3600) % 7]
    assert later and all(s.synthesizer == "learned" for s in later)
    # The theory's readings are features of the model.
    assert any(name.startswith("gappy.") for name in run.result.learning[0].importances)


def test_a_theory_error_and_too_short_a_window_are_missing_features_too(registry):
    run = backtest(learned_config(registry, theories=["raising"], min_train=100), registry, ar1(25, 200, 0.1))
    reasons = {s.fallback_reason for s in run.signals[SYMBOL]}
    assert len(reasons) == 1 and reasons.pop().startswith("feature missing: theory 'raising' answered error")
    short = backtest(learned_config(registry, engine={"lookback": 20}, min_train=100), registry, ar1(26, 200, 0.1))
    assert {s.fallback_reason for s in short.signals[SYMBOL]} == {"feature missing: price features need 25 candles; the request has 20"}
    assert {s.synthesizer for s in short.signals[SYMBOL]} == {"consensus"}


def test_a_failed_training_keeps_the_fallback_or_the_previous_model_with_the_reason():
    """Closes that only rise: every label is "up", no model can be fitted; the reason says so (and is not `learning:`)."""
    cfg = LearnedConfig(model="logistic", horizon=1, min_train=100, retrain_every=50)
    synthesizer = LearnedSynthesizer(cfg)
    rising = series(np.exp(np.arange(400) * 0.001))
    answers = drive(synthesizer, rising)
    failures = [a for _, a in answers[200:]]
    assert all(isinstance(a, SynthesisFailed) for a in failures)
    assert all(a.reason.startswith("training failed: the training rows hold a single class") for a in failures), failures[0].reason
    assert not any(a.quiet for a in failures)  # a real problem: logged as a warning, unlike warming up
    assert all(a.quiet for _, a in answers[:30])


def test_a_rolling_window_too_small_to_calibrate_is_refused_with_the_numbers():
    import pydantic

    with pytest.raises(pydantic.ValidationError, match=r"window: 300 rows leave 75 calibration rows, about 3\.1 independent outcomes"):
        LearnedConfig(window=300, horizon=24)
    assert LearnedConfig(window=2000, horizon=24).window == 2000
