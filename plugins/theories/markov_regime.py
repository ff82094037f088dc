"""Markov regime: is the market in its calm or its stressed volatility regime right now?

A two-state Gaussian hidden Markov model (hmmlearn `GaussianHMM`, diagonal covariance) is fitted
by EM to the window's log returns, z-scored first (hmmlearn's `covars_prior` is in data units²:
on raw hourly returns it would swamp the variances). States are named by variance: `calm` and
`stressed`; a trend word is added only when the two state means differ significantly.

Fitting (deterministic): `restarts` starting points — one from the data (bars split at the median
of a 10-bar local volatility) and `restarts − 1` drawn from one generator seeded with `seed`.
Each runs `screen_iterations` EM steps; the best-scoring one is run to convergence (short-run
EM, Biernacki et al. 2003). Set `screen_iterations = 0` to run every start to convergence and keep
the best converged score instead (slower; on the bundled data both pick the same optimum in the
windows measured, see docs/theories.md). Convergence is checked as iterations < `n_iter` (hmmlearn's
`monitor_.converged` is also True when EM merely ran out of iterations). EM is hmmlearn's, step for
step, run without its estimator layer (`_hmm_em.fit_em`: the same bits, 3× faster, no scikit-learn import).

Refit schedule (`refit_every_bars`, default 24; 0 = the full fit at every bar). The full
multi-start fit runs only at ANCHOR bars: the last bar, among the last `refit_every_bars` bars up to
the current one, whose timestamp is a multiple of `refit_every_bars` × the bar length (the median
timestamp step of the window; hourly bars and 24 → 00:00 UTC). Its window is the `window` bars ending
at the anchor. Every other bar starts EM from the anchor's fitted parameters (moved to the current
window's z-score units) on the current window and runs it to convergence; when that does not converge
or breaks down, the full fit on the current window is used. Anchor fits are cached on the instance
(bounded LRU, locked) keyed by the anchor's timestamp, the window, a hash of the anchor window's closes
and the fitting settings, and recomputed from the candles given when missing: the answer is a pure
function of the candles given, cache or no cache. When no anchor lies in the last `refit_every_bars`
bars, or the candles given do not reach back `window` bars before the anchor, the full fit on the
current window is used: the result then equals the `refit_every_bars = 0` result. So the answer
depends on at most the last `window + refit_every_bars − 1` candles.

The current regime is the FORWARD (filtered) probability of the last bar, computed here in log
space from the fitted start/transition probabilities and the Gaussian emission likelihoods: it
uses no bar after the one it describes. (`predict`/`predict_proba` smooth every bar but the last
with later bars.)
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, NamedTuple, Sequence

from pydantic import Field

from v7 import CandleSeries, InsufficientData, SeriesConfig, Theory, TheoryFinding, TheoryResult, hookimpl, log_returns, window_closes

from ._common import clip
from ._hmm_em import fit_em
from ._hmm_recursions import forward_filter

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

ANCHOR_CACHE_SIZE = 256  # anchor fits kept per instance (least recently used dropped first)


class HmmParams(NamedTuple):
    """A two-state, one-dimensional Gaussian HMM."""

    startprob: "np.ndarray"  # (2,)
    transmat: "np.ndarray"  # (2, 2)
    means: "np.ndarray"  # (2,)
    variances: "np.ndarray"  # (2,)


class AnchorFit(NamedTuple):
    """The full fit at an anchor bar, in the anchor window's z-score units, and how to leave them."""

    params: HmmParams
    centre: float  # mean of the anchor window's log returns
    scale: float  # their standard deviation
    iterations: int


class RegimeFit(NamedTuple):
    """The parameters used for the current bar and how they were obtained."""

    params: HmmParams
    iterations: int  # EM iterations run on the current window (screening, warm start and fallback included)
    how: str  # "full" (no anchoring), "anchor" (this bar is the anchor), "warm", "warm_failed" (full fit after it)
    anchor_bars_ago: int | None  # bars from the anchor to the current bar; None without anchoring


