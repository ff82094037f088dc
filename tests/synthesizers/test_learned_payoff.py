"""The Kelly payoff `learned` states (`Synthesis.payoff`) comes from its own past signals: b of the BUYs (or SELLs) its
model would have given on the calibration slice of its training window, rows whose forward return was known before the
bar; too few such signals state none (sizing then uses the window's ratio); the model file keeps it."""

from __future__ import annotations

import numpy as np
import pytest

from learned_helpers import HOUR, SYMBOL, ar1, drive
from v7 import Synthesis
from v7.plugins.synthesizers.learned import LearnedConfig, LearnedSynthesizer
from v7.plugins.synthesizers.learned.model import MIN_PAYOFF_SIGNALS, signal_payoffs

SETTINGS = {"model": "logistic", "horizon": 1, "min_train": 300, "retrain_every": 250, "threshold": 0.51}


def test_signal_payoffs_are_the_mean_gain_over_the_mean_loss_of_each_direction_s_signals():
    p_up = np.array([0.6] * 40 + [0.5] * 20 + [0.4] * 40)
    simple = np.array([0.03, -0.01] * 20 + [0.5, -0.5] * 10 + [-0.02, 0.04] * 20)
    buy, sell = signal_payoffs(p_up, np.log1p(simple), threshold=0.55)
    assert buy == pytest.approx(0.03 / 0.01)  # the HOLD rows' large moves count for neither
    assert sell == pytest.approx(0.02 / 0.04)  # a SELL gains when the price falls
    few = signal_payoffs(p_up[: MIN_PAYOFF_SIGNALS - 1], np.log1p(simple[: MIN_PAYOFF_SIGNALS - 1]), threshold=0.55)
    assert few == (None, None)
    assert signal_payoffs(np.full(50, 0.6), np.full(50, 0.01), 0.55) == (None, None)  # no loss: no ratio


def test_each_answer_s_payoff_is_its_model_s_from_calibration_rows_known_before_the_bar():
    synthesizer = LearnedSynthesizer(LearnedConfig(**SETTINGS))
    candles = ar1(21, 1400, 0.25)
    checked = {}

    def check(t, answer):
        if not isinstance(answer, Synthesis) or answer.direction == "HOLD":
            return
        learner = synthesizer._learners[SYMBOL]
        model, table = learner.model, learner.table
        assert answer.payoff == (model.payoff_buy if answer.direction == "BUY" else model.payoff_sell)
        if id(model) in checked:
            return
        rows = np.nonzero((table.times[: table.rows] >= model.first_time) & (table.times[: table.rows] <= model.last_time)
                          & ~np.isnan(table.forward[: table.rows]))[0]
        assert rows.shape[0] == model.trained_rows
        calibrating = rows[-model.calibration.rows:]
        # Past signals only: every calibration row's forward return was known an embargo before this bar.
        assert np.all(table.label_times[calibrating] + HOUR <= int(candles.timestamp[t]))
        expected = signal_payoffs(model.probability(table.matrix(calibrating, model.names)), table.forward[calibrating], 0.51)
        assert (model.payoff_buy, model.payoff_sell) == pytest.approx(expected)
        checked[id(model)] = expected

    drive(synthesizer, candles, on_bar=check)
    assert len(checked) >= 4
    # Early models' calibration slices hold few SELL calls: those state no SELL payoff (sizing uses the window's).
    assert any(None not in pair for pair in checked.values()) and any(None in pair for pair in checked.values())


def test_the_model_file_keeps_the_payoffs(tmp_path):
    trainer = LearnedSynthesizer(LearnedConfig(**SETTINGS))
    drive(trainer, ar1(22, 900, 0.25))
    trainer.save_model(tmp_path / "m.npz", {})
    saved = trainer._learners[SYMBOL].model
    loaded = LearnedSynthesizer(LearnedConfig(**SETTINGS, model_path=str(tmp_path / "m.npz")))._saved[SYMBOL][1]
    assert saved.payoff_buy is not None and (loaded.payoff_buy, loaded.payoff_sell) == (saved.payoff_buy, saved.payoff_sell)
