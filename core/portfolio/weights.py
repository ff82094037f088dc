"""Long-only weights over symbols from the covariance of their returns (plain numpy).

- `equal`: w_i = 1/n.
- `inverse_vol`: w_i ∝ 1/σ_i (σ_i² the diagonal of Σ).
- `min_variance`: the long-only minimum-variance portfolio, min wᵀΣw subject to Σw_i = 1, w ≥ 0,
  by an active-set solve: on the symbols in the set S the analytic solution
  w_S = Σ_SS⁻¹1 / (1ᵀΣ_SS⁻¹1); while a weight is negative the most negative symbol leaves S; a
  symbol outside S whose marginal variance (Σw)_j is below the set's common λ = (Σw)_i, i ∈ S,
  would lower the variance and comes back (the KKT conditions). When Σ⁻¹1 is already
  non-negative this is the textbook w ∝ Σ⁻¹1. A singular Σ_SS is solved by least squares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

TOLERANCE = 1e-12


def covariance(returns: "np.ndarray") -> "np.ndarray":
    """Sample covariance (ddof = 1) of a (bars × symbols) matrix of returns."""
    import numpy as np

    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError(f"covariance needs at least 2 bars of returns per symbol, got shape {r.shape}")
    return np.atleast_2d(np.cov(r, rowvar=False, ddof=1))


def _solve_on(sigma: "np.ndarray", chosen: "np.ndarray") -> "np.ndarray":
    """w on `chosen` ∝ Σ_SS⁻¹1, summing to 1; zero elsewhere."""
    import numpy as np

    sub = sigma[np.ix_(chosen, chosen)]
    ones = np.ones(chosen.size)
    try:
        raw = np.linalg.solve(sub, ones)
    except np.linalg.LinAlgError:
        raw = np.linalg.lstsq(sub, ones, rcond=None)[0]
    w = np.zeros(sigma.shape[0])
    total = raw.sum()
    w[chosen] = raw / total if abs(total) > TOLERANCE else 1.0 / chosen.size
    return w


def min_variance(sigma: "np.ndarray") -> "np.ndarray":
    """Long-only minimum-variance weights of covariance `sigma` (active set, see the module docstring)."""
    import numpy as np

    sigma = np.asarray(sigma, dtype=np.float64)
    n = sigma.shape[0]
    inside = np.ones(n, dtype=bool)
    w = _solve_on(sigma, np.flatnonzero(inside))
    for _ in range(10 * n + 10):
        negative = np.flatnonzero(inside & (w < -TOLERANCE))
        if negative.size:
            inside[negative[np.argmin(w[negative])]] = False
            w = _solve_on(sigma, np.flatnonzero(inside))
            continue
        marginal = sigma @ w
        level = float(marginal[inside].mean())
        outside = np.flatnonzero(~inside & (marginal < level - 1e-12 * max(1.0, abs(level))))
        if not outside.size:
            break
        inside[outside[np.argmin(marginal[outside])]] = True
        w = _solve_on(sigma, np.flatnonzero(inside))
    w = np.clip(w, 0.0, None)
    return w / w.sum()


def inverse_vol(sigma: "np.ndarray") -> "np.ndarray":
    """w_i ∝ 1/σ_i; a symbol with zero variance gets all the weight (shared equally among such)."""
    import numpy as np

    vol = np.sqrt(np.clip(np.diag(np.asarray(sigma, dtype=np.float64)), 0.0, None))
    if np.any(vol <= TOLERANCE):
        w = (vol <= TOLERANCE).astype(np.float64)
    else:
        w = 1.0 / vol
    return w / w.sum()


def equal(n: int) -> "np.ndarray":
    import numpy as np

    return np.full(n, 1.0 / n)


def weights(method: str, sigma: "np.ndarray") -> "np.ndarray":
    """The weights of `method` ("min_variance", "inverse_vol" or "equal") for covariance `sigma`."""
    if method == "min_variance":
        return min_variance(sigma)
    if method == "inverse_vol":
        return inverse_vol(sigma)
    if method == "equal":
        return equal(sigma.shape[0])
    raise ValueError(f"portfolio method {method!r} is not one of min_variance, inverse_vol, equal")
