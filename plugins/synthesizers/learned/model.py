"""One fitted model: LightGBM or a logistic regression, then a calibration map from its raw score to P(up).

The fit's label is "up" (forward return > 0), or with `target = "quantile"` "above the `target_quantile`
of the fitting rows' forward returns"; the calibration maps the score to P(up) either way, so the
confidence and the BUY / SELL threshold mean the same for both targets.

The training rows are in time order. The last `calibration_share` of them calibrate, the rest fit,
and the fitting rows whose label window reaches into the calibration slice are purged: the
calibration never sees a row whose outcome the fit already knew. Isotonic regression fits noise
unless it has many independent points (on weak AR(1) signals with 1,000–4,000 of them its
out-of-sample slope spread over 0.04–0.64, Platt's over 0.44–0.88), and `horizon` overlapping
labels count about as one, so `calibration = "auto"` uses Platt scaling below rows ÷ horizon = 5,000.
Platt scaling counts the slice's independent outcomes by their autocorrelation time, shrinks towards
the training window's base rate, and scales its slope by its reliability (`_platt`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import LearnedConfig

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

ISOTONIC_MIN = 5000  # independent calibration labels `calibration = "auto"` wants before it picks isotonic over Platt
EPSILON = 1e-3  # probabilities are kept in [ε, 1 − ε]: a calibration map fitted on finite data never knows for sure
MIN_PAYOFF_SIGNALS = 30  # past signals in a direction needed before their payoff ratio is stated (as sizing's window rule)


class TrainingError(Exception):
    """Too few rows, or a single class: no model can be fitted from these rows."""


@dataclass
class Calibration:
    method: str  # "isotonic" or "platt"
    rows: int
    x: list[float] = field(default_factory=list)  # isotonic: the map's knots (raw score -> probability)
    y: list[float] = field(default_factory=list)
    a: float = 0.0  # platt: P = 1 / (1 + exp(-(a·logit(raw) + b)))
    b: float = 0.0

    def apply(self, raw: "np.ndarray") -> "np.ndarray":
        import numpy as np

        if self.method == "isotonic":
            p = np.interp(raw, self.x, self.y)
        else:
            p = _sigmoid(self.a * _logit(raw) + self.b)
        return np.clip(p, EPSILON, 1 - EPSILON)


@dataclass
class FittedModel:
    kind: str
    names: list[str]
    calibration: Calibration
    trained_rows: int
    first_time: int
    last_time: int
    last_label_time: int
    threshold_return: float | None  # target = "quantile": the forward return above which a fitting row's label is 1
    base_rate: float  # share of "up" (forward return > 0) among the training rows
    importances: dict[str, float]
    booster_text: str = ""  # lightgbm: the booster as LightGBM's own text format
    coef: list[float] = field(default_factory=list)  # logistic: on standardised features
    intercept: float = 0.0
    centre: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    payoff_buy: float | None = None  # b of the BUYs it would have signalled on its calibration slice (None: too few)
    payoff_sell: float | None = None  # the same for SELLs, a fall counting as the gain
    _booster: Any = field(default=None, repr=False, compare=False)

    def raw(self, x: "np.ndarray") -> "np.ndarray":
        """The uncalibrated P(up) of each row of `x` (n × len(names))."""
        import numpy as np

        if self.kind == "lightgbm":
            return np.asarray(self.booster().predict(x, num_threads=1), dtype=np.float64)
        z = self._standardised(x)
        return _sigmoid(z @ np.asarray(self.coef) + self.intercept)

    def probability(self, x: "np.ndarray") -> "np.ndarray":
        return self.calibration.apply(self.raw(x))

    def explain(self, x: "np.ndarray") -> tuple[float, "np.ndarray"]:
        """The calibrated P(up) of one row and each feature's push on the raw log-odds, from one model call:
        LightGBM's contributions plus their bias column are the raw log-odds itself."""
        import numpy as np

        if self.kind == "lightgbm":
            pushes = np.asarray(self.booster().predict(x.reshape(1, -1), pred_contrib=True, num_threads=1))[0]
            raw = _sigmoid(np.array([pushes.sum()]))
            return float(self.calibration.apply(raw)[0]), pushes[:-1]
        return float(self.probability(x.reshape(1, -1))[0]), self.contributions(x)

    def contributions(self, x: "np.ndarray") -> "np.ndarray":
        """Each feature's push on the raw log-odds of one row (LightGBM's SHAP values, or coefficient × value)."""
        import numpy as np

        if self.kind == "lightgbm":
            return np.asarray(self.booster().predict(x.reshape(1, -1), pred_contrib=True, num_threads=1))[0, :-1]
        return (self._standardised(x.reshape(1, -1)) * np.asarray(self.coef))[0]

    def booster(self) -> Any:
        if self._booster is None:
            import lightgbm

            self._booster = lightgbm.Booster(model_str=self.booster_text)
        return self._booster

    def _standardised(self, x: "np.ndarray") -> "np.ndarray":
        import numpy as np

        centre = np.asarray(self.centre)
        filled = np.where(np.isnan(x), centre, x)
        return (filled - centre) / np.asarray(self.scale)


