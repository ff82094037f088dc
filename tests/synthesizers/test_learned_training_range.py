"""A model never answers a bar before its training range ends: a model file fitted on the whole history answers
nothing before its last label (plus the embargo), the fallback answers with the reason, walk-forward learning takes
over when the run may learn, the backtest's out-of-sample scores never include such bars, and `--check-lookahead`
flags a model that answers a bar its training range reaches past."""

from __future__ import annotations

import numpy as np
import pytest

from learned_helpers import HOUR, LOOKBACK, SYMBOL, ar1, backtest, drive, head, learned_config, make_learned_registry
from v7 import Synthesis, SynthesisFailed, format_utc
from v7.core.backtest import check_lookahead
from v7.plugins.synthesizers.learned import LearnedConfig, LearnedSynthesizer
from v7.plugins.synthesizers.learned.learner import SymbolLearner

BARS = 1600
SETTINGS = {"model": "logistic", "horizon": 1, "min_train": 300, "retrain_every": 250}


@pytest.fixture(scope="module")
def registry():
    return make_learned_registry()


@pytest.fixture(scope="module")
def full_history(tmp_path_factory):
    """AR(1) candles and a model file trained on all of them (what `v7 train` without --end writes)."""
    candles = ar1(31, BARS, 0.15)
    trainer = LearnedSynthesizer(LearnedConfig(**SETTINGS))
    drive(trainer, candles)
    path = tmp_path_factory.mktemp("learned-range") / "full.npz"
    trainer.save_model(path, {})
    model = trainer._learners[SYMBOL].model
    return candles, path, model


def said(signal):
    return signal.index, signal.direction, signal.confidence, signal.synthesizer


def test_a_model_trained_on_the_full_history_answers_no_bar_before_its_training_end(full_history):
    candles, path, model = full_history
    answers_from = model.last_label_time + HOUR  # embargo = horizon = 1 bar
    assert answers_from == int(candles.timestamp[-1])  # trained on every label the history made known
    loaded = LearnedSynthesizer(LearnedConfig(**SETTINGS, model_path=str(path), retrain_live=False))
    answers = drive(loaded, candles)
    before = [(t, a) for t, a in answers if int(candles.timestamp[t]) < answers_from]
    assert len(before) == BARS - LOOKBACK
    for t, answer in before:
        assert isinstance(answer, SynthesisFailed), (t, answer)
        # The reason names the model's training end and the bar, for the signal's fallback_reason.
        assert f"outcomes up to {format_utc(model.last_label_time)}" in answer.reason
        assert f"may answer from {format_utc(answers_from)}" in answer.reason and f"not bar {format_utc(int(candles.timestamp[t]))}" in answer.reason
    last_t, last = answers[-1]
    assert isinstance(last, Synthesis) and last.learned_until.timestamp() == model.last_label_time <= int(candles.timestamp[last_t])


def test_with_learning_on_the_walk_forward_training_takes_over_before_the_models_end(registry, full_history):
    candles, path, _ = full_history
    loaded = backtest(learned_config(registry, model_path=str(path)), registry, candles)
    fresh = backtest(learned_config(registry), registry, candles)
    a, b = loaded.signals[SYMBOL], fresh.signals[SYMBOL]
    # The file changes no signal: the bars before its end are answered as a walk-forward backtest answers them.
    assert [said(s) for s in a] == [said(s) for s in b]
    assert sum(1 for s in a if s.synthesizer == "learned") > 1000
    first = next(s for s in a if s.synthesizer == "learned")
    warm = [s for s in a if s.index < first.index]
    assert warm and all(s.synthesizer == "consensus" for s in warm)
    assert all("the model file's model learned from outcomes up to" in s.fallback_reason
               and "learning walk-forward from the bars shown instead; learning: " in s.fallback_reason for s in warm)
    # Every learned answer came from a model whose labels ended before its bar.
    assert all(s.learned_until is not None and s.learned_until < s.timestamp for s in a if s.synthesizer == "learned")
    (ca, sa), (cb, sb) = head(loaded), head(fresh)
    assert (ca.bars, ca.model_answered) == (cb.bars, cb.model_answered)
    assert sa.ic.value == sb.ic.value and sa.calibration.slope == sb.calibration.slope


