"""Kalman filter: the current trend (velocity) of log price and how sure the filter is of it.

Model (constant velocity, on LOG price so it is the same at $60,000 and at $0.01):
    state x = [level, velocity],  x[t] = F x[t-1] + w,  F = [[1, 1], [0, 1]],  w ~ N(0, Q)
    y[t] = log close[t] = H x[t] + v,  H = [1, 0],  v ~ N(0, R)
Q and R are in return units: multiples of the robust (MAD) standard deviation of the window's log
returns, so their meaning does not depend on the price level or the bar size. The 2×2 recursion is
written out in plain Python floats (~0.3 ms for 500 bars; pykalman's `filter` gives the same
numbers to ~1e-12 and takes ~30 ms).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from pydantic import Field, model_validator

from v7 import CandleSeries, InsufficientData, SeriesConfig, Theory, TheoryFinding, TheoryResult, hookimpl, log_returns, window_closes

from ._common import clip, robust_std

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence


class FilterState(NamedTuple):
    """Filtered state and covariance [[p00, p01], [p01, p11]] after the last observation."""

    level: float
    velocity: float
    p00: float
    p01: float
    p11: float


def constant_velocity_filter(
    observations: "Sequence[float]",
    q_level: float,
    q_velocity: float,
    r: float,
    initial_level: float,
    initial_velocity: float,
    initial_p00: float,
    initial_p11: float,
    path: list[FilterState] | None = None,
) -> FilterState:
    """Filter `observations` with F=[[1,1],[0,1]], H=[1,0], Q=diag(q_level, q_velocity), R=r.

    Same convention as pykalman: the initial state is the prior for the FIRST observation (no
    transition before it). When `path` is a list, every filtered state is appended to it.
    """
    # Prior for observation 0.
    a, b = initial_level, initial_velocity
    p00, p01, p11 = initial_p00, 0.0, initial_p11
    first = True
    for y in observations:
        if not first:
            # Predict: x = F x, P = F P F' + Q.
            a = a + b
            p00 = p00 + 2.0 * p01 + p11 + q_level
            p01 = p01 + p11
            p11 = p11 + q_velocity
        first = False
        # Update with y: innovation e, its variance s, gain k = P H' / s.
        s = p00 + r
        k0 = p00 / s
        k1 = p01 / s
        e = y - a
        a = a + k0 * e
        b = b + k1 * e
        # Joseph-free form is exact here: P = (I - K H) P, kept symmetric by construction.
        p11 = p11 - k1 * p01
        p01 = p01 - k0 * p01
        p00 = p00 - k0 * p00
        if path is not None:
            path.append(FilterState(a, b, p00, p01, p11))
    return FilterState(a, b, p00, p01, p11)


class KalmanFilter(Theory):
    """Trend direction and strength from a constant-velocity Kalman filter on log price."""

    name = "kalman_filter"
    version = "1.0"
    default_min_candles = 50

    class Config(SeriesConfig):
        window: int = Field(default=500, ge=20, le=100_000, description="Bars filtered, the most recent ones.")
        observation_noise: float = Field(
            default=0.3, gt=0.0, le=100.0,
            description="Std of the observation noise on log price, in units of the robust std of one bar's log return.",
        )
        level_noise: float = Field(
            default=0.9, gt=0.0, le=100.0,
            description="Std of the level's random step per bar, in units of the robust std of one bar's log return.",
        )
        velocity_noise: float = Field(
            default=0.02, gt=0.0, le=10.0,
            description="Std of the velocity's random change per bar, in units of the robust std of one bar's log return; "
            "smaller = a slower, smoother trend.",
        )
        up_z: float = Field(default=1.0, gt=0.0, description="velocity_z at or above which the label is `up` (below -up_z: `down`).")
        strong_z: float = Field(
            default=2.0, gt=0.0, description="velocity_z at or above which the label is `strong_up` (below -strong_z: `strong_down`)."
        )
        bias_scale: float = Field(default=2.0, gt=0.0, description="bias = tanh(velocity_z / bias_scale).")

        @model_validator(mode="after")
        def _thresholds(self) -> "KalmanFilter.Config":
            if self.strong_z <= self.up_z:
                raise ValueError("strong_z must be greater than up_z")
            return self

    def noise(self, sigma: float) -> tuple[float, float, float]:
        """(q_level, q_velocity, r) for a robust per-bar log-return std `sigma`."""
        cfg = self.config
        return (cfg.level_noise * sigma) ** 2, (cfg.velocity_noise * sigma) ** 2, (cfg.observation_noise * sigma) ** 2

    def analyze(self, candles: CandleSeries) -> TheoryFinding:
        import numpy as np

        cfg = self.config
        close = window_closes(candles, cfg.window, 20, cfg)
        returns = log_returns(close)
        sigma = robust_std(returns)
        q_level, q_velocity, r = self.noise(sigma)
        log_price = np.log(close)
        # Start at the first observation with no assumed trend; a one-bar-return-sized velocity
        # prior lets the data set the trend within a few bars.
        state = constant_velocity_filter(
            log_price.tolist(), q_level, q_velocity, r,
            initial_level=float(log_price[0]), initial_velocity=0.0,
            initial_p00=sigma**2, initial_p11=sigma**2,
        )
        velocity_se = math.sqrt(state.p11) if state.p11 > 0 else 0.0
        if not (velocity_se > 0 and math.isfinite(state.velocity) and math.isfinite(state.level)):
            raise InsufficientData("Kalman filter covariance degenerated")
        velocity_z = state.velocity / velocity_se
        if velocity_z >= cfg.strong_z:
            label = "strong_up"
        elif velocity_z >= cfg.up_z:
            label = "up"
        elif velocity_z <= -cfg.strong_z:
            label = "strong_down"
        elif velocity_z <= -cfg.up_z:
            label = "down"
        else:
            label = "flat"
        velocity = math.expm1(state.velocity)
        filtered_price = math.exp(state.level)
        last = float(close[-1])
        direction = {"strong_up": "rising clearly", "up": "rising", "flat": "without a clear trend",
                     "down": "falling", "strong_down": "falling clearly"}[label]
        interpretation = (
            f"The filtered trend is {direction}: {velocity:+.3%} per bar, {velocity_z:+.2f} standard errors from zero; "
            f"filtered price {filtered_price:.6g} vs. last close {last:.6g}."
        )
        return TheoryFinding(
            bias=math.tanh(velocity_z / cfg.bias_scale),
            confidence=clip(abs(velocity_z) / (2.0 * cfg.strong_z), 0.0, 1.0),
            label=label,
            interpretation=interpretation,
            metrics={
                "velocity_z": velocity_z,
                "velocity": velocity,
                "filtered_price": filtered_price,
                "velocity_se": velocity_se,
                "deviation": last / filtered_price - 1.0,
                "return_std": sigma,
                "bars": float(close.shape[0]),
            },
        )

    def prompt_section(self, result: TheoryResult) -> str | None:
        if not result.ok:
            return None
        m = result.metrics
        return (
            f"**Kalman trend** {result.label}: velocity {m['velocity']:+.3%}/bar (z {m['velocity_z']:+.2f}), "
            f"filtered price {m['filtered_price']:.6g}; bias {result.bias:+.2f}."
        )


@hookimpl
def register_theories(register):
    register(KalmanFilter)
