"""Block resampling: reproducible, i.i.d. when block = 1, wider when forward returns overlap, calendar blocks kept whole."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from v7.core.evaluation import (
    Interval, block_length, block_resample_indices, calendar_resample_indices, hit_rate, mean_return, percentile_interval,
)
from v7.core.evaluation.bootstrap import block_sums, index_chunks


def test_block_length_is_the_overlap_of_forward_returns():
    assert block_length(24, 6) == 4
    assert block_length(6, 1) == 6
    assert block_length(25, 6) == 5
    assert block_length(1, 6) == 1
    assert block_length(0, 1) == 1


def test_resamples_are_reproducible_for_a_seed_and_differ_for_another():
    a = block_resample_indices(100, 5, 50, seed=7)
    b = block_resample_indices(100, 5, 50, seed=7)
    c = block_resample_indices(100, 5, 50, seed=8)
    assert a.shape == (50, 100)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 100


def test_rows_are_circular_blocks_of_consecutive_indices():
    idx = block_resample_indices(103, 10, 20, seed=1)
    for row in idx:
        for start in range(0, 103, 10):
            piece = row[start:start + 10]
            assert np.array_equal(piece, (piece[0] + np.arange(piece.shape[0])) % 103)


def test_the_random_stream_does_not_depend_on_the_chunk_size():
    whole = block_resample_indices(57, 4, 33, seed=3)
    chunked = np.concatenate(list(index_chunks(57, 4, 33, seed=3, chunk=7)))
    assert np.array_equal(whole, chunked)


@pytest.mark.parametrize("m,block", [(103, 10), (2000, 6), (57, 1), (40, 40)])
def test_block_sums_are_the_sums_over_the_same_resamples(m, block):
    values = np.random.default_rng(5).normal(size=(3, m)) * [[1.0], [1e3], [1e-3]]
    idx = block_resample_indices(m, block, 250, seed=11)
    explicit = np.stack([values[:, row].sum(axis=1) for row in idx])
    fast = block_sums(values, block, 250, seed=11)
    assert fast.shape == (250, 3)
    assert np.allclose(fast, explicit, rtol=1e-12, atol=1e-12 * np.abs(values).sum(axis=1))


def test_block_one_hit_rate_matches_the_analytic_interval_on_iid_data():
    rng = np.random.default_rng(11)
    forward = rng.standard_normal(2000) + 0.05
    direction = np.full(2000, "BUY")
    interval = hit_rate(direction, forward, "BUY", block=1, resamples=2000, seed=5)
    p = float(np.mean(forward > 0))
    half = 1.96 * np.sqrt(p * (1 - p) / 2000)
    assert interval.value == pytest.approx(p)
    assert interval.n == 2000
    assert interval.low == pytest.approx(p - half, abs=0.01)
    assert interval.high == pytest.approx(p + half, abs=0.01)


def test_block_one_mean_return_matches_the_analytic_interval_on_iid_data():
    rng = np.random.default_rng(12)
    forward = rng.standard_normal(2000) * 0.01
    interval = mean_return(np.full(2000, "BUY"), forward, "BUY", block=1, resamples=2000, seed=5)
    half = 1.96 * forward.std(ddof=1) / np.sqrt(2000)
    assert interval.value == pytest.approx(forward.mean())
    assert interval.low == pytest.approx(forward.mean() - half, abs=0.1 * half)
    assert interval.high == pytest.approx(forward.mean() + half, abs=0.1 * half)


def test_overlapping_forward_returns_need_blocks_and_get_wider_intervals():
    rng = np.random.default_rng(13)
    close = np.exp(np.cumsum(rng.standard_normal(4000) * 0.01))
    horizon = 24
    forward = close[horizon:] / close[:-horizon] - 1  # step 1: each overlaps its 23 neighbours
    direction = np.full(forward.shape[0], "BUY")
    naive = mean_return(direction, forward, "BUY", block=1, resamples=1000, seed=2)
    blocked = mean_return(direction, forward, "BUY", block=block_length(horizon, 1), resamples=1000, seed=2)
    assert blocked.value == naive.value
    assert (blocked.high - blocked.low) > 2.5 * (naive.high - naive.low)
    assert "block 24, 1000 resamples, seed 2" in blocked.method


def test_calendar_resampling_keeps_same_time_observations_together():
    rng = np.random.default_rng(4)
    times = np.arange(60) * 3600
    calendar = np.concatenate([times, times, times[10:]])  # three symbols, the last one starts later
    rng.shuffle(calendar)
    groups = {t: set(np.flatnonzero(calendar == t)) for t in np.unique(calendar)}
    resamples = calendar_resample_indices(calendar, block=5, resamples=30, seed=9)
    assert len(resamples) == 30
    for idx in resamples:
        counts = Counter(idx.tolist())
        drawn = Counter(calendar[idx].tolist())
        for t, group_count in drawn.items():
            members = groups[t]
            multiplicity = group_count // len(members)
            assert group_count == multiplicity * len(members)
            assert all(counts[i] == multiplicity for i in members)
        assert sum(c // len(groups[t]) for t, c in drawn.items()) == 60  # as many times as the calendar has
    again = calendar_resample_indices(calendar, block=5, resamples=30, seed=9)
    assert all(np.array_equal(a, b) for a, b in zip(resamples, again))


def test_calendar_blocks_are_consecutive_times():
    calendar = np.repeat(np.arange(40), 2)  # two symbols at every time
    for idx in calendar_resample_indices(calendar, block=8, resamples=10, seed=1):
        t = calendar[idx][::2]  # one entry per drawn time
        for start in range(0, 40, 8):
            piece = t[start:start + 8]
            assert np.array_equal(piece, (piece[0] + np.arange(8)) % 40)


def test_percentile_interval_ignores_nan_and_needs_ten_estimates():
    estimates = np.concatenate([np.arange(101, dtype=float), [np.nan] * 5])
    interval = percentile_interval(estimates, 50.0, n=101, method="m")
    assert interval.low == pytest.approx(2.5) and interval.high == pytest.approx(97.5)
    few = percentile_interval(np.array([1.0] * 9 + [np.nan] * 50), 1.0, n=9, method="m")
    assert few.low is None and few.high is None and few.value == 1.0


def test_interval_covers_and_excludes_zero():
    above = Interval(value=0.2, low=0.1, high=0.3, n=50, method="m")
    below = Interval(value=-0.2, low=-0.3, high=-0.1, n=50, method="m")
    across = Interval(value=0.0, low=-0.1, high=0.1, n=50, method="m")
    empty = Interval(value=None, low=None, high=None, n=0, method="m")
    assert above.covers(0.2) and not above.covers(0.0)
    assert (above.excludes_zero(), below.excludes_zero(), across.excludes_zero(), empty.excludes_zero()) == (1, -1, 0, 0)
    assert not empty.covers(0.0)
    with pytest.raises(ValueError):
        Interval(value=0.0, low=0.0, high=0.0, n=1, method="m", extra=1)
