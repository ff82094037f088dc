"""markov_regime's EM (`_hmm_em.fit_em`) is hmmlearn's GaussianHMM.fit: the same parameters to the bit,
the same iteration count and likelihoods, the same errors, on real windows and adversarial starts."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic
from v7.plugins.theories._hmm_em import fit_em
from v7.plugins.theories.markov_regime import HmmParams, standardise, starting_points
from v7.testing import bundled_candles


def hmmlearn_fit(x: np.ndarray, start: HmmParams, n_iter: int, tol: float):
    """GaussianHMM.fit from `start` as markov_regime used to run it: (params, iterations, history)."""
    model = synthetic.hmmlearn_model(start, n_iter, tol)
    model.fit(x.reshape(-1, 1))
    params = HmmParams(model.startprob_, model.transmat_, model.means_[:, 0], model.covars_[:, 0, 0])
    return params, model.monitor_.iter, list(model.monitor_.history)


def windows(count: int = 12, length: int = 500) -> list[np.ndarray]:
    close = bundled_candles("BTC-USD").close
    ends = np.linspace(length + 1, close.shape[0], count).astype(int)
    return [standardise(close[end - length - 1:end])[1] for end in ends]


@pytest.mark.parametrize("n_iter,tol", [(200, 1e-2), (3, 0.0), (200, 1e-6)])
def test_same_bits_as_hmmlearn_on_real_windows(n_iter, tol):
    for x in windows():
        for start in starting_points(x, 3, 7):
            expected, iterations, history = hmmlearn_fit(x, start, n_iter, tol)
            run = fit_em(x, start, n_iter, tol)
            assert run.iterations == iterations and len(run.history) == len(history)
            assert run.history[-1] == history[-1]
            for ours, theirs in zip(run.params, expected):
                assert np.array_equal(ours, theirs)


def test_same_bits_on_a_known_regime_chain_and_the_same_error_from_a_hopeless_start():
    returns, _ = synthetic.two_state_regime(800, 4, (0.005, 0.02), 0.98)
    x = (returns - returns.mean()) / returns.std()
    for start in starting_points(x, 3, 3):
        expected, iterations, _ = hmmlearn_fit(x, start, 200, 1e-2)
        run = fit_em(x, start, 200, 1e-2)
        assert run.iterations == iterations
        assert all(np.array_equal(a, b) for a, b in zip(run.params, expected))
    # Both states far out in the tail: every frame probability underflows and both refuse alike.
    hopeless = HmmParams(np.array([0.9, 0.1]), np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([30.0, 31.0]), np.array([0.01, 0.02]))
    with pytest.raises(ValueError, match="underflow") as theirs:
        hmmlearn_fit(x, hopeless, 200, 1e-2)
    with pytest.raises(ValueError, match="underflow") as ours:
        fit_em(x, hopeless, 200, 1e-2)
    assert str(ours.value) == str(theirs.value)


def test_bad_input_raises_value_error_as_hmmlearn_does():
    x = windows(1)[0]
    start = starting_points(x, 1, 7)[0]
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit_em(np.where(np.arange(x.shape[0]) == 7, np.nan, x), start, 10, 1e-2)
    with pytest.raises(ValueError, match="covars must be positive"):
        fit_em(x, start._replace(variances=np.array([1.0, 0.0])), 10, 1e-2)
    with pytest.raises(ValueError, match="sum to 1"):
        fit_em(x, start._replace(transmat=np.array([[0.9, 0.2], [0.1, 0.9]])), 10, 1e-2)
