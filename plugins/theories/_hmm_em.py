"""EM for markov_regime's two-state Gaussian HMM on one sequence: hmmlearn's `GaussianHMM.fit` step for step.

hmmlearn's estimator layer (scikit-learn's `BaseEstimator`, input checks, a dict of statistics per
step) costs ~0.2 ms per EM iteration and importing it ~1 s (scikit-learn); the arithmetic is its
C recursions. `fit_em` calls the same recursions (`hmmlearn._hmmc`: the scaled forward and backward
passes and the ξ sums) and does hmmlearn's E- and M-step arithmetic in the same order, with its
default priors (diagonal covariance, `implementation="scaling"`, `init_params=""`), so it gives the
same parameters and the same iteration count (`tests/theories/test_hmm_em.py` compares them with
hmmlearn itself). `_hmmc` is hmmlearn's private module: pyproject pins hmmlearn below 0.4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .markov_regime import HmmParams

COVARS_PRIOR = 1e-2  # GaussianHMM's defaults: covars_prior, covars_weight; means_prior = means_weight = 0,
COVARS_WEIGHT = 1.0  # startprob_prior = transmat_prior = 1
MIN_DENOMINATOR = 1e-5


class EmRun(NamedTuple):
    """What EM ended with: the parameters after the last M-step, the iterations run (`n_iter` when it
    ran out rather than converged, as hmmlearn's `monitor_.iter`) and each E-step's log-likelihood."""

    params: "HmmParams"
    iterations: int
    history: list[float]


def _normalized(a: "np.ndarray", axis: int | None = None) -> "np.ndarray":
    """hmmlearn's `normalize`, in place: rows (or the whole) divided by their sum, a zero row sum left as 1."""
    total = a.sum(axis)
    if axis and a.ndim > 1:
        total[total == 0] = 1
        total = total.reshape(a.shape[0], 1)
    a /= total
    return a


def _check_start(start: "HmmParams") -> None:
    """The checks `GaussianHMM.fit` makes on its starting parameters (ValueError, as hmmlearn raises)."""
    def near_one(total: float) -> bool:  # np.allclose(total, 1): |total − 1| ≤ 1e-8 + 1e-5, without its overhead
        return abs(total - 1.0) <= 1e-8 + 1e-5

    if not all(v > 0 for v in start.variances.tolist()):
        raise ValueError("'diag' covars must be positive")
    if not near_one(float(start.startprob.sum())):
        raise ValueError("startprob_ must sum to 1")
    if not all(near_one(total) for total in start.transmat.sum(axis=-1).tolist()):
        raise ValueError("transmat_ rows must sum to 1")


def fit_em(x: "np.ndarray", start: "HmmParams", n_iter: int, tol: float) -> EmRun:
    """EM from `start` on the 1-D sequence `x` until the log-likelihood gains less than `tol` or `n_iter` steps ran.

    Raises ValueError where hmmlearn does (non-finite data, a bad start, a forward pass that underflows)."""
    import numpy as np
    from hmmlearn import _hmmc

    from .markov_regime import HmmParams

    X = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    if not np.isfinite(X).all():
        raise ValueError("Input contains NaN or infinity")
    _check_start(start)
    startprob = np.array(start.startprob, dtype=np.float64)
    transmat = np.array(start.transmat, dtype=np.float64)
    means = np.array(start.means, dtype=np.float64).reshape(2, 1)
    covars = np.array(start.variances, dtype=np.float64).reshape(2, 1)
    X2 = X ** 2
    log_2pi = np.log(2 * np.pi)
    tiny = np.finfo(float).tiny
    history: list[float] = []
    for _ in range(n_iter):
        # E-step: hmmlearn's _log_multivariate_normal_density_diag, then exp
        safe = np.maximum(covars.T, tiny)  # (1, 2): hmmlearn's (states, features) covariances, transposed
        with np.errstate(over="ignore", under="ignore"):
            frameprob = np.exp(-0.5 * (1 * log_2pi + np.log(safe)[0] + (X - means.T) ** 2 / safe))
        log_prob, fwd, scaling = _hmmc.forward_scaling(startprob, transmat, frameprob)
        bwd = _hmmc.backward_scaling(startprob, transmat, frameprob, scaling)
        posteriors = _normalized(fwd * bwd, axis=1)
        start_stat = 0 + posteriors[0]
        trans_stat = 0 + _hmmc.compute_scaling_xi_sum(fwd, transmat, bwd, frameprob) if X.shape[0] > 1 else np.zeros((2, 2))
        post = 0 + posteriors.sum(axis=0)
        obs = 0 + posteriors.T @ X
        obs2 = 0 + posteriors.T @ X2
        # M-step: hmmlearn's _BaseHMM._do_mstep then GaussianHMM's, default priors
        new_start = np.maximum(1.0 - 1 + start_stat, 0)
        startprob = _normalized(np.where(startprob == 0, 0, new_start))
        new_trans = np.maximum(1.0 - 1 + trans_stat, 0)
        transmat = _normalized(np.where(transmat == 0, 0, new_trans), axis=1)
        denom = post[:, None]
        means = (0.0 * 0.0 + obs) / (0.0 + denom)
        meandiff = means - 0.0
        c_n = 0.0 * meandiff ** 2 + obs2 - 2 * means * obs + means ** 2 * denom
        c_d = max(COVARS_WEIGHT - 1, 0) + denom
        covars = (COVARS_PRIOR + c_n) / np.maximum(c_d, MIN_DENOMINATOR)
        history.append(float(log_prob))
        if len(history) >= 2 and history[-1] - history[-2] < tol:
            break
    return EmRun(HmmParams(startprob.copy(), transmat.copy(), means[:, 0].copy(), covars[:, 0].copy()), len(history), history)
