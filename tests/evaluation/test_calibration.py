"""Calibration: a confidence that is the hit probability has slope 1 and skill; one unrelated to hits has neither."""

from __future__ import annotations

import numpy as np
import pytest

from v7.core.evaluation import calibration


def test_a_confidence_that_is_the_hit_probability_is_calibrated():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.2, 0.8, 20_000)
    hit = (rng.random(20_000) < p).astype(float)
    result = calibration(p, hit, base_rate=0.5)
    assert result.n == 20_000
    assert abs(result.slope - 1) < 0.25 and abs(result.intercept) < 0.1
    assert result.brier_skill > 0
    assert result.brier == pytest.approx(np.mean((p - hit) ** 2))
    assert result.base_rate_brier == pytest.approx(np.mean((0.5 - hit) ** 2))
    assert len(result.bins) == 5 and sum(b.n for b in result.bins) == 20_000
    for b in result.bins:
        assert b.low <= b.mean_confidence <= b.high
        assert b.ci_low <= b.hit_rate <= b.ci_high
        assert b.hit_rate == pytest.approx(b.mean_confidence, abs=0.03)
    assert "slope" in result.note and "independent" in result.note


def test_a_confidence_unrelated_to_the_outcome_has_no_slope_and_no_skill():
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.3, 0.7, 20_000)
    hit = (rng.random(20_000) < 0.5).astype(float)
    result = calibration(confidence, hit, base_rate=np.full(20_000, 0.5))
    assert abs(result.slope) < 0.25
    assert result.brier_skill <= 0.001


def test_an_overconfident_signal_has_a_slope_below_one():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.35, 0.65, 20_000)
    hit = (rng.random(20_000) < p).astype(float)
    stretched = np.clip(0.5 + 2.5 * (p - 0.5), 0.01, 0.99)  # says 0.85 where the truth is 0.64
    result = calibration(stretched, hit, base_rate=0.5)
    assert 0.2 < result.slope < 0.7


def test_tied_confidence_merges_bins_and_never_leaves_one_empty():
    rng = np.random.default_rng(4)
    confidence = np.where(rng.random(300) < 0.8, 0.6, 0.9)
    hit = (rng.random(300) < confidence).astype(float)
    result = calibration(confidence, hit, base_rate=0.5, bins=5)
    assert 1 <= len(result.bins) <= 2
    assert all(b.n > 0 for b in result.bins) and sum(b.n for b in result.bins) == 300
    two_points = calibration(np.array([0.0, 1.0] * 30), np.array([0.0, 1.0] * 30), 0.5, bins=5)
    assert [b.n for b in two_points.bins] == [30, 30]


def test_the_slope_needs_twenty_signals_and_a_varying_confidence():
    rng = np.random.default_rng(5)
    few = calibration(rng.uniform(0.4, 0.6, 19), (rng.random(19) < 0.5).astype(float), 0.5)
    assert few.slope is None and few.intercept is None and few.brier is not None
    flat = calibration(np.full(100, 0.6), (rng.random(100) < 0.6).astype(float), 0.5)
    assert flat.slope is None and len(flat.bins) == 1
    empty = calibration(np.array([]), np.array([]), 0.5)
    assert empty.n == 0 and empty.bins == [] and empty.brier is None
