"""Hit rate, base rate and edge on data with known answers; signed score; rank IC per symbol and pooled."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from v7.core.evaluation import base_rate, edge, hit_rate, mean_return, pooled_rank_ic, rank_ic, signed_score

NAN = float("nan")


def test_base_rate_is_the_share_of_up_or_down_moves_over_the_scored_bars():
    forward = np.array([0.01, -0.02, 0.0, 0.03, NAN])
    assert base_rate(forward, "BUY") == pytest.approx(0.5)
    assert base_rate(forward, "SELL") == pytest.approx(0.25)  # a zero move is nobody's hit
    assert base_rate(np.array([NAN]), "BUY") is None
    with pytest.raises(ValueError):
        base_rate(forward, "HOLD")


def constructed():
    """10 scored bars, 6 up; BUY on 4 of them (3 up), SELL on 3 (2 down), HOLD on 3; one bar without a forward return."""
    direction = np.array(["BUY", "BUY", "BUY", "BUY", "SELL", "SELL", "SELL", "HOLD", "HOLD", "HOLD", "BUY"], dtype=object)
    forward = np.array([0.01, 0.02, 0.03, -0.01, -0.02, -0.01, 0.04, 0.05, 0.06, -0.03, NAN])
    return direction, forward


def test_hit_rate_and_edge_have_known_answers():
    direction, forward = constructed()
    buy = hit_rate(direction, forward, "BUY", block=2, resamples=200, seed=1)
    assert buy.value == pytest.approx(3 / 4) and buy.n == 4  # the BUY without a forward return is dropped
    sell = hit_rate(direction, forward, "SELL", block=2, resamples=200, seed=1)
    assert sell.value == pytest.approx(2 / 3) and sell.n == 3
    assert edge(direction, forward, "BUY", 2, 200, 1).value == pytest.approx(3 / 4 - 6 / 10)
    assert edge(direction, forward, "SELL", 2, 200, 1).value == pytest.approx(2 / 3 - 4 / 10)
    assert mean_return(direction, forward, "HOLD", 2, 200, 1).value == pytest.approx((0.05 + 0.06 - 0.03) / 3)
    assert buy.low is not None and 0 <= buy.low <= buy.high <= 1


def test_edge_is_zero_for_a_signal_that_buys_every_bar():
    rng = np.random.default_rng(3)
    forward = rng.standard_normal(500) + 0.3
    interval = edge(np.full(500, "BUY"), forward, "BUY", block=5, resamples=300, seed=2)
    assert interval.value == pytest.approx(0.0)
    assert interval.low == pytest.approx(0.0) and interval.high == pytest.approx(0.0)  # hit and base from the same draw


def test_a_skilled_signal_has_an_edge_over_a_drifting_base_rate():
    rng = np.random.default_rng(5)
    forward = rng.standard_normal(3000) + 0.2  # 58% of bars go up: a 58% BUY hit rate is no skill
    noisy = forward + rng.standard_normal(3000) * 2
    direction = np.where(noisy > 0, "BUY", "SELL")
    buy_edge = edge(direction, forward, "BUY", block=1, resamples=500, seed=1)
    assert buy_edge.value > 0.05 and buy_edge.excludes_zero() == 1
    blind = np.where(rng.random(3000) < 0.6, "BUY", "SELL")
    blind_hit = hit_rate(blind, forward, "BUY", block=1, resamples=500, seed=1)
    assert blind_hit.excludes_zero() == 1 and blind_hit.low > 0.5  # well above 50%...
    assert edge(blind, forward, "BUY", block=1, resamples=500, seed=1).covers(0.0)  # ...and no edge at all


def test_unknown_direction_names_are_refused():
    direction, forward = constructed()
    with pytest.raises(ValueError):
        hit_rate(direction, forward, "HOLD", 2, 100, 1)
    with pytest.raises(ValueError):
        mean_return(direction, forward, "buy", 2, 100, 1)


def test_signed_score():
    score = signed_score(["BUY", "SELL", "HOLD", None, "BUY", "SELL"], [0.5, 0.3, 0.9, 0.7, None, NAN])
    assert score.tolist() == [0.5, -0.3, 0.0, 0.0, 0.0, 0.0]


def test_rank_ic_value_is_scipy_spearman_with_nan_pairs_dropped():
    rng = np.random.default_rng(8)
    forward = rng.standard_normal(400)
    score = 0.3 * forward + rng.standard_normal(400)
    score[::17] = NAN
    forward[5::23] = NAN
    keep = np.isfinite(score) & np.isfinite(forward)
    interval = rank_ic(score, forward, block=4, resamples=500, seed=3)
    assert interval.value == pytest.approx(spearmanr(score[keep], forward[keep]).statistic, abs=1e-12)
    assert interval.n == int(keep.sum())
    assert interval.low < interval.value < interval.high
    assert interval.excludes_zero() == 1


def test_a_perfectly_monotone_score_has_ic_one():
    forward = np.random.default_rng(1).standard_normal(200)
    interval = rank_ic(np.exp(forward), forward, block=3, resamples=200, seed=1)
    assert interval.value == pytest.approx(1.0)
    assert interval.low == pytest.approx(1.0) and interval.high == pytest.approx(1.0)
    assert rank_ic(-forward, forward, 3, 200, 1).value == pytest.approx(-1.0)


def test_rank_ic_is_undefined_for_few_pairs_or_a_constant_side():
    assert rank_ic(np.arange(9.0), np.arange(9.0), 1, 100, 1).value is None
    constant = rank_ic(np.zeros(50), np.arange(50.0), 1, 100, 1)
    assert constant.value is None and constant.low is None and constant.n == 50


def test_rank_ic_chunks_large_inputs():
    rng = np.random.default_rng(2)
    forward = rng.standard_normal(100_000)
    interval = rank_ic(forward + rng.standard_normal(100_000) * 10, forward, block=24, resamples=60, seed=1)
    assert 0.05 < interval.value < 0.15 and interval.low < interval.value < interval.high


def test_pooled_rank_ic_of_identical_symbols_is_the_single_symbol_interval():
    """Four symbols that move as one carry one symbol's evidence, not four times as much."""
    rng = np.random.default_rng(6)
    forward = rng.standard_normal(300)
    score = 0.2 * forward + rng.standard_normal(300)
    times = np.arange(300) * 3600
    single = rank_ic(score, forward, block=6, resamples=400, seed=4)
    pooled = pooled_rank_ic(np.tile(score, 4), np.tile(forward, 4), np.tile(times, 4), block=6, resamples=400, seed=4)
    assert pooled.value == pytest.approx(single.value, abs=1e-12)
    assert pooled.low == pytest.approx(single.low, abs=1e-9) and pooled.high == pytest.approx(single.high, abs=1e-9)
    assert pooled.n == 1200 and "calendar-block" in pooled.method


