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

from ._common import batch_windows, clip, robust_std

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
        return self._finding(state, sigma, float(close[-1]), close.shape[0])

    def _finding(self, state: FilterState, sigma: float, last: float, bars: int) -> TheoryFinding:
        """The finding from the filter's state after the window's last close (raises on a degenerate filter)."""
        cfg = self.config
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
                "bars": float(bars),
            },
        )

    def analyze_batch(self, history: CandleSeries, ends: "Sequence[int]", lookback: int) -> "list[TheoryFinding | InsufficientData]":
        """`analyze` at every bar of `ends`, the filters of many windows run in lockstep.

        `analyze` starts the filter afresh at each window's first close with noise scaled by that
        window's robust return std, so one long recursion would not be equal. Instead every
        full-length window is a lane of numpy arrays: step j updates all lanes with their own j-th
        close, the same float operations in the same order as `constant_velocity_filter`, hence
        the same numbers bit for bit. Windows shorter than the window length (the first bars of
        the history) are filtered one by one. Only closes up to `t` enter the finding at `t`.
        """
        import numpy as np
        from numpy.lib.stride_tricks import sliding_window_view

        cfg = self.config
        size = min(cfg.window, lookback)
        close, starts, problems = batch_windows(history, ends, lookback, cfg.window, 20, cfg)
        with np.errstate(all="ignore"):
            log_close = np.log(np.where(close > 0, close, 1.0))
        returns = np.diff(log_close)
        out: list = list(problems)
        stops = [int(t) + 1 for t in ends]
        valid = [i for i, p in enumerate(problems) if p is None]
        full = [i for i in valid if stops[i] - int(starts[i]) == size]
        states: dict[int, tuple[FilterState, float]] = {}
        for i in valid:
            if stops[i] - int(starts[i]) != size:
                window = close[int(starts[i]):stops[i]]
                sigma = robust_std(np.diff(np.log(window)))
                q_level, q_velocity, r = self.noise(sigma)
                log_price = np.log(window)
                states[i] = (constant_velocity_filter(
                    log_price.tolist(), q_level, q_velocity, r, initial_level=float(log_price[0]), initial_velocity=0.0,
                    initial_p00=sigma**2, initial_p11=sigma**2,
                ), sigma)
        per_chunk = max(1, 2_000_000 // size)
        for begin in range(0, len(full), per_chunk):
            lanes = full[begin:begin + per_chunk]
            first = starts[lanes]
            window_returns = sliding_window_view(returns, size - 1)[first]
            mad = np.median(np.abs(window_returns - np.median(window_returns, axis=1)[:, None]), axis=1) * 1.482602218505602
            sigmas = [float(m) if m > 0.0 else float(np.std(row)) for m, row in zip(mad.tolist(), window_returns)]
            noises = [self.noise(s) for s in sigmas]
            q_level = np.array([q[0] for q in noises])
            q_velocity = np.array([q[1] for q in noises])
            r = np.array([q[2] for q in noises])
            observations = np.ascontiguousarray(sliding_window_view(log_close, size)[first].T)
            a = observations[0].copy()
            b = np.zeros(len(lanes))
            p00 = np.array([s**2 for s in sigmas])
            p01 = np.zeros(len(lanes))
            p11 = p00.copy()
            with np.errstate(all="ignore"):
                for j in range(size):
                    if j:
                        a = a + b
                        p00 = p00 + 2.0 * p01 + p11 + q_level
                        p01 = p01 + p11
                        p11 = p11 + q_velocity
                    s = p00 + r
                    k0 = p00 / s
                    k1 = p01 / s
                    e = observations[j] - a
                    a = a + k0 * e
                    b = b + k1 * e
                    p11 = p11 - k1 * p01
                    p01 = p01 - k0 * p01
                    p00 = p00 - k0 * p00
            for lane, i in enumerate(lanes):
                states[i] = (FilterState(float(a[lane]), float(b[lane]), float(p00[lane]), float(p01[lane]), float(p11[lane])), sigmas[lane])
        for i in valid:
            state, sigma = states[i]
            try:
                out[i] = self._finding(state, sigma, float(close[stops[i] - 1]), stops[i] - int(starts[i]))
            except InsufficientData as exc:
                out[i] = exc
        return out

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
