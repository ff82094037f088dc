"""Scores of a backtest's signals, all pure functions of the signals and the closes.

- per direction: count, hit rate with a 95% Wilson interval (BUY hits when the close `horizon`
  bars later is higher, SELL when it is lower; a zero return is a miss), mean forward return;
- a follow-the-signal strategy (long on BUY, flat or short on SELL, HOLD keeps or closes the
  position) against buy-and-hold: total return, annualised Sharpe ratio, maximum drawdown, trades;
- per theory: Spearman and Pearson correlation of its `bias` with the forward return, with n;
- walk-forward: the signal bars split into consecutive folds, each scored on its own.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

from ..config import BacktestConfig
from ..evaluation import sharpe as sharpe_ratio, wilson_interval
from ..models import GRANULARITY_SECONDS, CandleSeries
from .equity import EquityCurve
from .execution import Filled, buy_and_hold as hold_all, follow
from .models import (
    SPREAD_METRICS, BacktestError, BarSignal, DirectionScore, Performance, Scores, Spread, SymbolResult, TheoryCorrelation, theory_biases,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

DAYS_PER_YEAR = 365  # crypto trades every day


def forward_returns(close: "np.ndarray", indices: Sequence[int], horizon: int) -> "np.ndarray":
    """close[t + horizon] / close[t] − 1 per index; NaN where t + horizon is past the history."""
    import numpy as np

    idx = np.asarray(indices, dtype=np.int64)
    out = np.full(idx.shape[0], np.nan)
    ok = idx + horizon < close.shape[0]
    out[ok] = close[idx[ok] + horizon] / close[idx[ok]] - 1.0
    return out


def max_drawdown(equity: Sequence[float] | "np.ndarray") -> float:
    """Largest fall from a running peak, as a fraction of that peak (0 for a curve that never falls)."""
    import numpy as np

    curve = np.asarray(equity, dtype=np.float64)
    if curve.size == 0:
        return 0.0
    peaks = np.maximum.accumulate(curve)
    return float(np.max(1.0 - curve / peaks))


def periods_per_year(granularity: str) -> float:
    return DAYS_PER_YEAR * 86400 / GRANULARITY_SECONDS[granularity]


def performance(filled: "Filled", per_year: float) -> Performance:
    import numpy as np

    from ..evaluation.moments import kurtosis, skewness

    returns, held = filled.returns, filled.held
    equity = np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    per_bar = sharpe_ratio(returns, 1.0)
    moments = {}
    if per_bar is not None and returns.shape[0] >= 3:
        moments = {"skewness": _finite(skewness(returns)), "kurtosis": _finite(kurtosis(returns))}
    return Performance(
        sharpe_per_bar=per_bar, **moments,
        total_return=float(equity[-1] - 1.0),
        sharpe=sharpe_ratio(returns, per_year),
        max_drawdown=max_drawdown(equity),
        trades=int(np.count_nonzero(filled.traded)),
        turnover=float(filled.traded.sum()),
        exposure=float(np.count_nonzero(held) / held.shape[0]) if held.shape[0] else 0.0,
        bars=int(returns.shape[0]),
    )


def correlations(signals: Sequence[BarSignal], forward: "np.ndarray", theories: Sequence[str]) -> list[TheoryCorrelation]:
    """Spearman and Pearson correlation of each theory's bias with the forward return."""
    import numpy as np

    from ..evaluation.moments import correlation_p_value, pearson, spearman

    out = []
    forward = np.asarray(forward, dtype=np.float64)
    for name, bias in theory_biases(signals, theories).items():
        spoke = np.isfinite(bias)
        both = spoke & np.isfinite(forward)
        x, y = bias[both], forward[both]
        row = TheoryCorrelation(theory=name, n=int(x.shape[0]), answered=int(np.count_nonzero(spoke)) / len(signals) if signals else 0.0)
        if x.shape[0] >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            rho, r = spearman(x, y), pearson(x, y)
            rho_p, r_p = correlation_p_value(rho, x.shape[0]), correlation_p_value(r, x.shape[0])
            row.spearman, row.spearman_p = _finite(rho), _finite(rho_p)
            row.pearson, row.pearson_p = _finite(r), _finite(r_p)
        out.append(row)
    return out


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def score(
    history: CandleSeries, signals: Sequence[BarSignal], last: int, settings: BacktestConfig, theories: Sequence[str] = (),
    directional: dict[str, bool] | None = None, evidence: str = "full",
) -> Scores:
    """Scores of `signals` (oldest first) with the strategy marked from the first signal bar to bar `last`.

    `evidence`: "full" = every horizon and the shift null; "headline" = the headline horizon only
    (what each fold gets); "none" = the plain counts only."""
    import numpy as np

    if not signals:
        raise BacktestError(f"{history.symbol}: no signals to score")
    close = history.close
    first = signals[0].index
    valid = [s for s in signals if s.direction is not None]
    forward = forward_returns(close, [s.index for s in signals], settings.horizon)
    directions = {}
    for direction in ("BUY", "SELL", "HOLD"):
        chosen = [i for i, s in enumerate(signals) if s.direction == direction]
        fwd = forward[chosen] if chosen else np.array([])
        known = fwd[np.isfinite(fwd)]
        item = DirectionScore(
            direction=direction, count=len(chosen), share=len(chosen) / len(valid) if valid else 0.0, scored=int(known.size),
            mean_forward_return=float(known.mean()) if known.size else None,
        )
        if direction != "HOLD" and known.size:
            hits = int(np.count_nonzero(known > 0) if direction == "BUY" else np.count_nonzero(known < 0))
            item.hits, item.hit_rate = hits, hits / known.size
            item.ci_low, item.ci_high = wilson_interval(hits, int(known.size))
        directions[direction] = item

    per_year = periods_per_year(history.granularity)
    strategy = performance(follow(history, signals, first, last, settings), per_year)
    buy_and_hold = performance(hold_all(history, first, last, settings), per_year)
    return Scores(
        start=signals[0].bar_time,
        end=datetime.fromtimestamp(int(history.timestamp[last]), timezone.utc),
        signals=len(signals),
        failed=len(signals) - len(valid),
        scored=int(np.count_nonzero(np.isfinite(forward))),
        hold_share=directions["HOLD"].share,
        directions=directions,
        strategy=strategy,
        buy_and_hold=buy_and_hold,
        excess_return=strategy.total_return - buy_and_hold.total_return,
        theories=correlations(signals, forward, theories),
        **_evidence(history, signals, first, last, settings, theories, directional or {}, evidence),
    )