def test_out_of_sample_scores_never_include_bars_before_the_models_end(registry, full_history):
    candles, path, model = full_history
    split = 1200
    config = learned_config(registry, model_path=str(path), retrain_live=False)
    run = backtest(config, registry, candles)
    signals = run.signals[SYMBOL]
    assert all(s.synthesizer == "consensus" and "not bar" in s.fallback_reason for s in signals[:-1])
    comparison = next(c for c in run.result.learning if c.symbol == SYMBOL)
    # Only the history's last bar is after the model's training end: nothing before it is scored as "out of sample".
    assert comparison.model_answered <= 1 and comparison.bars <= 1
    assert comparison.first_model_bar is None or comparison.first_model_bar.timestamp() >= model.last_label_time + HOUR
    # A model file trained on part of the history answers the later bars, and only those.
    trainer = LearnedSynthesizer(LearnedConfig(**SETTINGS))
    drive(trainer, candles.slice(0, split + 1))
    partial = path.with_name("partial.npz")
    trainer.save_model(partial, {})
    run = backtest(learned_config(registry, model_path=str(partial), retrain_live=False), registry, candles)
    answered = [s for s in run.signals[SYMBOL] if s.synthesizer == "learned"]
    assert [s.index for s in answered] == list(range(split, BARS))
    comparison = next(c for c in run.result.learning if c.symbol == SYMBOL)
    assert comparison.first_model_bar.timestamp() == int(candles.timestamp[split]) and comparison.model_answered == BARS - split


def test_the_lookahead_check_flags_a_model_whose_training_range_reaches_past_the_bar(registry, full_history, monkeypatch):
    """The old behaviour (a loaded model answering any bar) put back by hand: the check must catch it."""
    candles, path, model = full_history
    monkeypatch.setattr(SymbolLearner, "check_loaded", lambda self, time, symbol: None)
    monkeypatch.setattr(SymbolLearner, "answers_from", lambda self: None)
    config = learned_config(registry, model_path=str(path), retrain_live=False, backtest={"lookahead_sample": 2})
    run = backtest(config, registry, candles)
    leaked = [s for s in run.signals[SYMBOL] if s.synthesizer == "learned"]
    assert len(leaked) == BARS - LOOKBACK + 1  # the in-sample model answered every bar
    report = check_lookahead(run, registry_factory=make_learned_registry)
    assert not report.ok
    flagged = [d for d in report.differences if d.field == "learned model trained past the bar (learned until)"]
    # Every bar before the end of the model's last label (the history's last two bars are not before it).
    assert len(flagged) == sum(1 for s in leaked if s.timestamp < model.last_label_time) == len(leaked) - 2
    assert {d.backtest for d in flagged} == {format_utc(model.last_label_time)}
    assert all(d.recomputed == f"≤ {format_utc(d.bar_time)}" for d in flagged)


def test_the_lookahead_check_flags_nothing_in_an_honest_backtest_with_a_model_file(registry, full_history):
    candles, path, _ = full_history
    run = backtest(learned_config(registry, model_path=str(path), backtest={"lookahead_sample": 2}), registry, candles.slice(0, 900))
    report = check_lookahead(run, registry_factory=make_learned_registry)
    assert report.error is None and report.ok, report.differences[:5]
    assert np.all([s.learned_until < s.timestamp for s in run.signals[SYMBOL] if s.synthesizer == "learned"])


@pytest.mark.parametrize("retrain_live", [True, False])
def test_a_live_run_with_a_model_file_keeps_retraining_on_schedule_only_when_told(retrain_live, tmp_path):
    """`retrain_live`: a run that loaded a model trained on the first 900 bars retrains every `retrain_every`
    bars on what it is shown after (each answer's training range moves on); off, the file's model answers throughout."""
    candles = ar1(37, BARS, 0.15)
    trainer = LearnedSynthesizer(LearnedConfig(**SETTINGS))
    drive(trainer, candles.slice(0, 900))
    path = tmp_path / "first-900.npz"
    trainer.save_model(path, {})
    trained_until = trainer._learners[SYMBOL].model.last_label_time

    live = LearnedSynthesizer(LearnedConfig(**SETTINGS, model_path=str(path), retrain_live=retrain_live))
    answered = [a for t, a in drive(live, candles, start=900) if isinstance(a, Synthesis)]
    ranges = sorted({int(a.learned_until.timestamp()) for a in answered})
    assert len(answered) == BARS - 900 and ranges[0] == trained_until
    if retrain_live:  # 700 bars shown, a retraining every 250: two or three newer models, each trained on later outcomes
        assert 2 <= len(ranges) - 1 <= 3 and all(b - a >= 200 * HOUR for a, b in zip(ranges, ranges[1:]))
    else:
        assert ranges == [trained_until]
