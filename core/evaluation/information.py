"""Does a directional signal carry information? Hit rates against the base rate, and rank IC.

A 54% BUY hit rate means little when 53% of the same bars went up: the edge is the hit rate minus
that base rate, both recomputed inside every resample from the same indices. The rank IC (Spearman
correlation of a signed score with the forward return) uses every signal, HOLDs included. All
intervals are block-bootstrap intervals over the whole scored sequence (see `bootstrap`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .bootstrap import Interval, block_sums, method_text, percentile_interval

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

DIRECTIONS = ("BUY", "SELL")
MIN_PAIRS = 10
MIN_BLOCKS = 5  # fewer blocks than this and resamples are mostly rotations of the same data: no interval


def scored(direction: Sequence[Any] | "np.ndarray", forward: "np.ndarray") -> tuple["np.ndarray", "np.ndarray"]:
    """The directions (object array) and forward returns of the bars whose forward return is known."""
    import numpy as np

    d = np.asarray(direction, dtype=object)
    f = np.asarray(forward, dtype=np.float64)
    if d.shape != f.shape:
        raise ValueError(f"direction has {d.shape[0]} entries, forward {f.shape[0]}")
    known = np.isfinite(f)
    return d[known], f[known]


def success(forward: "np.ndarray", which: str) -> "np.ndarray":
    """What a `which` signal needs to hit: an up-move for BUY, a down-move for SELL (zero is a miss)."""
    if which not in DIRECTIONS:
        raise ValueError(f"which must be BUY or SELL, not {which!r}")
    return forward > 0 if which == "BUY" else forward < 0


def _ratio(numerator: "np.ndarray", denominator: "np.ndarray") -> "np.ndarray":
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _resampled_sums(quantities: list["np.ndarray"], block: int, resamples: int, seed: int) -> "np.ndarray | None":
    """Each quantity's sum over every moving-block resample, (resamples, k); None below MIN_BLOCKS blocks."""
    import numpy as np

    n = quantities[0].shape[0]
    if n == 0 or n < MIN_BLOCKS * block:
        return None
    return block_sums(np.stack([np.asarray(q, dtype=np.float64) for q in quantities]), block, resamples, seed)


def _nan(resamples: int) -> "np.ndarray":
    import numpy as np

    return np.full(resamples, np.nan)


def hit_rate(direction, forward, which: str, block: int, resamples: int, seed: int) -> Interval:
    """Share of `which` signals that hit, with the whole scored sequence resampled by blocks."""
    d, f = scored(direction, forward)
    chosen, good = d == which, success(f, which)
    count = int(chosen.sum())
    value = float(good[chosen].mean()) if count else None
    sums = _resampled_sums([chosen, chosen & good], block, resamples, seed)
    estimates = _nan(resamples) if sums is None else _ratio(sums[:, 1], sums[:, 0])
    return percentile_interval(estimates, value, count, method_text(block, resamples, seed))


def base_rate(forward, which: str) -> float | None:
    """Share of up-moves (for BUY) or down-moves (for SELL) over the scored bars: what a coin would hit."""
    import numpy as np

    f = np.asarray(forward, dtype=np.float64)
    f = f[np.isfinite(f)]
    return float(success(f, which).mean()) if f.shape[0] else None


def edge(direction, forward, which: str, block: int, resamples: int, seed: int) -> Interval:
    """hit(which) − base rate, in fraction units (0.012 = 1.2 points), both from the same resample."""
    d, f = scored(direction, forward)
    chosen, good = d == which, success(f, which)
    count = int(chosen.sum())
    value = float(good[chosen].mean() - good.mean()) if count else None
    sums = _resampled_sums([chosen, chosen & good, good], block, resamples, seed)
    # Every resample holds exactly n observations, so the base rate of a resample is Σ good / n.
    estimates = _nan(resamples) if sums is None else _ratio(sums[:, 1], sums[:, 0]) - sums[:, 2] / d.shape[0]
    return percentile_interval(estimates, value, count, method_text(block, resamples, seed))


def mean_return(direction, forward, which: str, block: int, resamples: int, seed: int) -> Interval:
    """Mean forward return after `which` signals (BUY, SELL or HOLD), unsigned."""
    import numpy as np

    if which not in (*DIRECTIONS, "HOLD"):
        raise ValueError(f"which must be BUY, SELL or HOLD, not {which!r}")
    d, f = scored(direction, forward)
    chosen = d == which
    count = int(chosen.sum())
    value = float(f[chosen].mean()) if count else None
    sums = _resampled_sums([chosen, np.where(chosen, f, 0.0)], block, resamples, seed)
    estimates = _nan(resamples) if sums is None else _ratio(sums[:, 1], sums[:, 0])
    return percentile_interval(estimates, value, count, method_text(block, resamples, seed))


