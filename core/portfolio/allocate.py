"""From the positions proposed per symbol to the book: weights relative to equal weight, signs kept, then caps.

For the n symbols with a non-zero proposed position p_i (the others stay 0):

1. the returns as held, s_i·r_i with s_i = sign(p_i), over the recent bars give the covariance Σ
   (so a long BTC beside a short ETH counts as the hedge it is);
2. long-only weights w over Σ (`weights.weights`: min_variance, inverse_vol or equal);
3. q_i = sign(p_i) · min(|p_i| · w_i · n, L_i): each |p_i| scaled by its weight relative to equal
   weight (1/n), sign kept, never past L_i, the symbol's own limit (min(max_position, loss_budget /
   CVaR) of its sizing); then, when Σ|q_i| > Σ|p_i|, every q_i times Σ|p_i| / Σ|q_i|: the step moves
   risk between symbols, it never adds any;
4. |q_i| ≤ max_symbol, then, when Σ|q_i| > max_gross, every q_i times max_gross / Σ|q_i|.

A sign never changes, so with shorting off no position is ever negative; after the weighting every
bound only lowers a position or scales the book down, so |q_i| ≤ L_i and Σ|q_i| ≤ Σ|p_i| hold. With
one symbol held, or fewer than n + 1 bars of returns, the weights are equal (only limits and caps act).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .config import PortfolioConfig
from .weights import covariance, weights

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


@dataclass(frozen=True)
class Allocation:
    """The adjusted positions, the weight of each symbol (0 for symbols not held) and why weights are equal, if they are."""

    positions: "np.ndarray"
    weights: "np.ndarray"
    equal_because: str | None = None


def cap(positions: "np.ndarray", max_symbol: float, max_gross: float) -> "np.ndarray":
    """|q_i| ≤ max_symbol each, then Σ|q_i| ≤ max_gross by one common scale; signs kept."""
    import numpy as np

    q = np.clip(np.asarray(positions, dtype=np.float64), -max_symbol, max_symbol)
    gross = float(np.abs(q).sum())
    if gross > max_gross:
        q = q * (max_gross / gross)
    return q


def within_limits(scaled: "np.ndarray", proposed: "np.ndarray", limits: "np.ndarray") -> "np.ndarray":
    """Step 3's bounds: |q_i| ≤ limits_i each, then Σ|q_i| ≤ Σ|proposed_i| by one common scale; signs kept."""
    import numpy as np

    q = np.sign(scaled) * np.minimum(np.abs(scaled), limits)
    gross, allowed = float(np.abs(q).sum()), float(np.abs(proposed).sum())
    if gross > allowed:
        q = q * (allowed / gross)
    return q


def allocate(
    proposed: Sequence[float] | "np.ndarray", returns: "np.ndarray | None", config: PortfolioConfig,
    limits: Sequence[float] | "np.ndarray | None" = None,
) -> Allocation:
    """The book for `proposed` positions (one per symbol) given `returns`, a (bars × symbols) matrix of
    the symbols' recent simple returns in the same order (None or too short: equal weights), and
    `limits`, each symbol's own largest |position| from its sizing (None: 1, a whole capital each)."""
    import numpy as np

    p = np.asarray(proposed, dtype=np.float64)
    own = np.ones(p.shape[0]) if limits is None else np.asarray(limits, dtype=np.float64)
    held = np.flatnonzero(p != 0.0)
    w = np.zeros(p.shape[0])
    reason = None
    if held.size == 0:
        return Allocation(np.zeros_like(p), w)
    if held.size == 1 or config.method == "equal":
        w[held] = 1.0 / held.size
        reason = None if config.method == "equal" else "one symbol held"
    else:
        r = None if returns is None else np.asarray(returns, dtype=np.float64)[:, held]
        if r is not None:
            r = r[np.all(np.isfinite(r), axis=1)]
        if r is None or r.shape[0] < held.size + 1:
            w[held] = 1.0 / held.size
            reason = f"{0 if r is None else r.shape[0]} bars of returns, fewer than the {held.size + 1} the covariance needs"
        else:
            w[held] = weights(config.method, covariance(r * np.sign(p[held])))
    scaled = np.zeros_like(p)
    scaled[held] = p[held] * w[held] * held.size
    return Allocation(cap(within_limits(scaled, p, own), config.max_symbol, config.max_gross), w, reason)


def aligned_returns(timestamps: Sequence["np.ndarray"], closes: Sequence["np.ndarray"], bars: int) -> "np.ndarray | None":
    """Simple returns over the last `bars` bars that every symbol has (common timestamps), one column per symbol."""
    import numpy as np

    if not timestamps:
        return None
    common = timestamps[0]
    for ts in timestamps[1:]:
        common = np.intersect1d(common, ts, assume_unique=True)
    common = common[-(bars + 1):]
    if common.size < 2:
        return None
    columns = []
    for ts, close in zip(timestamps, closes):
        c = np.asarray(close, dtype=np.float64)[np.searchsorted(ts, common)]
        columns.append(c[1:] / c[:-1] - 1.0)
    return np.column_stack(columns)
