"""`target = "quantile"`: the model is fitted on "forward return above its `target_quantile`" (the cut from the fitting
rows only), and its score is calibrated to P(up) as for the sign target, so BUY / SELL / HOLD and the confidence mean the
same and a quantile other than 0.5 no longer gives one direction on every bar (its base rate is not 0.5)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from learned_helpers import SYMBOL, ar1, backtest, head, learned_config, make_registry
from v7.plugins.synthesizers.learned import LearnedConfig
from v7.plugins.synthesizers.learned.model import fit

SETTINGS = {"min_train": 2000, "retrain_every": 1000, "calibration": "platt", "threshold": 0.51}
SMALL_TREES = {"leaves": 4, "trees": 60, "min_leaf_rows": 200}


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def rows(n: int, seed: int = 0):
    """One informative feature of n hourly rows with horizon 1: forward = 0.2 × feature + noise, plus a drift."""
    rng = np.random.default_rng(seed)
    feature = rng.standard_normal(n)
    forward = 0.002 + 0.01 * (0.2 * feature + rng.standard_normal(n))
    times = 3600 * np.arange(n, dtype=np.int64)
    return feature.reshape(-1, 1), forward, times, times + 3600


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_the_cut_comes_from_the_fitting_rows_and_the_probability_is_p_up(model):
    x, forward, times, label_times = rows(4000)
    cfg = LearnedConfig(model=model, horizon=1, target="quantile", target_quantile=0.8, min_train=500, calibration="platt", **(SMALL_TREES if model == "lightgbm" else {}))
    start = 4000 - 1000  # calibration_share 0.25
    shifted = forward.copy()
    shifted[start:] += 0.01  # the calibration slice's returns, well above the rest: they must not move the cut
    fitted = fit(x, shifted, times, label_times, ["f"], cfg, 1)
    fitting = np.nonzero(label_times[:start] < times[start])[0]
    assert fitted.threshold_return == pytest.approx(float(np.quantile(shifted[fitting], 0.8)))
    fitted = fit(x, forward, times, label_times, ["f"], cfg, 1)
    assert fitted.threshold_return == pytest.approx(float(np.quantile(forward[fitting], 0.8)))
    # The calibrated output is P(up), whose base rate here is ~0.58 (the drift), not P(top 20%) (0.2).
    assert fitted.base_rate == pytest.approx(float(np.mean(forward > 0)))
    p = fitted.probability(x[start:])
    assert abs(float(p.mean()) - float(np.mean(forward[start:] > 0))) < 0.02
    # And it ranks: a higher feature (a higher expected return) gives a higher P(up) (the trees' steps are not all monotone).
    grid = fitted.probability(np.linspace(-2, 2, 9).reshape(-1, 1))
    assert grid[-1] > grid[0] + 0.05
    assert model == "lightgbm" or np.all(np.diff(grid) > 0)


@pytest.mark.parametrize("model, quantile", [("logistic", 0.7), ("logistic", 0.3), ("lightgbm", 0.7)])
def test_a_quantile_target_gives_both_directions_and_finds_the_planted_structure(registry, model, quantile):
    options = {**SETTINGS, **(SMALL_TREES if model == "lightgbm" else {}), "target": "quantile", "target_quantile": quantile}
    run = backtest(learned_config(registry, model=model, **options), registry, ar1(1, 8000, 0.15))
    comparison, scores = head(run)
    learned = [s for s in run.signals[SYMBOL] if s.synthesizer == "learned"]
    mix = collections.Counter(s.direction for s in learned)
    assert len(learned) > 5800
    # Measured 35-52% BUY and SELL each: neither direction takes every bar.
    assert 0.25 < mix["BUY"] / len(learned) < 0.65 and 0.25 < mix["SELL"] / len(learned) < 0.65, mix
    assert scores.ic.low > 0 and scores.verdict.kind == "information", scores.verdict.text
    assert scores.calibration.brier < scores.calibration.base_rate_brier
