"""Shannon (permutation) entropy: how much ordinal structure is there in recent returns?

`entropy` is the normalised permutation entropy (Bandt & Pompe 2002) of the window's log returns:
the Shannon entropy of the distribution of ordinal patterns of `order` returns spaced `delay`
bars apart, divided by log(order!). 1 means every up/down ordering is equally likely (no
structure); lower means some orderings repeat, i.e. the next move is partly predictable from
the last few. Being ordinal it does not change when prices are multiplied by any factor.

Even an i.i.d. series reads below 1 in a finite window (0.988 at 1,000 bars, order 5), so the label
compares the entropy with its exact i.i.d. distribution at this length (ordinal patterns of any
continuous i.i.d. series are uniform, so one seeded simulation per length serves every asset).

Secondary metrics:
- `lag1_autocorrelation` of returns and its heteroskedasticity-robust z: sees a weak AR(1) (φ≈0.1)
  that no entropy can.
- `return_distribution_entropy`: Shannon entropy of a histogram of returns (bins spanning
  min..max) over log(bins). It measures the SHAPE of the return distribution (fat tails lower
  it), not predictability: any Gaussian gives the same value whatever its scale, and an AR(1)
  series gives the same value as its shuffled copy.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from v7 import CandleSeries, InsufficientData, SeriesConfig, Theory, TheoryFinding, TheoryResult, hookimpl, log_returns, window_closes

from ._common import batch_windows, clip

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    import numpy as np


def ordinal_codes(values: "np.ndarray", order: int, delay: int) -> "np.ndarray":
    """Integer code in [0, order!) of the ordinal pattern of every embedded vector (last axis).

    The code is the Lehmer code of the vector itself: digit i counts later elements smaller than
    element i. Equal values count as increasing in time (as a stable argsort would order them).
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    span = (order - 1) * delay + 1
    embedded = sliding_window_view(values, span, axis=-1)[..., ::delay]
    codes = np.zeros(embedded.shape[:-1], dtype=np.int64)
    for i in range(order - 1):
        smaller_later = (embedded[..., i + 1:] < embedded[..., i:i + 1]).sum(axis=-1)
        codes += smaller_later * math.factorial(order - 1 - i)
    return codes


def permutation_entropy(values: "np.ndarray", order: int, delay: int) -> "np.ndarray":
    """Normalised permutation entropy (0..1) of a series (n,) or of each row of (paths, n)."""
    import numpy as np

    codes = ordinal_codes(values, order, delay)
    patterns = math.factorial(order)
    if codes.ndim == 1:
        counts = np.bincount(codes, minlength=patterns)[None, :]
    else:
        rows = codes.shape[0]
        offsets = (np.arange(rows, dtype=np.int64) * patterns)[:, None]
        counts = np.bincount((codes + offsets).ravel(), minlength=rows * patterns).reshape(rows, patterns)
    p = counts / codes.shape[-1]
    safe = np.where(p > 0, p, 1.0)  # 0·log 0 = 0 without a warning
    entropy = -(p * np.log(safe)).sum(axis=-1) / math.log(patterns)
    return entropy[0] if values.ndim == 1 else entropy