def _evidence(history, signals, first, last, settings, theories, directional, evidence: str) -> dict:
    from .evidence import SignalArrays, all_horizons, horizon_scores, shift_null

    if evidence == "none":
        return {}
    arrays = SignalArrays(history, signals, theories)
    horizons = all_horizons(settings) if evidence == "full" else [settings.horizon]
    out: dict = {"horizons": [horizon_scores(history.symbol, arrays, h, settings, directional) for h in horizons]}
    if evidence == "full":
        out["null"] = shift_null(history, signals, first, last, settings)
    return out


def fold_bounds(signals: Sequence[BarSignal], last: int, folds: int) -> list[tuple[int, int, int]]:
    """Consecutive out-of-sample windows: (first signal, end signal, last bar) of each, nearly equal in signals."""
    count = len(signals)
    folds = max(1, min(folds, count))
    edges = [round(k * count / folds) for k in range(folds + 1)]
    out = []
    for k in range(folds):
        lo, hi = edges[k], edges[k + 1]
        fold_last = signals[hi].index if hi < count else last
        out.append((lo, hi, fold_last))
    return out


def spread(scores: Sequence[Scores]) -> dict[str, Spread]:
    """Mean, sample std, min and max of each key metric across folds."""
    import numpy as np

    out = {}
    for name in SPREAD_METRICS:
        values = np.asarray([v for v in (s.metric(name) for s in scores) if v is not None], dtype=np.float64)
        if values.size == 0:
            out[name] = Spread(n=0)
            continue
        out[name] = Spread(
            n=int(values.size), mean=float(values.mean()), std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
            min=float(values.min()), max=float(values.max()),
        )
    return out


def symbol_result(
    history: CandleSeries, signals: list[BarSignal], last: int, settings: BacktestConfig, theories: Sequence[str],
    directional: dict[str, bool] | None = None,
) -> SymbolResult:
    overall = score(history, signals, last, settings, theories, directional)
    times, strategy, hold = equity_curves(history, signals, last, settings)
    folds: list[Scores] = []
    fold_spread: dict[str, Spread] = {}
    if settings.folds > 1:
        for lo, hi, fold_last in fold_bounds(signals, last, settings.folds):
            folds.append(score(history, signals[lo:hi], fold_last, settings, theories, directional, evidence="headline"))
        fold_spread = spread(folds)
    status: dict[str, dict[str, int]] = {name: {} for name in theories}
    for (theory, state), count in Counter((o.theory, o.status) for s in signals for o in s.theories).items():  # first seen first
        status.setdefault(theory, {})[state] = count
    synthesizers = dict(Counter(s.synthesizer or "none" for s in signals))
    return SymbolResult(
        symbol=history.symbol, history_bars=len(history),
        first_history_bar=datetime.fromtimestamp(int(history.timestamp[0]), timezone.utc),
        last_history_bar=datetime.fromtimestamp(int(history.timestamp[-1]), timezone.utc),
        scores=overall, folds=folds, fold_spread=fold_spread, theory_status=status, synthesizers=synthesizers,
        equity=EquityCurve.of(times, {"strategy": strategy, "buy_and_hold": hold}),
    )


def equity_curves(history: CandleSeries, signals: Sequence[BarSignal], last: int, settings: BacktestConfig) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    """Bar timestamps and the strategy and buy-and-hold equity (1.0 at the first signal bar) for charts."""
    import numpy as np

    first = signals[0].index
    strategy = np.concatenate([[1.0], np.cumprod(1.0 + follow(history, signals, first, last, settings).returns)])
    hold = np.concatenate([[1.0], np.cumprod(1.0 + hold_all(history, first, last, settings).returns)])
    return history.timestamp[first:last + 1], strategy, hold