def starting_points(x: "np.ndarray", restarts: int, seed: int) -> list[HmmParams]:
    """One data-driven start (local-volatility split) and `restarts - 1` seeded random ones."""
    import numpy as np

    variance = float(x.var())
    width = 10
    local = np.convolve(np.abs(x), np.ones(width) / width, mode="same")
    high = local > np.median(local)
    starts = []
    if 2 <= high.sum() <= x.shape[0] - 2:
        low_x, high_x = x[~high], x[high]
        starts.append(HmmParams(
            np.array([0.5, 0.5]),
            np.array([[0.95, 0.05], [0.05, 0.95]]),
            np.array([low_x.mean(), high_x.mean()]),
            np.array([max(low_x.var(), 1e-3 * variance), max(high_x.var(), 1e-3 * variance)]),
        ))
    rng = np.random.default_rng(seed)
    for _ in range(restarts - len(starts)):
        stay = rng.uniform(0.80, 0.99, size=2)
        starts.append(HmmParams(
            np.array([0.5, 0.5]),
            np.array([[stay[0], 1 - stay[0]], [1 - stay[1], stay[1]]]),
            float(x.mean()) + rng.normal(0.0, 0.1, size=2),
            variance * np.array([rng.uniform(0.1, 0.8), rng.uniform(1.2, 5.0)]),
        ))
    return starts


def usable(params: HmmParams) -> bool:
    """Finite parameters, positive variances and proper transition rows (no collapsed state)."""
    values = [*params.startprob.tolist(), *params.transmat.ravel().tolist(), *params.means.tolist(), *params.variances.tolist()]
    if not all(math.isfinite(v) for v in values):
        return False
    rows = params.transmat.sum(axis=1).tolist()
    return min(params.variances.tolist()) > 0.0 and all(abs(r - 1.0) < 1e-6 for r in rows)


def warm_start(anchor: AnchorFit, centre: float, scale: float) -> HmmParams:
    """The anchor's fitted states moved to the z-score units of a window with this centre and scale.

    The start probabilities are reset to 50/50 (the current window starts at another bar than the
    anchor's; a fitted start probability of 0 would stay 0 under EM).
    """
    import numpy as np

    ratio = anchor.scale / scale
    return HmmParams(
        np.array([0.5, 0.5]),
        anchor.params.transmat.copy(),
        (anchor.centre + anchor.scale * anchor.params.means - centre) / scale,
        anchor.params.variances * (ratio * ratio),
    )


def standardise(close: "np.ndarray") -> tuple["np.ndarray", "np.ndarray", float, float]:
    """(log returns, z-scored log returns, their mean, their standard deviation) of checked closes."""
    returns = log_returns(close)
    centre = float(returns.mean())
    scale = float(returns.std())
    return returns, (returns - centre) / scale, centre, scale


def _frozen(params: HmmParams) -> HmmParams:
    """Read-only copies, so a cached fit cannot be changed by whoever uses it."""
    arrays = [a.copy() for a in params]
    for a in arrays:
        a.setflags(write=False)
    return HmmParams(*arrays)