def test_pooled_rank_ic_value_is_spearman_over_all_pairs():
    rng = np.random.default_rng(7)
    forward = rng.standard_normal(600)
    score = 0.2 * forward + rng.standard_normal(600)
    calendar = np.concatenate([np.arange(300), np.arange(300)])
    forward[3] = NAN
    pooled = pooled_rank_ic(score, forward, calendar, block=5, resamples=300, seed=1)
    keep = np.isfinite(forward)
    assert pooled.value == pytest.approx(spearmanr(score[keep], forward[keep]).statistic, abs=1e-12)
    assert pooled.n == 599 and pooled.low < pooled.value < pooled.high


def test_too_few_signals_for_the_blocks_give_no_interval():
    """With fewer than five blocks, resamples are rotations of the same data: a point estimate, no interval."""
    from v7.core.evaluation import edge, rank_ic

    rng = np.random.default_rng(2)
    f = rng.normal(size=40)
    score = f + rng.normal(size=40)
    few = rank_ic(score, f, block=16, resamples=200, seed=1)
    assert few.value is not None and few.low is None and few.high is None and "too few" in few.method
    direction = np.where(score > 0, "BUY", "SELL")
    assert edge(direction, f, "BUY", block=16, resamples=200, seed=1).low is None
    enough = rank_ic(score, f, block=4, resamples=200, seed=1)
    assert enough.low is not None and enough.low < enough.value < enough.high


def test_the_verdict_says_why_there_is_no_interval():
    from v7.core.evaluation import verdict

    rng = np.random.default_rng(4)
    f = rng.normal(size=276)
    few = verdict("BTC-USD", rank_ic(f + rng.normal(size=276), f, block=96, resamples=200, seed=1))
    assert few.kind == "insufficient" and "276 scored signals, too few for five bootstrap blocks" in few.text
