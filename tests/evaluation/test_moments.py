"""The scores' own ranks, correlations, p-values and moments equal scipy.stats' (which they replace to keep
its 0.5 s import out of every backtest)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from v7.core.evaluation.moments import correlation_p_value, kurtosis, pearson, rankdata, skewness, spearman


def samples():
    rng = np.random.default_rng(3)
    yield rng.normal(size=200), rng.normal(size=200)
    x = rng.standard_t(3, size=500)
    yield x, 0.3 * x + rng.normal(size=500)  # correlated, heavy tails
    yield np.round(rng.normal(size=300), 1), np.round(rng.normal(size=300), 1)  # many ties
    yield rng.integers(0, 3, size=50).astype(float), rng.normal(size=50)  # three values only


@pytest.mark.parametrize("x,y", list(samples()))
def test_ranks_correlations_and_p_values_equal_scipys(x, y):
    assert np.array_equal(rankdata(x), stats.rankdata(x))
    rho, rho_p = stats.spearmanr(x, y)
    r, r_p = stats.pearsonr(x, y)
    assert spearman(x, y) == pytest.approx(rho, abs=1e-13)
    assert pearson(x, y) == pytest.approx(r, abs=1e-13)
    assert correlation_p_value(spearman(x, y), x.shape[0]) == pytest.approx(rho_p, rel=1e-9, abs=1e-15)
    assert correlation_p_value(pearson(x, y), x.shape[0]) == pytest.approx(r_p, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("x,_", list(samples()))
def test_moments_equal_scipys(x, _):
    assert skewness(x) == pytest.approx(stats.skew(x), rel=1e-12, abs=1e-14)
    assert kurtosis(x) == pytest.approx(stats.kurtosis(x, fisher=False), rel=1e-12)


def test_constant_data_has_no_moments_or_correlation():
    flat = np.full(20, 1.5)
    assert math.isnan(skewness(flat)) and math.isnan(kurtosis(flat))
    assert math.isnan(pearson(flat, np.arange(20.0)))
    assert math.isnan(correlation_p_value(math.nan, 20)) and correlation_p_value(1.0, 20) == 0.0
