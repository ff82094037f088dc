"""Is a strategy's Sharpe better than chance? A circular-shift null, and the deflated Sharpe ratio.

Random i.i.d. positions with the same mix are an unfair null: they trade far more often and pay
far more cost. Shifting the real position sequence circularly against the returns keeps its
turnover (up to the one wrap), its run lengths and its exposure, and only breaks its timing.
When many configurations were tried, the best one's Sharpe is deflated for the trials
(Bailey & López de Prado 2014).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

EULER_GAMMA = 0.5772156649015329


class ShiftNull(BaseModel):
    """The real Sharpe, its circular-shift p-value and the null distribution's mean and 95th percentile."""

    model_config = ConfigDict(extra="forbid")

    sharpe: float | None
    p_value: float | None
    shifts: int
    null_mean: float | None
    null_p95: float | None
    method: str


def strategy_returns(held: "np.ndarray", bar_returns: "np.ndarray", cost_rate: float) -> "np.ndarray":
    """Per-bar net returns (1 − cost·|Δheld|)·(1 + held·bar) − 1; the first change is from flat.
    `held` may be a matrix of position sequences, one per row."""
    import numpy as np

    h = np.asarray(held, dtype=np.float64)
    r = np.asarray(bar_returns, dtype=np.float64)
    if h.shape[-1] != r.shape[-1]:
        raise ValueError(f"held has {h.shape[-1]} entries, bar_returns {r.shape[-1]}")
    previous = np.concatenate([np.zeros(h.shape[:-1] + (1,)), h[..., :-1]], axis=-1)
    return _pair_strategy_returns(previous, h, r, cost_rate)


def _pair_strategy_returns(previous: "np.ndarray", new: "np.ndarray", r: "np.ndarray", cost_rate: float) -> "np.ndarray":
    """`strategy_returns` of each bar from the position before it and the one held over it."""
    import numpy as np

    return (1.0 - cost_rate * np.abs(new - previous)) * (1.0 + new * r) - 1.0


def sharpe(returns: "np.ndarray", periods_per_year: float) -> float | None:
    """Annualised Sharpe (zero risk-free rate): mean / std(ddof=1) × sqrt(periods); None when undefined."""
    import numpy as np

    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] < 2:
        return None
    std = float(r.std(ddof=1))
    if not std > 1e-15:
        return None
    return float(r.mean() / std * math.sqrt(periods_per_year))


# `pair_returns` models: how a bar's (interval's) return is paired with positions. "from_flat": bar t
# from the position before it (flat before the first) to the one held over it, one return per
# position; "lead": interval t from position t to position t + 1, one return fewer than positions.
PAIRINGS = ("from_flat", "lead")
MAX_PAIR_VALUES = 8  # distinct positions up to which the null looks returns up in a table (8² pairs)


