"""Walk-forward only: nothing after bar t changes a signal up to t, the lookahead check agrees (and catches a cheat),
and the model answering at t was trained on what was known by t, retrained on schedule, over the configured window."""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest

from learned_helpers import (
    HOUR, LOOKBACK, SYMBOL, ar1, backtest, drive, learned_config, make_learned_registry, series,
)
from v7 import CandleSeries, SynthesisFailed
from v7.core.backtest import check_lookahead
from v7.plugins.synthesizers.learned import LearnedConfig, LearnedSynthesizer

T = 1400  # the truncation bar: the first model answers from bar ~340, retrained every 250 bars


@pytest.fixture(scope="module")
def registry():
    return make_learned_registry()


def changed_after(candles: CandleSeries, t: int) -> CandleSeries:
    """The same candles up to bar t; after it another random walk (scaled by 1.5) and other volumes."""
    rng = np.random.default_rng(5)
    factor = np.ones(len(candles))
    factor[t + 1:] = 1.5 * np.cumprod(1 + rng.normal(0.001, 0.02, len(candles) - t - 1))
    return CandleSeries(
        symbol=candles.symbol, granularity=candles.granularity, timestamp=candles.timestamp.copy(),
        open=candles.open * factor, high=candles.high * factor, low=candles.low * factor, close=candles.close * factor,
        volume=np.concatenate([candles.volume[: t + 1], candles.volume[t + 1:][::-1] * 3]),
    )


def said(signal):
    return signal.index, signal.direction, signal.confidence, signal.synthesizer, signal.fallback_reason


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_changing_candles_after_t_changes_no_signal_up_to_t(registry, model):
    config = learned_config(registry, model=model, trees=30)
    original = ar1(11, 2000, 0.1)
    runs = [backtest(config, registry, h) for h in (original, changed_after(original, T))]
    a, b = (run.signals[SYMBOL] for run in runs)
    before = [(x, y) for x, y in zip(a, b) if x.index <= T]
    assert len(before) == T - LOOKBACK + 2
    assert [said(x) for x, _ in before] == [said(y) for _, y in before]
    assert sum(1 for x, _ in before if x.synthesizer == "learned") > 1000
    # The change is real: later bars (answered by models that learned from the new candles) differ.
    after = [(x, y) for x, y in zip(a, b) if x.index > T]
    assert sum(1 for x, y in after if x.confidence != y.confidence) > len(after) // 2


def test_the_lookahead_check_finds_nothing_in_a_learned_backtest(registry):
    config = learned_config(registry, model="lightgbm", trees=20, backtest={"lookahead_sample": 2})
    run = backtest(config, registry, ar1(12, 1200, 0.1))
    report = check_lookahead(run, registry_factory=make_learned_registry)
    assert report.error is None, report.error
    assert report.differences == [] and report.ok
    # The replay compared every signal up to the middle one (besides the 2 sampled bars' theories).
    assert report.checked >= len(run.signals[SYMBOL]) // 2


def test_the_lookahead_check_catches_a_learner_that_reads_the_future(registry):
    config = learned_config(registry, fallback="consensus", backtest={"lookahead_sample": 2})
    raw = config.effective()
    raw["synthesizer"] = {"use": "peeking_learner", "fallback": "consensus"}
    from v7.core.config import validate_config

    cheat = validate_config(raw, registry)
    run = backtest(cheat, registry, ar1(13, 400, 0.0))
    report = check_lookahead(run, registry_factory=make_learned_registry)
    assert report.error is None, report.error
    assert not report.ok
    # Truncated at the middle signal, the replay has no next close at that bar: its signal differs there.
    assert any(d.field.startswith("replayed ") for d in report.differences), report.differences


# -- the training contract, on the synthesizer itself --------------------------------------------


def watch(synthesizer: LearnedSynthesizer, candles: CandleSeries, start: int = LOOKBACK - 1):
    """Per bar answered by a model: (t, bar time, the model object, the learner's trainings so far)."""
    seen = []

    def record(t, answer):
        learner = synthesizer._learners[SYMBOL]
        if not isinstance(answer, SynthesisFailed):
            seen.append((t, int(candles.timestamp[t]), learner.model, learner.trainings))

    drive(synthesizer, candles, start, record)
    return seen


