"""Shannon (permutation) entropy: structure is seen, scale is not, and the histogram trap is documented."""

from __future__ import annotations

import math

import numpy as np
import pytest

import synthetic
from v7.plugins.theories.shannon_entropy import ShannonEntropy, histogram_entropy, iid_null, permutation_entropy

SEEDS = range(10)
N = 1000


def prices(returns: np.ndarray, start: float = 100.0):
    return synthetic.series(synthetic.prices_from_log_returns(returns, start))


def shuffled(returns: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(returns)


@pytest.mark.parametrize("order,delay", [(3, 1), (4, 1), (5, 1), (5, 2), (6, 1)])
def test_matches_entropyhub_permen(order, delay):
    import EntropyHub

    x = synthetic.ar1(0.5, 1500, seed=order * 10 + delay)
    perm, _, _ = EntropyHub.PermEn(x, m=order, tau=delay, Logx=2, Norm=False)
    reference = perm[-1] / math.log2(math.factorial(order))  # Norm=True crashes on NumPy 2
    assert permutation_entropy(x, order, delay) == pytest.approx(reference, abs=1e-12)
    # The batched form used for the calibration gives the same numbers row by row.
    rows = np.stack([x, x[::-1]])
    assert permutation_entropy(rows, order, delay) == pytest.approx(
        [permutation_entropy(x, order, delay), permutation_entropy(x[::-1], order, delay)], abs=1e-12
    )


@pytest.mark.parametrize(
    "make",
    [lambda s: synthetic.ar1(0.9, N, s), lambda s: synthetic.sine_plus_noise(N, s, period=20, amplitude=0.02, noise=0.01)],
    ids=["ar1_0.9", "sine_plus_noise"],
)
def test_structure_ranks_below_white_noise_and_its_own_shuffle(make):
    theory = ShannonEntropy()
    noise = [theory.analyze(prices(synthetic.white_noise(N, 100 + s))).metrics["entropy"] for s in SEEDS]
    for s in SEEDS:
        returns = make(s)
        structured = theory.analyze(prices(returns))
        mixed = theory.analyze(prices(shuffled(returns, s)))
        assert structured.metrics["entropy"] < min(noise) - 0.01
        assert structured.metrics["entropy"] < mixed.metrics["entropy"] - 0.01
        assert structured.label == "predictable"
        assert mixed.label == "random" or mixed.metrics["entropy_z"] < 2.5


def test_white_noise_is_random_and_the_iid_calibration_holds():
    theory = ShannonEntropy()
    results = [theory.analyze(prices(synthetic.white_noise(N, 200 + s))) for s in range(60)]
    z = np.array([r.metrics["entropy_z"] for r in results])
    assert abs(z.mean()) < 0.4 and 0.6 < z.std() < 1.4
    assert sum(r.label == "random" for r in results) >= 0.9 * len(results)
    mean, std = iid_null(N - 1, 5, 1, 300, 7)
    assert mean == pytest.approx(0.9876, abs=0.002) and 0 < std < 0.005


def test_weak_ar_is_seen_by_autocorrelation_not_entropy():
    theory = ShannonEntropy()
    results = [theory.analyze(prices(synthetic.ar1(0.1, N, 300 + s))) for s in range(20)]
    assert np.median([r.metrics["autocorrelation_z"] for r in results]) > 2.5
    assert np.median([r.metrics["entropy_z"] for r in results]) < 2.5
    assert sum(r.label == "weakly_predictable" for r in results) >= 12


@pytest.mark.parametrize("factor", [1000.0, 1e-5])
def test_scale_invariant(factor):
    theory = ShannonEntropy()
    close = synthetic.prices_from_log_returns(synthetic.ar1(0.3, N, 4))
    a = theory.analyze(synthetic.series(close))
    b = theory.analyze(synthetic.series(close * factor))
    assert a.label == b.label
    for key in ("entropy", "entropy_z", "lag1_autocorrelation", "autocorrelation_z"):
        assert a.metrics[key] == pytest.approx(b.metrics[key], abs=1e-9)


def test_histogram_entropy_measures_shape_not_predictability():
    """The original plan's metric: blind to scale and to order, lowered by fat tails."""
    rng = np.random.default_rng(0)
    gaussian = rng.standard_normal(300)
    assert histogram_entropy(gaussian * 0.1, 50) == pytest.approx(histogram_entropy(gaussian * 5, 50), abs=1e-12)
    ar = synthetic.ar1(0.9, N, 1)
    assert histogram_entropy(ar, 50) == pytest.approx(histogram_entropy(shuffled(ar, 1), 50), abs=1e-12)
    fat = rng.standard_t(2, 2000)
    assert histogram_entropy(fat, 50) < histogram_entropy(rng.standard_normal(2000), 50) - 0.1
    theory = ShannonEntropy()
    a = theory.analyze(prices(ar))
    b = theory.analyze(prices(shuffled(ar, 1)))
    assert a.metrics["return_distribution_entropy"] == pytest.approx(b.metrics["return_distribution_entropy"], abs=1e-3)
    assert a.metrics["entropy"] < b.metrics["entropy"] - 0.05


def test_not_directional_and_confidence_tracks_evidence():
    theory = ShannonEntropy()
    strong = theory.analyze(prices(synthetic.ar1(0.9, N, 9)))
    plain = theory.analyze(prices(synthetic.white_noise(N, 9)))
    assert strong.bias is None and plain.bias is None
    assert strong.confidence == 1.0 and plain.confidence < 0.5


def test_short_window_for_the_order_abstains():
    from v7 import InsufficientData

    theory = ShannonEntropy(ShannonEntropy.Config(order=7, min_candles=300))
    with pytest.raises(InsufficientData, match="ordinal patterns"):
        theory.analyze(prices(synthetic.white_noise(400, 1)))