class MarkovRegime(Theory):
    """Calm / stressed volatility regime from a two-state Gaussian HMM, read causally at the last bar."""

    name = "markov_regime"
    version = "1.0"
    # A bias is given only when the regimes' mean returns differ significantly; otherwise None.
    default_min_candles = 200

    class Config(SeriesConfig):
        window: int = Field(default=500, ge=100, le=20_000, description="Bars fitted, the most recent ones.")
        restarts: int = Field(default=3, ge=1, le=50, description="EM starting points: one from the data, the rest seeded random.")
        screen_iterations: int = Field(
            default=3, ge=0, le=100,
            description="EM steps each start gets before the best is run to convergence; 0 = run every start to convergence.",
        )
        n_iter: int = Field(default=200, ge=200, le=10_000, description="Maximum EM iterations of a fit to convergence.")
        tol: float = Field(default=1e-2, gt=0.0, le=1.0, description="EM stops when the log-likelihood gains less than this.")
        mean_t: float = Field(
            default=3.0, gt=0.0,
            description="|t| of the difference of the state means from which the regimes count as trending (label, bias).",
        )
        seed: int = Field(default=7, ge=0, description="Seed of the random EM starting points.")
        refit_every_bars: int = Field(
            default=24, ge=0, le=10_000,
            description=(
                "Full multi-start fit only at anchor bars (timestamp a multiple of this many bar lengths, e.g. 24 hourly "
                "bars = 00:00 UTC); the bars in between warm-start EM from the anchor's fit. 0 = full fit at every bar."
            ),
        )

    def __init__(self, config: "MarkovRegime.Config | None" = None) -> None:
        super().__init__(config)
        # Anchor fits by (anchor timestamp, window, hash of the anchor window's closes, fitting settings).
        # A fit is a pure function of its key's closes, so a hit and a miss give the same answer.
        self._anchor_fits: OrderedDict[tuple, AnchorFit | None] = OrderedDict()
        self._anchor_lock = threading.Lock()

    def __getstate__(self) -> dict:  # picklable (a lock is not); the copy starts with an empty cache
        state = self.__dict__.copy()
        state["_anchor_fits"] = OrderedDict()
        del state["_anchor_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._anchor_lock = threading.Lock()

    def clear_cache(self) -> None:
        """Forget every cached anchor fit (answers do not change: they are recomputed from the candles)."""
        with self._anchor_lock:
            self._anchor_fits.clear()

    @property
    def cached_anchors(self) -> int:
        with self._anchor_lock:
            return len(self._anchor_fits)

    def fit(self, x: "np.ndarray") -> tuple[HmmParams, int]:
        """Best converged two-state fit of z-scored returns and the EM iterations it took in total."""
        cfg = self.config
        iterations = 0

        def run(start: HmmParams, n_iter: int, tol: float) -> tuple[HmmParams, float, bool] | None:
            """(parameters, last log-likelihood, converged) of EM from `start`; None when EM broke down."""
            nonlocal iterations
            try:
                run = fit_em(x, start, n_iter, tol)
            except (ValueError, FloatingPointError, ArithmeticError):  # a start that collapses a state
                return None
            iterations += run.iterations
            if not (usable(run.params) and run.history):
                return None
            return run.params, run.history[-1], run.iterations < n_iter

        starts = starting_points(x, cfg.restarts, cfg.seed)
        if cfg.screen_iterations > 0:
            screened = [r for r in (run(s, cfg.screen_iterations, 0.0) for s in starts) if r is not None]
            # Best screened score first (ties: the earlier start); the first that converges wins.
            for params, _, _ in sorted(screened, key=lambda r: -r[1]):
                result = run(params, cfg.n_iter, cfg.tol)
                if result is not None and result[2]:
                    return result[0], iterations
        else:
            converged = [r for r in (run(s, cfg.n_iter, cfg.tol) for s in starts) if r is not None and r[2]]
            if converged:
                return max(converged, key=lambda r: r[1])[0], iterations
        raise InsufficientData(f"the regime model did not converge within {cfg.n_iter} EM iterations from any start")

    def anchor_bars_ago(self, timestamp: "np.ndarray") -> int | None:
        """Bars from the anchor to the last bar (0 = the last bar is the anchor); None = no anchor.

        The anchor is the last of the last `refit_every_bars` bars whose timestamp is a multiple of
        `refit_every_bars` × the bar length (the median step of the window's timestamps, so only the
        window's own timestamps count). None when `refit_every_bars` is 0, the step is not positive,
        or no such bar is among the last `refit_every_bars` (a gap over the anchor, unaligned stamps).
        """
        import numpy as np

        every = self.config.refit_every_bars
        stamps = np.asarray(timestamp, dtype=np.int64)
        n = stamps.shape[0]
        if every == 0 or n < 2:
            return None
        steps = np.diff(stamps[max(0, n - self.config.window):])
        shortest, longest = int(steps.min()), int(steps.max())
        # Evenly spaced (the usual case): every step is the median, no sort needed.
        step = shortest if shortest == longest else int(round(float(np.median(steps))))
        if step <= 0:
            return None
        recent = stamps[max(0, n - every):]
        hits = np.flatnonzero(recent % (step * every) == 0)
        if hits.shape[0] == 0:
            return None
        return int(recent.shape[0] - 1 - hits[-1])

    def _settings_key(self) -> tuple:
        cfg = self.config
        return (cfg.restarts, cfg.screen_iterations, cfg.n_iter, cfg.tol, cfg.seed, cfg.stale_bars, cfg.max_unchanged_fraction)

    def _remember(self, key: tuple, entry: AnchorFit | None) -> None:
        with self._anchor_lock:
            self._anchor_fits[key] = entry
            self._anchor_fits.move_to_end(key)
            while len(self._anchor_fits) > ANCHOR_CACHE_SIZE:
                self._anchor_fits.popitem(last=False)

    def _cached(self, key: tuple) -> tuple[bool, AnchorFit | None]:
        with self._anchor_lock:
            if key not in self._anchor_fits:
                return False, None
            self._anchor_fits.move_to_end(key)
            return True, self._anchor_fits[key]

    def _anchor_fit(self, key: tuple, candles: CandleSeries, end: int) -> AnchorFit | None:
        """The full fit of the `window` bars ending before index `end`, from the cache or computed; None if it fails."""
        found, entry = self._cached(key)
        if found:
            return entry
        try:
            _, x, centre, scale = standardise(window_closes(candles.slice(end - self.config.window, end), self.config.window, 50, self.config))
            params, iterations = self.fit(x)
            entry = AnchorFit(_frozen(params), centre, scale, iterations)
        except InsufficientData:
            entry = None  # no anchor fit (e.g. a stale or non-converging anchor window): full fits until the next anchor
        self._remember(key, entry)
        return entry

    def regime_fit(self, candles: CandleSeries, x: "np.ndarray", centre: float, scale: float, defer_warm: bool = False) -> RegimeFit:
        """The parameters for the current window `x` (z-scored with `centre`, `scale`) under the refit schedule.

        `defer_warm` (the batch path): on a warm-start bar return the starting point instead, with how "pending".
        """
        import numpy as np

        cfg = self.config
        ago = self.anchor_bars_ago(candles.timestamp)
        n = len(candles)
        if ago is None or n < cfg.window + ago:  # no anchor, or its window is not in the candles given
            params, iterations = self.fit(x)
            return RegimeFit(params, iterations, "full", None)
        end = n - ago  # the anchor window is bars [end - window, end)
        anchor_close = np.ascontiguousarray(candles.close[end - cfg.window:end], dtype=np.float64)
        key = (
            int(candles.timestamp[end - 1]), cfg.window, hashlib.blake2b(anchor_close.tobytes(), digest_size=16).digest(),
            self._settings_key(),
        )
        if ago == 0:  # this bar is the anchor: the full fit, which later bars start from
            found, entry = self._cached(key)
            if found and entry is not None:
                return RegimeFit(entry.params, entry.iterations, "anchor", 0)
            params, iterations = self.fit(x)
            self._remember(key, AnchorFit(_frozen(params), centre, scale, iterations))
            return RegimeFit(params, iterations, "anchor", 0)
        anchor = self._anchor_fit(key, candles, end)
        if anchor is None:
            params, iterations = self.fit(x)
            return RegimeFit(params, iterations, "full", ago)
        if defer_warm:
            return RegimeFit(warm_start(anchor, centre, scale), 0, "pending", ago)
        return self.warm_fit(x, warm_start(anchor, centre, scale), ago)

    def warm_fit(self, x: "np.ndarray", start: HmmParams, ago: int) -> RegimeFit:
        """EM from the anchor's states on the current window; the full fit when that fails."""
        cfg = self.config
        iterations = 0
        try:
            run = fit_em(x, start, cfg.n_iter, cfg.tol)
        except (ValueError, FloatingPointError, ArithmeticError):  # EM broke down from the anchor's states
            run = None
        if run is not None:
            iterations = run.iterations
            if run.history and run.iterations < cfg.n_iter and usable(run.params):
                return RegimeFit(run.params, iterations, "warm", ago)
        params, more = self.fit(x)  # not converged or degenerate: the full fit of the current window
        return RegimeFit(params, iterations + more, "warm_failed", ago)

    def analyze(self, candles: CandleSeries) -> TheoryFinding:
        import numpy as np

        cfg = self.config
        close = window_closes(candles, cfg.window, 50, cfg)
        returns, x, centre, scale = standardise(close)
        params, iterations, _, _ = self.regime_fit(candles, x, centre, scale)
        p0, p1, log_likelihood = forward_filter(x, params)
        return self._finding(close, returns, centre, scale, params, iterations, p0, p1, log_likelihood)

    def _finding(
        self, close: "np.ndarray", returns: "np.ndarray", centre: float, scale: float, params: HmmParams, iterations: int,
        p0: float, p1: float, log_likelihood: float,
    ) -> TheoryFinding:
        import numpy as np

        cfg = self.config
        if not (math.isfinite(p0) and math.isfinite(p1) and math.isfinite(log_likelihood)):
            raise InsufficientData("the regime filter produced no finite probability")

        stressed = int(np.argmax(params.variances))
        calm = 1 - stressed
        probability = (p0, p1)
        current = 0 if p0 >= p1 else 1
        other = 1 - current
        means = centre + scale * params.means  # back to log-return units
        stds = scale * np.sqrt(params.variances)
        stay = float(params.transmat[current, current])
        expected_duration = 1.0 / max(1.0 - stay, 1e-12)
        # Occupancy of each state under the chain's stationary distribution, for the t of the means.
        p01, p10 = float(params.transmat[0, 1]), float(params.transmat[1, 0])
        stationary = np.array([p10, p01]) / (p01 + p10) if p01 + p10 > 0 else np.array([0.5, 0.5])
        occupancy = np.maximum(stationary * returns.shape[0], 1.0)
        mean_t = float((means[current] - means[other]) / math.sqrt((stds ** 2 / occupancy).sum()))

        regime = "stressed" if current == stressed else "calm"
        trending = abs(mean_t) >= cfg.mean_t
        label = regime
        bias = None
        if trending:
            label = f"{regime}_{'uptrend' if means[current] > 0 else 'downtrend'}"
            # The regime's Sharpe ratio over its expected duration, discounted by how sure we are of it.
            bias = clip(
                probability[current] * math.tanh(means[current] / stds[current] * math.sqrt(expected_duration)), -1.0, 1.0
            )
        volatility_ratio = float(stds[stressed] / stds[calm])
        # Two states with nearly the same volatility are one regime: shrink the confidence.
        separation = clip((volatility_ratio - 1.0) / 0.5, 0.0, 1.0)
        confidence = clip(2.0 * probability[current] - 1.0, 0.0, 1.0) * separation
        interpretation = (
            f"{probability[current]:.0%} probability of the {regime} regime (per-bar volatility {stds[current]:.2%}; "
            f"stressed is {volatility_ratio:.1f}× as volatile as calm); such spells last ~{expected_duration:.0f} bars"
            + (f"; it drifts {'up' if means[current] > 0 else 'down'} {means[current]:+.3%}/bar." if trending else ".")
        )
        return TheoryFinding(
            bias=bias,
            confidence=confidence,
            label=label,
            interpretation=interpretation,
            metrics={
                "regime_probability": float(probability[current]),
                "stressed_probability": float(probability[stressed]),
                "state_volatility": float(stds[current]),
                "expected_duration": expected_duration,
                "calm_volatility": float(stds[calm]),
                "stressed_volatility": float(stds[stressed]),
                "volatility_ratio": volatility_ratio,
                "state_mean": float(means[current]),
                "mean_difference_t": mean_t,
                "log_likelihood": log_likelihood,
                "em_iterations": float(iterations),
                "bars": float(close.shape[0]),
            },
        )

    def analyze_batch(self, history: CandleSeries, ends: Sequence[int], lookback: int) -> list[TheoryFinding | InsufficientData]:
        """`analyze` at every bar of `ends`, equal to it bar by bar: the warm-start EM of all warm bars and every
        bar's causal filter each run as one vectorised recursion (see `_hmm_recursions`)."""
        from ._hmm_recursions import analyze_batch

        return analyze_batch(self, history, ends, lookback)

    def prompt_section(self, result: TheoryResult) -> str | None:
        if not result.ok:
            return None
        m = result.metrics
        return (
            f"**Markov regime** {result.label} ({m['regime_probability']:.0%} filtered probability; volatility "
            f"{m['state_volatility']:.2%}/bar, expected duration ~{m['expected_duration']:.0f} bars)."
        )


@hookimpl
def register_theories(register):
    register(MarkovRegime)