def circular_shift_pvalue(held, bar_returns, cost_rate: float, periods_per_year: float, shifts: int, seed: int,
                          min_shift: int = 1, returns_of: "Callable[[np.ndarray], np.ndarray] | None" = None,
                          pair_returns: "Callable[[np.ndarray, np.ndarray], np.ndarray] | None" = None, pairing: str = "from_flat") -> ShiftNull:
    """p = (1 + #{shifted Sharpe ≥ real}) / (1 + K) over K circular shifts of the positions.

    Shifts k are drawn without replacement from [min_shift, n − min_shift] (all of them when there
    are no more than `shifts`); the returns stay in place. A shift whose Sharpe is undefined counts
    as not beating the real one. `returns_of` maps a position sequence to its net returns (an
    execution model of your own, given a matrix with one shifted sequence per row; `bar_returns` may
    then be None); by default
    `strategy_returns(held, bar_returns, cost_rate)`.

    `pair_returns(previous, new)`, when the model's return at each bar depends only on the two
    positions `pairing` names (and the bar), gives those returns for matrices of such pairs: with few
    distinct positions (signals: −1, 0, 1) the null then looks each shifted return up in a table of
    every pair at every bar instead of running the model on every shifted sequence, the same numbers
    (the model's own arithmetic on the same operands) for a fraction of the work.
    """
    import numpy as np

    h = np.asarray(held, dtype=np.float64)
    r = None if bar_returns is None else np.asarray(bar_returns, dtype=np.float64)
    if returns_of is None:
        def returns_of(positions: "np.ndarray") -> "np.ndarray":
            return strategy_returns(positions, r, cost_rate)

        def pair_returns(previous: "np.ndarray", new: "np.ndarray") -> "np.ndarray":
            return _pair_strategy_returns(previous, new, r, cost_rate)
        pairing = "from_flat"
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, not {pairing!r}")
    n = h.shape[0]
    real_returns = returns_of(h)
    real = sharpe(real_returns, periods_per_year)
    candidates = np.arange(min_shift, n - min_shift + 1, dtype=np.int64)
    if candidates.shape[0] > shifts:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, size=shifts, replace=False))
    method = f"circular shifts of the positions, {candidates.shape[0]} shifts in [{min_shift}, {n - min_shift}], seed {seed}"
    values = np.unique(np.append(h, 0.0))
    if pair_returns is not None and values.shape[0] <= MAX_PAIR_VALUES and np.isfinite(values).all():
        matrices = _looked_up(h, values, candidates, pair_returns, pairing, int(np.shape(real_returns)[-1]))
    else:
        matrices = (returns_of(rows) for rows in _shifted(h, candidates))
    null = np.concatenate([_row_sharpes(returns, periods_per_year) for returns in matrices] or [np.zeros(0)])
    finite = null[np.isfinite(null)]
    p_value = None
    if real is not None and candidates.shape[0]:
        p_value = float((1 + int(np.count_nonzero(finite >= real))) / (1 + candidates.shape[0]))
    return ShiftNull(
        sharpe=real, p_value=p_value, shifts=int(candidates.shape[0]),
        null_mean=float(finite.mean()) if finite.shape[0] else None,
        null_p95=float(np.quantile(finite, 0.95)) if finite.shape[0] else None,
        method=method,
    )