def labels_of(forward: "np.ndarray", cfg: LearnedConfig, fitting: "np.ndarray") -> tuple["np.ndarray", float | None]:
    """The labels the model is fitted on, from forward log returns: 1 = up (> 0); with target = "quantile", 1 = above
    the `target_quantile` of the fitting rows' forward returns (`fitting`: their indices), the cut computed from them only."""
    import numpy as np

    if cfg.target == "quantile":
        cut = float(np.quantile(forward[fitting], cfg.target_quantile))
        return (forward > cut).astype(np.float64), cut
    return (forward > 0).astype(np.float64), None


def fit(x: "np.ndarray", forward: "np.ndarray", times: "np.ndarray", label_times: "np.ndarray", names: list[str],
        cfg: LearnedConfig, threads: int) -> FittedModel:
    """Fit on the older rows, calibrate on the newest `calibration_share`; see the module docstring."""
    import numpy as np

    n = x.shape[0]
    if n < cfg.min_train:
        raise TrainingError(f"{n} labelled rows; the first model needs {cfg.min_train} (min_train)")
    calibrating = max(20, int(round(n * cfg.calibration_share)))
    start = n - calibrating
    fitting = np.nonzero(label_times[:start] < times[start])[0]  # purged: labels known before the calibration slice starts
    y, cut = labels_of(forward, cfg, fitting)
    # The calibration always maps the score to P(up): with target = "quantile" the fit learns to rank the rows by
    # their chance of a return above the cut, and the confidence still means what every signal's does.
    up = (forward > 0).astype(np.float64)
    if fitting.shape[0] < 20 or len(set(y[fitting].tolist())) < 2 or len(set(up[start:].tolist())) < 2:
        raise TrainingError(f"the training rows hold a single class or too few rows to fit ({fitting.shape[0]}) and calibrate ({calibrating})")
    fitted = _fit_lightgbm(x[fitting], y[fitting], names, cfg, threads) if cfg.model == "lightgbm" else _fit_logistic(x[fitting], y[fitting], names, cfg)
    fitted.calibration = _calibrate(fitted.raw(x[start:]), up[start:], cfg, float(up.mean()))
    fitted.payoff_buy, fitted.payoff_sell = signal_payoffs(fitted.probability(x[start:]), forward[start:], cfg.threshold)
    fitted.trained_rows, fitted.first_time, fitted.last_time = n, int(times[0]), int(times[-1])
    fitted.last_label_time, fitted.threshold_return, fitted.base_rate = int(label_times[-1]), cut, float(up.mean())
    return fitted


def signal_payoffs(p_up: "np.ndarray", forward: "np.ndarray", threshold: float) -> tuple[float | None, float | None]:
    """(b of BUYs, b of SELLs): mean gain / mean loss of the simple forward returns of the rows the model would
    have called BUY (P(up) ≥ threshold) or SELL (≤ 1 − threshold; a fall is a SELL's gain). The rows are the
    calibration slice: the fit never saw them and their forward returns were known before the training bar."""
    import numpy as np

    simple = np.expm1(forward)

    def ratio(returns: "np.ndarray") -> float | None:
        gains, losses = returns[returns > 0], returns[returns < 0]
        if returns.shape[0] < MIN_PAYOFF_SIGNALS or gains.shape[0] == 0 or losses.shape[0] == 0:
            return None
        return float(gains.mean() / -losses.mean())

    return ratio(simple[p_up >= threshold]), ratio(-simple[p_up <= 1 - threshold])


def _fit_lightgbm(x: "np.ndarray", y: "np.ndarray", names: list[str], cfg: LearnedConfig, threads: int) -> FittedModel:
    import lightgbm
    import numpy as np

    params = {
        "objective": "binary", "learning_rate": cfg.learning_rate, "num_leaves": cfg.leaves, "min_data_in_leaf": cfg.min_leaf_rows,
        "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": cfg.l2, "seed": cfg.seed,
        "deterministic": True, "force_row_wise": True, "num_threads": threads, "verbose": -1,
    }
    booster = lightgbm.train(params, lightgbm.Dataset(x, label=y, free_raw_data=True), num_boost_round=cfg.trees)
    gain = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    model = FittedModel(
        kind="lightgbm", names=list(names), calibration=Calibration("platt", 0), trained_rows=0, first_time=0, last_time=0,
        last_label_time=0, threshold_return=None, base_rate=0.0, importances=_normalised(names, gain), booster_text=booster.model_to_string(),
    )
    model._booster = booster
    return model