@lru_cache(maxsize=64)
def iid_null(n: int, order: int, delay: int, paths: int, seed: int) -> tuple[float, float]:
    """Mean and std of the permutation entropy of an i.i.d. series of length n (seeded, cached)."""
    import numpy as np

    rng = np.random.default_rng([seed, n, order, delay, 0x5045])
    per_chunk = max(1, 2_000_000 // n)
    values = []
    done = 0
    while done < paths:
        count = min(per_chunk, paths - done)
        values.append(permutation_entropy(rng.standard_normal((count, n)), order, delay))
        done += count
    sample = np.concatenate(values)
    return float(sample.mean()), float(sample.std(ddof=1))


def lag1_autocorrelation(returns: "np.ndarray") -> tuple[float, float]:
    """Lag-1 autocorrelation and its z under "no autocorrelation", robust to volatility clustering.

    z uses the heteroskedasticity-consistent standard error sqrt(Σ r[t]² r[t-1]²) / Σ r[t]²
    (the plain 1/sqrt(n) overstates significance when volatility clusters, as it does in crypto).
    """
    x = returns - returns.mean()
    head, tail = x[:-1], x[1:]
    cross = float(head @ tail)
    denominator = float(x @ x)
    robust = math.sqrt(float((head * head) @ (tail * tail)))
    rho = cross / denominator if denominator > 0 else 0.0
    z = cross / robust if robust > 0 else 0.0
    return rho, z


def histogram_entropy(returns: "np.ndarray", bins: int) -> float:
    """Shannon entropy of a `bins`-bin histogram of returns spanning min..max, over log(bins)."""
    import numpy as np

    counts, _ = np.histogram(returns, bins=bins)
    p = counts[counts > 0] / returns.shape[0]
    return float(-(p * np.log(p)).sum() / math.log(bins))


class ShannonEntropy(Theory):
    """Predictability of the return sequence from its permutation entropy (non-directional)."""

    name = "shannon_entropy"
    directional = False  # never states a direction: it acts through the synthesizer
    version = "1.0"
    default_min_candles = 250

    class Config(SeriesConfig):
        window: int = Field(default=1000, ge=50, le=100_000, description="Bars analysed, the most recent ones.")
        order: int = Field(default=5, ge=3, le=7, description="Length of the ordinal patterns (embedding dimension m).")
        delay: int = Field(default=1, ge=1, le=50, description="Bars between the returns of one pattern (time delay τ).")
        predictable_z: float = Field(
            default=4.0, gt=0.0,
            description="Entropy this many i.i.d. standard deviations below its i.i.d. mean → `predictable`.",
        )
        weak_z: float = Field(
            default=2.5, gt=0.0,
            description="Entropy (or the lag-1 autocorrelation, either sign) this many standard errors from i.i.d. → "
            "`weakly_predictable`.",
        )
        histogram_bins: int = Field(default=50, ge=5, le=1000, description="Bins of the return histogram (secondary metric).")
        null_paths: int = Field(default=300, ge=50, le=10_000, description="i.i.d. series simulated to calibrate the entropy.")
        seed: int = Field(default=7, ge=0, description="Seed of the i.i.d. calibration.")

        @model_validator(mode="after")
        def _thresholds(self) -> "ShannonEntropy.Config":
            if self.predictable_z <= self.weak_z:
                raise ValueError("predictable_z must be greater than weak_z")
            return self

    def analyze(self, candles: CandleSeries) -> TheoryFinding:
        cfg = self.config
        close = window_closes(candles, cfg.window, 3, cfg)
        returns = log_returns(close)
        n = returns.shape[0]
        shortage = self._shortage(n)
        if shortage is not None:
            raise shortage
        entropy = float(permutation_entropy(returns, cfg.order, cfg.delay))
        rho, rho_z = lag1_autocorrelation(returns)
        return self._finding(n, entropy, rho, rho_z, histogram_entropy(returns, cfg.histogram_bins), close.shape[0])

    def _shortage(self, n: int) -> InsufficientData | None:
        """The abstention when `n` returns give too few ordinal patterns, else None."""
        cfg = self.config
        patterns = n - (cfg.order - 1) * cfg.delay
        if patterns < 2 * math.factorial(cfg.order):
            return InsufficientData(
                f"{n} returns give {max(patterns, 0)} ordinal patterns; order {cfg.order} needs at least "
                f"{2 * math.factorial(cfg.order)}"
            )
        return None

    def _finding(self, n: int, entropy: float, rho: float, rho_z: float, histogram: float, bars: int) -> TheoryFinding:
        """The finding from the statistics of a window of `n` returns (`bars` closes)."""
        cfg = self.config
        null_mean, null_std = iid_null(n, cfg.order, cfg.delay, cfg.null_paths, cfg.seed)
        entropy_z = (null_mean - entropy) / null_std if null_std > 0 else 0.0
        evidence = max(entropy_z, abs(rho_z))
        if entropy_z >= cfg.predictable_z:
            label = "predictable"
            reading = "recurring up/down patterns: the next moves are partly predictable from the last few"
        elif evidence >= cfg.weak_z:
            label = "weakly_predictable"
            if entropy_z >= cfg.weak_z:
                reading = "a little more ordinal structure than chance"
            else:
                reading = f"returns {'follow through' if rho > 0 else 'reverse'} bar to bar (lag-1 autocorrelation {rho:+.3f})"
        else:
            label = "random"
            reading = "no more structure than an i.i.d. series of this length"
        interpretation = (
            f"Permutation entropy {entropy:.4f} vs. {null_mean:.4f} expected for i.i.d. returns ({entropy_z:+.1f} sd): {reading}."
        )
        return TheoryFinding(
            bias=None,
            confidence=clip(evidence / (2.0 * cfg.weak_z), 0.0, 1.0),
            label=label,
            interpretation=interpretation,
            metrics={
                "entropy": entropy,
                "entropy_iid": null_mean,
                "entropy_z": entropy_z,
                "lag1_autocorrelation": rho,
                "autocorrelation_z": rho_z,
                "return_distribution_entropy": histogram,
                "bars": float(bars),
            },
        )

    def analyze_batch(self, history: CandleSeries, ends: "Sequence[int]", lookback: int) -> "list[TheoryFinding | InsufficientData]":
        """`analyze` at every bar of `ends`, with counts updated as the window slides.

        The ordinal pattern of each position depends only on the returns it spans, so the codes
        are computed once over the range and each window's pattern counts are the previous
        window's plus the patterns entering minus those leaving. The return histogram's bins
        depend on the window's min and max, which change only when an extreme enters or leaves:
        for each run of windows sharing them, every return's bin is computed once (as
        `np.histogram` computes it) and the counts slide the same way. The lag-1 autocorrelation
        comes from the windows' returns side by side. Windows shorter than the window length
        are computed as `analyze` does. Only closes up to `t` enter the finding at `t`.
        """
        import numpy as np
        from numpy.lib.stride_tricks import sliding_window_view

        cfg = self.config
        size = min(cfg.window, lookback)
        n = size - 1
        kinds = math.factorial(cfg.order)
        span = (cfg.order - 1) * cfg.delay + 1
        close, starts, problems = batch_windows(history, ends, lookback, cfg.window, 3, cfg)
        with np.errstate(all="ignore"):
            returns = np.diff(np.log(np.where(close > 0, close, 1.0)))
        stops = [int(t) + 1 for t in ends]
        out: list = list(problems)
        valid = [i for i, p in enumerate(problems) if p is None]
        for i in valid:
            count = stops[i] - int(starts[i]) - 1
            shortage = self._shortage(count)
            if shortage is not None:
                out[i] = shortage
            elif count != n:
                window = returns[int(starts[i]):stops[i] - 1]
                rho, rho_z = lag1_autocorrelation(window)
                out[i] = self._finding(count, float(permutation_entropy(window, cfg.order, cfg.delay)), rho, rho_z,
                                       histogram_entropy(window, cfg.histogram_bins), count + 1)
        full = [i for i in valid if out[i] is None]
        per_chunk = max(1, min(2_000_000 // kinds, 2_000_000 // n, 2_000_000 // cfg.histogram_bins))
        for begin in range(0, len(full), per_chunk):
            lanes = full[begin:begin + per_chunk]
            lo, hi = int(starts[lanes[0]]), stops[lanes[-1]] - 1
            first = starts[lanes] - lo
            chunk = returns[lo:hi]
            counts = _window_counts(ordinal_codes(chunk, cfg.order, cfg.delay), first, first + (n - span + 1), kinds)
            p = counts / (n - span + 1)
            safe = np.where(p > 0, p, 1.0)
            entropy = -(p * np.log(safe)).sum(axis=-1) / math.log(kinds)
            windows = sliding_window_view(chunk, n)[first]
            x = windows - windows.mean(axis=1)[:, None]
            head, tail = x[:, :-1], x[:, 1:]
            cross = np.einsum("ij,ij->i", head, tail)
            denominator = np.einsum("ij,ij->i", x, x)
            robust = np.sqrt(np.einsum("ij,ij->i", head * head, tail * tail))
            histogram = np.empty(len(lanes))
            low, high = windows.min(axis=1), windows.max(axis=1)
            edges_change = np.flatnonzero((low[1:] != low[:-1]) | (high[1:] != high[:-1])) + 1
            for a, b in zip(np.concatenate([[0], edges_change]).tolist(), np.concatenate([edges_change, [len(lanes)]]).tolist()):
                base = int(first[a])
                bins = _histogram_bins(chunk[base:int(first[b - 1]) + n], float(low[a]), float(high[a]), cfg.histogram_bins)
                hist = _window_counts(bins, first[a:b] - base, first[a:b] - base + n, cfg.histogram_bins)
                share = hist / n
                with np.errstate(all="ignore"):
                    terms = np.where(hist > 0, share * np.log(np.where(hist > 0, share, 1.0)), 0.0)
                histogram[a:b] = -terms.sum(axis=1) / math.log(cfg.histogram_bins)
            for lane, i in enumerate(lanes):
                c, d, q = float(cross[lane]), float(denominator[lane]), float(robust[lane])
                out[i] = self._finding(n, float(entropy[lane]), c / d if d > 0 else 0.0, c / q if q > 0 else 0.0,
                                       float(histogram[lane]), size)
        return out

    def prompt_section(self, result: TheoryResult) -> str | None:
        if not result.ok:
            return None
        m = result.metrics
        return (
            f"**Permutation entropy** {m['entropy']:.4f} (i.i.d. would give {m['entropy_iid']:.4f}; {m['entropy_z']:+.1f} sd) → "
            f"{result.label}; lag-1 autocorrelation {m['lag1_autocorrelation']:+.3f}. Not directional."
        )


@hookimpl
def register_theories(register):
    register(ShannonEntropy)


def _window_counts(codes: "np.ndarray", first: "np.ndarray", last: "np.ndarray", kinds: int) -> "np.ndarray":
    """Counts (windows, kinds) of the codes in codes[first[j]:last[j]], for non-decreasing `first` and `last`.

    Each row is the previous one plus the codes entering and minus those leaving.
    """
    import numpy as np

    rows = first.shape[0]
    enter_from = np.concatenate([[first[0]], last[:-1]])
    leave_from, leave_to = np.concatenate([[first[0]], first[:-1]]), first

    def spread(begin: "np.ndarray", end: "np.ndarray") -> "np.ndarray":
        lengths = end - begin
        row = np.repeat(np.arange(rows, dtype=np.int64), lengths)
        offset = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return np.bincount(row * kinds + codes[np.repeat(begin, lengths) + offset], minlength=rows * kinds)

    delta = spread(enter_from, last) - spread(leave_from, leave_to)
    return np.cumsum(delta.reshape(rows, kinds), axis=0)


def _histogram_bins(values: "np.ndarray", low: float, high: float, bins: int) -> "np.ndarray":
    """The bin of each value in `np.histogram(..., bins)` of data spanning low..high (its equal-bins rule)."""
    import numpy as np

    edges = np.linspace(low, high, bins + 1, endpoint=True)
    indices = (((values - low) / (high - low)) * bins).astype(np.intp)
    indices[indices == bins] -= 1
    indices[values < edges[indices]] -= 1
    indices[(values >= edges[indices + 1]) & (indices != bins - 1)] += 1
    return indices