def _shifted(h: "np.ndarray", shifts: "np.ndarray", cells: int = 200_000):
    """`np.roll(h, k)` for every k, as matrices of at most `cells` entries (one row per shift).

    200,000 cells (1.6 MB a matrix) keep the execution model's temporaries in the CPU cache:
    measured 2× faster than 2,000,000 on 2,000 shifts of 2,000 bars.

    Row k is the window of `h` doubled that starts at (n − k) mod n: a copy of a strided view, no index arithmetic per cell."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    n = h.shape[0]
    per = max(1, cells // max(n, 1))
    windows = sliding_window_view(np.concatenate([h, h]), n) if n else np.zeros((1, 0))
    for start in range(0, shifts.shape[0], per):
        ks = shifts[start:start + per]
        yield windows[(n - ks) % n] if n else np.zeros((ks.shape[0], 0))


def _looked_up(h: "np.ndarray", values: "np.ndarray", shifts: "np.ndarray", pair_returns, pairing: str, bars: int, cells: int = 200_000):
    """The shifted sequences' returns, as `returns_of` would give them, from a table of every pair of positions at every bar.

    Row k of `_shifted` holds h[(t − k) mod L] at t. Its pair at bar t is the pair of h at cycle
    position (t − k) mod L ("lead") or (t − 1 − k) mod L ("from_flat", bar 0 from flat): one code
    per cycle position, read through windows of the doubled codes like `_shifted` reads h."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    length, m = h.shape[0], values.shape[0]
    index = np.searchsorted(values, h)
    codes = index * m + np.roll(index, -1)  # code of the pair (h[j], h[j + 1 mod L])
    previous, new = np.divmod(np.arange(m * m), m)
    table = pair_returns(np.repeat(values[previous][:, None], bars, axis=1), np.repeat(values[new][:, None], bars, axis=1))
    flat = np.ascontiguousarray(np.asarray(table, dtype=np.float64).T).ravel()  # (bar, code) -> bar * m² + code
    offsets = np.arange(bars, dtype=np.intp) * (m * m)
    zero = int(np.searchsorted(values, 0.0))
    doubled = np.concatenate([codes, codes]).astype(np.intp)
    lead = pairing == "lead"
    windows = sliding_window_view(doubled, bars if lead else bars - 1) if bars > (0 if lead else 1) else None
    per = max(1, cells // max(bars, 1))
    for start in range(0, shifts.shape[0], per):
        first = (length - shifts[start:start + per]) % length  # cycle position of each row's bar 0
        if lead:
            row_codes = windows[first] if windows is not None else np.zeros((first.shape[0], 0), dtype=np.intp)
        else:
            head = (zero * m + index[first])[:, None]
            row_codes = np.concatenate([head, windows[first]], axis=1) if windows is not None else head[:, :bars]
        yield flat[row_codes + offsets]


def _row_sharpes(returns: "np.ndarray", periods_per_year: float) -> "np.ndarray":
    """`sharpe` of each row; NaN where it is undefined."""
    import numpy as np

    if returns.shape[-1] < 2:
        return np.full(returns.shape[0], np.nan)
    std = returns.std(axis=-1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(std > 1e-15, returns.mean(axis=-1) / np.where(std > 1e-15, std, 1.0) * math.sqrt(periods_per_year), np.nan)


def deflated_sharpe(sharpes_per_period: list[float], returns_of_best: "np.ndarray") -> float | None:
    """Probability that the best of N trials' Sharpe beats the best of N trials without skill.

    Bailey & López de Prado (2014), with SR̂ the per-period (not annualised) Sharpe of the best
    trial's T returns, γ3 their skewness and γ4 their (non-excess) kurtosis:

        SR0 = sqrt(V[SR_n]) · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))      (γ: Euler–Mascheroni)
        DSR = Φ( (SR̂ − SR0) · sqrt(T − 1) / sqrt(1 − γ3 SR̂ + (γ4 − 1)/4 · SR̂²) )

    V[SR_n] is the sample variance (ddof=1) of the N trials' per-period Sharpes. With N = 1, SR0 = 0
    and DSR is the probabilistic Sharpe ratio against zero. None when T < 3, the returns are
    constant, or the variance term is not positive.
    """
    import numpy as np

    from .moments import kurtosis, skewness

    r = np.asarray(returns_of_best, dtype=np.float64)
    r = r[np.isfinite(r)]
    trials = np.asarray(sharpes_per_period, dtype=np.float64)
    trials = trials[np.isfinite(trials)]
    t = r.shape[0]
    if t < 3 or trials.shape[0] == 0:
        return None
    std = float(r.std(ddof=1))
    if not std > 1e-15:
        return None
    return deflated_sharpe_of(float(r.mean() / std), t, skewness(r), kurtosis(r), list(trials))


def deflated_sharpe_of(sr: float, t: int, g3: float, g4: float, sharpes_per_period: list[float]) -> float | None:
    """The deflated Sharpe ratio from the best trial's moments (what a stored result keeps): per-period
    Sharpe `sr` over `t` returns with skewness `g3` and (non-excess) kurtosis `g4`; formula above."""
    from statistics import NormalDist

    import numpy as np

    norm = NormalDist()
    trials = np.asarray(sharpes_per_period, dtype=np.float64)
    trials = trials[np.isfinite(trials)]
    if t < 3 or trials.shape[0] == 0:
        return None
    count = trials.shape[0]
    if count == 1:
        sr0 = 0.0
    else:
        spread = math.sqrt(float(trials.var(ddof=1)))
        sr0 = spread * ((1 - EULER_GAMMA) * norm.inv_cdf(1 - 1 / count) + EULER_GAMMA * norm.inv_cdf(1 - 1 / (count * math.e)))
    variance = 1 - g3 * sr + (g4 - 1) / 4 * sr * sr
    if not variance > 0:
        return None
    return float(norm.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(variance)))