def _fit_logistic(x: "np.ndarray", y: "np.ndarray", names: list[str], cfg: LearnedConfig) -> FittedModel:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():  # a column without any value has no median: it is centred at 0
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nan_to_num(np.nanmedian(x, axis=0), nan=0.0)
    filled = np.where(np.isnan(x), centre, x)
    scale = filled.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    regression = LogisticRegression(C=1.0 / max(cfg.l2, 1e-6), max_iter=2000)
    regression.fit((filled - centre) / scale, y)
    coef = regression.coef_[0]
    return FittedModel(
        kind="logistic", names=list(names), calibration=Calibration("platt", 0), trained_rows=0, first_time=0, last_time=0,
        last_label_time=0, threshold_return=None, base_rate=0.0, importances=_normalised(names, np.abs(coef)),
        coef=coef.tolist(), intercept=float(regression.intercept_[0]), centre=centre.tolist(), scale=scale.tolist(),
    )


def _calibrate(raw: "np.ndarray", y: "np.ndarray", cfg: LearnedConfig, prior: float) -> Calibration:
    """The map from the raw score to P(up), fitted on the calibration slice (`y`: its up / down outcomes);
    `prior` = the whole training window's up share, what a score that says nothing is shrunk towards."""
    import numpy as np

    # Overlapping labels: `horizon` consecutive rows share most of their outcome, so the slice holds about
    # rows ÷ horizon independent ones; isotonic regression on fewer than ~1,000 of those fits noise.
    independent = raw.shape[0] / max(1, cfg.horizon)
    method = cfg.calibration if cfg.calibration != "auto" else ("isotonic" if independent >= ISOTONIC_MIN else "platt")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibration("isotonic", int(raw.shape[0]), x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_])
    # Rows count as independent outcomes only once per autocorrelation time of the outcomes (at least `horizon`, the
    # overlap; more when outcomes persist, as in a drift regime): a slice of one regime is a few outcomes, not hundreds.
    rows_per_outcome = max(float(max(1, cfg.horizon)), autocorrelation_time(y))
    a, b = _platt(_logit(raw), y, 1.0 / rows_per_outcome, float(_logit(np.array([prior]))[0]))
    return Calibration("platt", int(raw.shape[0]), a=a, b=b)


def autocorrelation_time(y: "np.ndarray") -> float:
    """1 + 2 Σ ρ_k of the series (Geyer's initial positive sequence): how many rows count as one independent outcome."""
    import numpy as np

    e = np.asarray(y, dtype=np.float64) - float(np.mean(y))
    n = e.shape[0]
    var = float(e @ e) / n
    if n < 8 or var <= 0:
        return 1.0
    spectrum = np.fft.rfft(e, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: n // 4 + 2] / (n * var)
    tau = -1.0
    for m in range(0, (acf.shape[0] - 1) // 2):
        pair = acf[2 * m] + acf[2 * m + 1]
        if pair <= 0:
            break
        tau += 2 * pair
    return max(1.0, tau)


def _platt(z: "np.ndarray", y: "np.ndarray", weight: float, prior: float, l2: float = 1.0) -> tuple[float, float]:
    """Platt scaling P = σ(a·z + b) of the logit raw scores `z`, each row weighing `weight` against an L2 penalty l2
    on a and on the offset from `prior` (a logit): with few independent outcomes P stays near the prior, the
    training window's base rate, not the slice's. The slope is then multiplied by its reliability 1 − se²/a²
    (0 when the slice cannot tell it from zero): a slope estimated with noise, applied as it is, makes the
    probabilities of the bars scored more extreme than their outcomes (measured out of sample on AR(1) candles)."""
    import numpy as np

    centre = float(z.mean())
    zc = z - centre
    a = beta = 0.0
    hess = np.eye(2)
    for _ in range(100):  # Newton's method on a convex objective: a few steps
        p = _sigmoid(a * zc + prior + beta)
        r = p - y
        s = weight * p * (1 - p)
        grad = np.array([weight * float(r @ zc) + l2 * a, weight * float(r.sum()) + l2 * beta])
        hess = np.array([[float(s @ (zc * zc)) + l2, float(s @ zc)], [float(s @ zc), float(s.sum()) + l2]])
        step = np.linalg.solve(hess, grad)
        a, beta = a - float(step[0]), beta - float(step[1])
        if float(np.abs(step).max()) < 1e-10:
            break
    variance = float(np.linalg.inv(hess)[0, 0])
    a *= max(0.0, 1.0 - variance / (a * a)) if a != 0 else 0.0
    return a, prior + beta - a * centre


def _sigmoid(z: "np.ndarray") -> "np.ndarray":
    """1 / (1 + e^−z) without overflow: a standardised feature far outside the training range gives a huge z."""
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.clip(z, -500.0, 500.0)))


def _logit(p: "np.ndarray") -> "np.ndarray":
    import numpy as np

    q = np.clip(p, EPSILON, 1 - EPSILON)
    return np.log(q / (1 - q))


def _normalised(names: list[str], values: "np.ndarray") -> dict[str, float]:
    total = float(values.sum())
    return {n: float(v) / total for n, v in zip(names, values)} if total > 0 and math.isfinite(total) else {n: 0.0 for n in names}