def _pairs(score, forward) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    import numpy as np

    s = np.asarray(score, dtype=np.float64)
    f = np.asarray(forward, dtype=np.float64)
    if s.shape != f.shape:
        raise ValueError(f"score has {s.shape[0]} entries, forward {f.shape[0]}")
    keep = np.isfinite(s) & np.isfinite(f)
    return s[keep], f[keep], keep


def _spearman(s: "np.ndarray", f: "np.ndarray") -> float | None:
    """Spearman's correlation; None below MIN_PAIRS pairs or when either side is constant."""
    import numpy as np

    from .moments import spearman

    if s.shape[0] < MIN_PAIRS or np.ptp(s) == 0 or np.ptp(f) == 0:
        return None
    return spearman(s, f)


def _centred_ranks(x: "np.ndarray") -> "np.ndarray":
    from .moments import rankdata

    r = rankdata(x)
    return r - r.mean()


def _correlation_of_sums(sums: "np.ndarray", count: "np.ndarray") -> "np.ndarray":
    """Pearson correlation from Σx, Σy, Σx², Σy², Σxy over each resample of `count` observations."""
    import numpy as np

    sx, sy, sxx, syy, sxy = sums.T
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / count
        vx, vy = sxx - sx * sx / count, syy - sy * sy / count
        return np.where((vx > 0) & (vy > 0), cov / np.sqrt(np.maximum(vx * vy, 1e-300)), np.nan)


def rank_ic(score: "np.ndarray", forward: "np.ndarray", block: int, resamples: int, seed: int) -> Interval:
    """Spearman rank IC of a score with the forward return, with a moving-block interval.

    Each resample's IC is the Pearson correlation of the original ranks over the resampled indices
    (re-ranking inside every resample would cost a sort each and change little), in chunks small
    enough to keep memory under ~100 MB at n = 100,000.
    """
    import numpy as np

    s, f, _ = _pairs(score, forward)
    n = s.shape[0]
    method = method_text(block, resamples, seed)
    value = _spearman(s, f)
    if value is None:
        return Interval(value=None, low=None, high=None, n=n, method=method)
    if n < MIN_BLOCKS * block:
        return Interval(value=value, low=None, high=None, n=n, method=f"{method}: too few signals for {MIN_BLOCKS} blocks")
    rs, rf = _centred_ranks(s), _centred_ranks(f)
    sums = block_sums(np.stack([rs, rf, rs * rs, rf * rf, rs * rf]), block, resamples, seed)
    return percentile_interval(_correlation_of_sums(sums, np.full(resamples, float(n))), value, n, method)


def pooled_rank_ic(score, forward, calendar: "np.ndarray", block: int, resamples: int, seed: int) -> Interval:
    """Rank IC over several symbols' signals together, ranks pooled, with a calendar-block interval.

    Assets move together, so the resampled unit is a block of bar times with every symbol's signal
    at those times (`bootstrap.calendar_chunks`), not each symbol's signals on their own.
    """
    import numpy as np

    s, f, keep = _pairs(score, forward)
    times = np.asarray(calendar)
    if times.shape[0] != keep.shape[0]:
        raise ValueError(f"calendar has {times.shape[0]} entries, score {keep.shape[0]}")
    times = times[keep]
    n = s.shape[0]
    method = method_text(block, resamples, seed, kind="calendar-block")
    value = _spearman(s, f)
    if value is None:
        return Interval(value=None, low=None, high=None, n=n, method=method)
    if np.unique(times).shape[0] < MIN_BLOCKS * block:
        return Interval(value=value, low=None, high=None, n=n, method=f"{method}: too few bar times for {MIN_BLOCKS} blocks")
    rs, rf = _centred_ranks(s), _centred_ranks(f)
    # Every observation of a drawn time comes along: sum the quantities per time, then resample times by blocks.
    unique, inverse = np.unique(times, return_inverse=True)
    per_time = np.zeros((6, unique.shape[0]))
    for row, values in enumerate((np.ones_like(rs), rs, rf, rs * rs, rf * rf, rs * rf)):
        np.add.at(per_time[row], inverse, values)
    sums = block_sums(per_time, block, resamples, seed)
    estimates = _correlation_of_sums(sums[:, 1:], sums[:, 0])
    return percentile_interval(estimates, value, n, method)


def signed_score(direction, confidence) -> "np.ndarray":
    """+confidence for BUY, −confidence for SELL, 0 for HOLD and for a missing direction or confidence."""
    import numpy as np

    d = np.asarray(direction, dtype=object)
    c = np.array([np.nan if x is None else x for x in confidence], dtype=np.float64)
    if d.shape != c.shape:
        raise ValueError(f"direction has {d.shape[0]} entries, confidence {c.shape[0]}")
    sign = np.where(d == "BUY", 1.0, np.where(d == "SELL", -1.0, 0.0))
    return np.where(np.isfinite(c) & (sign != 0), sign * np.nan_to_num(c), 0.0)
