"""Does a directional signal's confidence mean what it says? Reliability bins, Brier skill, slope.

For BUY/SELL signals only; the outcome is 1 when the signal hit. A confidence of 0.6 should hit
60% of the time. The Brier score is compared with the forecast that always says the base rate
(P(up) for a BUY, P(down) for a SELL), and the calibration slope is the logistic regression of the
outcome on logit(confidence): 1 when confidence is right in its spread, 0 when it says nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

WILSON_Z = 1.959963984540054  # two-sided 95%
MIN_SIGNALS_FOR_SLOPE = 20
CLIP = 1e-4
NOTE = (
    "slope 1 and intercept 0: confidence is calibrated; slope below 1: overconfident (too spread), "
    "above 1: underconfident; slope 0: confidence says nothing about hits; negative: it points the wrong way. "
    "brier_skill > 0: confidence beats always forecasting the base rate. "
    "Bin intervals are Wilson intervals, which assume independent signals."
)


class CalibrationBin(BaseModel):
    """One confidence bin: its range, count, mean confidence and hit rate.

    ci_low/ci_high is the 95% Wilson interval of the hit rate, which assumes independent signals
    (overlapping forward returns make it too narrow).
    """

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    n: int
    mean_confidence: float
    hit_rate: float
    ci_low: float
    ci_high: float


class Calibration(BaseModel):
    """The reliability table, Brier against the base-rate forecast, and the calibration slope."""

    model_config = ConfigDict(extra="forbid")

    bins: list[CalibrationBin]
    n: int
    brier: float | None
    base_rate_brier: float | None
    brier_skill: float | None
    slope: float | None
    intercept: float | None
    note: str


def wilson_interval(hits: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion (assumes independent trials); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _bins(confidence: "np.ndarray", hit: "np.ndarray", count: int) -> list[CalibrationBin]:
    """Quantile bins by rank: equal confidences share a bin (so bins may merge), and no bin is empty.

    A bin's low/high are the smallest and largest confidence in it.
    """
    import numpy as np
    from .moments import rankdata

    n = confidence.shape[0]
    count = max(int(count), 1)
    which = np.minimum(((rankdata(confidence) - 1) * count // n).astype(np.int64), count - 1)
    out: list[CalibrationBin] = []
    for b in np.unique(which):
        members = which == b
        size = int(members.sum())
        hits = int(hit[members].sum())
        ci_low, ci_high = wilson_interval(hits, size)
        values = confidence[members]
        out.append(CalibrationBin(
            low=float(values.min()), high=float(values.max()), n=size, mean_confidence=float(values.mean()),
            hit_rate=hits / size, ci_low=ci_low, ci_high=ci_high,
        ))
    return out


def _logistic(x: "np.ndarray", y: "np.ndarray", iterations: int = 100) -> tuple[float, float] | None:
    """(intercept, slope) of P(y = 1) = 1 / (1 + exp(−a − b·x)) by Newton's method; None if it does not converge."""
    import numpy as np

    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(iterations):
        eta = np.clip(design @ beta, -30, 30)
        p = 1 / (1 + np.exp(-eta))
        gradient = design.T @ (y - p)
        hessian = (design * (p * (1 - p))[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e6:
            return None
        if np.abs(step).max() < 1e-10:
            return float(beta[0]), float(beta[1])
    return None


def calibration(confidence: "np.ndarray", hit: "np.ndarray", base_rate: "np.ndarray | float", bins: int = 5) -> Calibration:
    """Calibration of directional signals' confidence against whether they hit (signals with no confidence dropped)."""
    import numpy as np

    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(hit, dtype=np.float64)
    base = np.broadcast_to(np.asarray(base_rate, dtype=np.float64), c.shape)
    if y.shape != c.shape:
        raise ValueError(f"confidence has {c.shape[0]} entries, hit {y.shape[0]}")
    keep = np.isfinite(c) & np.isfinite(y)
    c, y, base = c[keep], y[keep], base[keep]
    n = int(c.shape[0])
    if n == 0:
        return Calibration(bins=[], n=0, brier=None, base_rate_brier=None, brier_skill=None, slope=None, intercept=None, note=NOTE)
    brier = float(np.mean((c - y) ** 2))
    known = np.isfinite(base)
    base_brier = float(np.mean((base[known] - y[known]) ** 2)) if known.any() else None
    skill = 1 - brier / base_brier if base_brier else None
    slope = intercept = None
    if n >= MIN_SIGNALS_FOR_SLOPE and np.ptp(c) > 0 and 0 < y.sum() < n:
        clipped = np.clip(c, CLIP, 1 - CLIP)
        fit = _logistic(np.log(clipped / (1 - clipped)), y)
        if fit is not None:
            intercept, slope = fit
    return Calibration(
        bins=_bins(c, y, bins), n=n, brier=brier, base_rate_brier=base_brier, brier_skill=skill,
        slope=slope, intercept=intercept, note=NOTE,
    )