@pytest.mark.parametrize("horizon, embargo", [(1, None), (6, None), (4, 10)])
def test_the_model_at_bar_t_learned_only_labels_known_an_embargo_before_t(horizon, embargo):
    cfg = LearnedConfig(model="logistic", horizon=horizon, embargo=embargo, min_train=200, retrain_every=150)
    gap = horizon if embargo is None else embargo
    candles = ar1(14, 1100, 0.1)
    seen = watch(LearnedSynthesizer(cfg), candles)
    assert len(seen) > 700
    trained_at = {}
    for t, now, model, _ in seen:
        assert model.last_label_time + gap * HOUR <= now, (t, model.last_label_time, now)
        assert model.last_time + (horizon + gap) * HOUR <= now  # the newest row's own label ended an embargo before
        trained_at.setdefault(id(model), now)
    # Purged exactly, not more: each model's newest label is the newest that was known an embargo before its training bar.
    for t, now, model, _ in seen:
        assert model.last_label_time == trained_at[id(model)] - gap * HOUR


def test_retraining_happens_every_retrain_every_bars_and_a_rolling_window_keeps_the_last_rows():
    candles = ar1(15, 1500, 0.1)
    expanding = watch(LearnedSynthesizer(LearnedConfig(model="logistic", horizon=1, min_train=200, retrain_every=120)), candles)
    firsts = [t for i, (t, _, model, _) in enumerate(expanding) if i == 0 or model is not expanding[i - 1][2]]
    assert len(firsts) >= 9
    assert set(np.diff(firsts).tolist()) == {120}
    assert [trainings for _, _, _, trainings in expanding][-1] == len(firsts)
    models = [expanding[[t for t, *_ in expanding].index(f)][2] for f in firsts]
    assert [m.trained_rows for m in models] == sorted(m.trained_rows for m in models)  # expanding: more rows each time
    assert {m.first_time for m in models} == {models[0].first_time}

    rolling = watch(LearnedSynthesizer(LearnedConfig(model="logistic", horizon=1, min_train=200, retrain_every=120, window=300)), candles)
    models = list({id(m): m for _, _, m, _ in rolling}.values())
    assert len(models) >= 9
    assert all(m.trained_rows == 300 for m in models[1:])
    assert models[0].trained_rows == 200  # the first model has what min_train asked for (fewer than the window)
    firsts = [m.first_time for m in models[1:]]
    assert np.diff(firsts).tolist() == [120 * HOUR] * (len(firsts) - 1)  # the window slides with the retraining
    for m in models:
        assert (m.last_time - m.first_time) // HOUR == m.trained_rows - 1


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_the_same_bars_and_seed_give_the_same_signals(registry, model):
    candles = ar1(16, 1200, 0.1)
    same = [backtest(learned_config(registry, model=model, seed=3, trees=30), registry, candles).signals[SYMBOL] for _ in range(2)]
    assert [said(s) for s in same[0]] == [said(s) for s in same[1]]
    if model == "lightgbm":  # the seed is used: LightGBM subsamples rows and features
        other = backtest(learned_config(registry, model=model, seed=4, trees=30), registry, candles).signals[SYMBOL]
        assert [s.confidence for s in other] != [s.confidence for s in same[0]]


@pytest.mark.parametrize("threads, env, expected", [(3, "4", 3), (3, "1", 1), (None, "2", 1), (None, "", 1)])
def test_lightgbm_trains_with_the_configured_threads_capped_by_the_engine(monkeypatch, threads, env, expected):
    """`threads` (default 1) capped by OMP_NUM_THREADS, which `limit_threads(engine.max_threads)` sets before a run."""
    used = []
    train = lightgbm.train

    def spy(params, *args, **kwargs):
        used.append(params["num_threads"])
        # Trained on one thread here all the same: an OpenMP pool in the test process would hang later forks.
        return train({**params, "num_threads": 1}, *args, **kwargs)

    monkeypatch.setattr(lightgbm, "train", spy)
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    cfg = LearnedConfig(model="lightgbm", min_train=100, retrain_every=100, trees=5, threads=threads)
    drive(LearnedSynthesizer(cfg), ar1(17, 400, 0.1))
    assert len(used) >= 2 and set(used) == {expected}


def test_a_constant_feature_and_a_flat_stretch_do_not_break_training():
    """Volume constant (z-score 0), then a stretch of equal closes (zero returns): the model still trains and answers."""
    close = ar1(18, 900, 0.1).close / 100
    close[400:460] = close[400]
    candles = series(close)
    candles.volume[:] = 7.0
    answers = drive(LearnedSynthesizer(LearnedConfig(model="logistic", min_train=200, retrain_every=100)), candles)
    answered = [t for t, a in answers if not isinstance(a, SynthesisFailed)]
    assert answered and answered[-1] == len(candles) - 1
    assert all(np.isfinite(a.confidence) for _, a in answers if not isinstance(a, SynthesisFailed))
