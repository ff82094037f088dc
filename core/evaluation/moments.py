"""The few `scipy.stats` functions the scores use, in numpy: ranks, correlations and their p-values, moments.

Importing `scipy.stats` costs ~0.5 s per process (more than scoring a 10,000-bar backtest); these
give scipy's values (to rounding: tests/evaluation/test_moments.py compares them) with only
`scipy.special` (a third of that) for the Student t tail.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def rankdata(a: "np.ndarray") -> "np.ndarray":
    """Ranks from 1, ties sharing their average rank (scipy's `rankdata`, method "average")."""
    import numpy as np

    x = np.asarray(a).ravel()
    order = np.argsort(x, kind="mergesort")
    ranked = x[order]
    starts = np.concatenate([[True], ranked[1:] != ranked[:-1]])
    group = np.cumsum(starts) - 1  # tie group of each sorted position
    bounds = np.concatenate([np.flatnonzero(starts), [x.shape[0]]])
    average = 0.5 * (bounds[:-1] + 1 + bounds[1:])  # mean of the ranks first+1 .. last of each group
    out = np.empty(x.shape[0], dtype=np.float64)
    out[order] = average[group]
    return out


def pearson(x: "np.ndarray", y: "np.ndarray") -> float:
    """Pearson's r (NaN when either side is constant)."""
    import numpy as np

    dx = np.asarray(x, dtype=np.float64) - np.mean(x)
    dy = np.asarray(y, dtype=np.float64) - np.mean(y)
    scale = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if not scale > 0:
        return math.nan
    return max(-1.0, min(1.0, float(dx @ dy) / scale))


def spearman(x: "np.ndarray", y: "np.ndarray") -> float:
    """Spearman's ρ: Pearson's r of the ranks."""
    return pearson(rankdata(x), rankdata(y))


def correlation_p_value(r: float, n: int) -> float:
    """Two-sided p of a correlation r over n pairs under no correlation: Student t with n − 2 degrees of freedom
    (what scipy's `pearsonr` and `spearmanr` report)."""
    from scipy.special import stdtr

    if not math.isfinite(r) or n < 3:
        return math.nan
    if abs(r) >= 1.0:
        return 0.0
    t = abs(r) * math.sqrt((n - 2) / ((1.0 - r) * (1.0 + r)))
    return float(min(1.0, 2.0 * stdtr(n - 2, -t)))


def _central_moments(a: "np.ndarray") -> tuple[float, float, float, float] | None:
    """(mean, m2, m3, m4) of `a` (biased), None when `a` is constant to rounding (scipy then gives NaN)."""
    import numpy as np

    x = np.asarray(a, dtype=np.float64)
    mean = float(x.mean())
    d = x - mean
    d2 = d * d
    m2 = float(d2.mean())
    if m2 <= (np.finfo(np.float64).resolution * mean) ** 2:
        return None
    return mean, m2, float((d2 * d).mean()), float((d2 * d2).mean())


def skewness(a: "np.ndarray") -> float:
    """Biased sample skewness m3 / m2^1.5 (scipy's `skew`); NaN for constant data."""
    moments = _central_moments(a)
    return math.nan if moments is None else moments[2] / moments[1] ** 1.5


def kurtosis(a: "np.ndarray") -> float:
    """Biased, non-excess kurtosis m4 / m2² (scipy's `kurtosis(fisher=False)`); NaN for constant data."""
    moments = _central_moments(a)
    return math.nan if moments is None else moments[3] / moments[1] ** 2
