"""Backtests: replay history through the same pipeline as `v7 run` and score the signals.

For every signal bar t the enabled theories get the last `lookback` candles up to and including t
(`history.slice(t + 1 - lookback, t + 1)`), then the prompt formatters and the synthesizer run
exactly as in `Pipeline.process_symbol`. Nothing after t is ever handed to a plugin. Market-context
feeds are not consulted: they describe today's market, which would be lookahead for a past bar.

Scoring (all pure functions of the signals and the closes, below):
- per direction: count, hit rate with a 95% Wilson interval (BUY hits when the close `horizon`
  bars later is higher, SELL when it is lower; a zero return is a miss), mean forward return;
- a follow-the-signal strategy (long on BUY, flat or short on SELL, HOLD keeps or closes the
  position) against buy-and-hold: total return, annualised Sharpe ratio, maximum drawdown, trades;
- per theory: Spearman and Pearson correlation of its `bias` with the forward return, with n;
- walk-forward: the signal bars split into consecutive folds, each scored on its own.

Heavy work is parallel: bars are independent (each signal is a function of the candles up to its
bar only), so chunks of bars go to a pool of forked worker processes, each with its own pipeline.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .components import StartupError
from .config import BacktestConfig, V7Config
from .models import GRANULARITY_SECONDS, CandleSeries, PromptRequest, TheoryResult, TokenUsage

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .engine import Pipeline
    from .registry import Registry

WILSON_Z = 1.959963984540054  # two-sided 95%
TOKENS_PER_CHAR = 0.3  # DeepSeek's rule of thumb for English text; prompts full of numbers run close to it
TYPICAL_COMPLETION_TOKENS = 100  # {"signal": ..., "confidence": ..., "reasoning": "one or two sentences"}
HISTORY_BARS = 10_000_000  # asked of a feed that has no range method: "everything you have"
DAYS_PER_YEAR = 365  # crypto trades every day
SPREAD_METRICS = (
    "strategy_return", "buy_and_hold_return", "excess_return", "strategy_sharpe", "max_drawdown",
    "trades", "buy_hit_rate", "sell_hit_rate", "hold_share",
)


class BacktestError(Exception):
    """A backtest that cannot start or finish; `str()` is the message shown to the user."""


class LlmCapExceeded(BacktestError):
    """The estimated LLM calls exceed `llm_call_cap` and nobody said --yes."""

    def __init__(self, estimate: "LlmEstimate") -> None:
        self.estimate = estimate
        super().__init__(
            f"this backtest would make up to {estimate.calls:,} LLM calls to {estimate.synthesizer!r} "
            f"({estimate.describe_cost()}), above llm_call_cap = {estimate.cap:,}. Narrow it (--start/--end, --bars, "
            f"a larger --step or fewer --symbols), raise the cap (--llm-call-cap or [backtest] llm_call_cap), "
            f"or confirm with --yes."
        )


# -- result models ----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class DirectionScore(_Model):
    """How one direction's signals did: hit rate (BUY up / SELL down) over `horizon` bars, with a 95% Wilson interval."""

    direction: str
    count: int
    share: float
    scored: int = Field(description="signals whose forward return is known (the horizon ends inside the history)")
    hits: int | None = None
    hit_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    mean_forward_return: float | None = None


class Performance(_Model):
    """An equity curve's summary; returns are fractions (0.12 = +12%)."""

    total_return: float
    sharpe: float | None = Field(description="annualised: mean / std of per-bar returns × sqrt(bars per year)")
    max_drawdown: float = Field(description="largest fall from a running peak, as a fraction of the peak")
    trades: int = Field(description="bars at which the position changed")
    turnover: float = Field(description="sum of |position change|; costs are charged on it")
    exposure: float = Field(description="share of bars with a position")
    bars: int


class TheoryCorrelation(_Model):
    """How a theory's `bias` lined up with the forward return (p-values assume independent pairs:
    with step < horizon the forward returns overlap and the p-values are too small)."""

    theory: str
    n: int
    answered: float = Field(description="share of signal bars where the theory answered ok with a bias")
    spearman: float | None = None
    spearman_p: float | None = None
    pearson: float | None = None
    pearson_p: float | None = None


class Scores(_Model):
    start: datetime
    end: datetime
    signals: int
    failed: int = Field(default=0, description="bars where no synthesizer produced a signal (the position was kept)")
    scored: int
    hold_share: float
    directions: dict[str, DirectionScore]
    strategy: Performance
    buy_and_hold: Performance
    excess_return: float = Field(description="strategy total return minus buy-and-hold total return")
    theories: list[TheoryCorrelation] = Field(default_factory=list)

    def metric(self, name: str) -> float | None:
        """The value of one of SPREAD_METRICS."""
        values: dict[str, float | None] = {
            "strategy_return": self.strategy.total_return,
            "buy_and_hold_return": self.buy_and_hold.total_return,
            "excess_return": self.excess_return,
            "strategy_sharpe": self.strategy.sharpe,
            "max_drawdown": self.strategy.max_drawdown,
            "trades": float(self.strategy.trades),
            "buy_hit_rate": self.directions["BUY"].hit_rate,
            "sell_hit_rate": self.directions["SELL"].hit_rate,
            "hold_share": self.hold_share,
        }
        return values[name]


class Spread(_Model):
    """A metric across folds (folds where it is undefined are left out; `n` says how many count)."""

    n: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


class LlmEstimate(_Model):
    synthesizer: str
    calls: int = Field(description="upper bound: one call per signal bar and symbol (cached answers cost nothing)")
    prompt_tokens_per_call: int = Field(description=f"estimated from the first prompt at {TOKENS_PER_CHAR} tokens per character")
    completion_tokens_per_call: int
    max_completion_tokens: int | None = None
    price_input_per_million: float | None = None
    price_output_per_million: float | None = None
    estimated_cost: float | None = Field(default=None, description="USD, every prompt token priced as a cache miss")
    max_cost: float | None = Field(default=None, description="USD, every answer as long as max_tokens allows")
    cap: int

    def describe_cost(self) -> str:
        if self.estimated_cost is None:
            return "cost unknown: the synthesizer's config has no prices"
        return f"about {self.estimated_cost:.4f} USD, at most {self.max_cost:.4f} USD"

    def describe(self) -> str:
        return (
            f"LLM synthesizer {self.synthesizer!r}: up to {self.calls:,} calls, ~{self.prompt_tokens_per_call:,} prompt + "
            f"~{self.completion_tokens_per_call} completion tokens each; {self.describe_cost()} "
            f"(answers already in the response cache cost nothing); cap {self.cap:,}."
        )


class LlmUsage(_Model):
    requests: int = 0
    cached_answers: int = 0
    fallbacks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class LookaheadDifference(_Model):
    symbol: str
    bar_time: datetime
    field: str
    backtest: str
    recomputed: str


class LookaheadReport(_Model):
    """Signals recomputed in a fresh process from copies of the candles up to their bar only."""

    checked: int
    differences: list[LookaheadDifference] = Field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.differences


class SymbolResult(_Model):
    symbol: str
    history_bars: int
    first_history_bar: datetime
    last_history_bar: datetime
    scores: Scores
    folds: list[Scores] = Field(default_factory=list)
    fold_spread: dict[str, Spread] = Field(default_factory=dict)
    theory_status: dict[str, dict[str, int]] = Field(default_factory=dict, description="per theory: count of each status")
    synthesizers: dict[str, int] = Field(default_factory=dict, description="signals per synthesizer that produced them")


class BacktestResult(_Model):
    id: int | None = None
    created_at: datetime
    v7_version: str
    config_hash: str
    config_path: str | None = None
    granularity: str
    lookback: int
    synthesizer: str
    theories: list[str]
    settings: dict[str, Any]
    symbols: list[SymbolResult]
    bars: int = Field(description="signals computed, all symbols")
    elapsed_seconds: float
    bars_per_second: float
    workers: int
    theory_ms: dict[str, float] = Field(default_factory=dict, description="mean time per bar of each theory, in ms")
    llm_estimate: LlmEstimate | None = None
    llm_usage: LlmUsage | None = None
    lookahead: LookaheadReport | None = None


# -- signals per bar ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TheoryOutcome:
    """The parts of a TheoryResult a backtest keeps per bar (metrics only as a digest)."""

    theory: str
    status: str
    bias: float | None
    confidence: float
    label: str
    metrics_digest: str
    elapsed_ms: float

    @classmethod
    def of(cls, result: TheoryResult) -> "TheoryOutcome":
        return cls(result.theory, result.status, result.bias, result.confidence, result.label, metrics_digest(result.metrics), result.elapsed_ms)


def metrics_digest(metrics: dict[str, float]) -> str:
    """Metrics to 10 significant digits, hashed: equal digests mean the same numbers for any purpose."""
    text = ";".join(f"{k}={v:.10g}" for k, v in sorted(metrics.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class BarSignal:
    """One backtest signal. `direction` is None when no synthesizer produced a signal."""

    index: int
    timestamp: int
    price: float
    direction: str | None
    confidence: float
    synthesizer: str
    fallback_reason: str | None
    theories: tuple[TheoryOutcome, ...]
    attempts: int = 1
    usage: TokenUsage | None = None

    @property
    def bar_time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, timezone.utc)


def window_at(history: CandleSeries, t: int, lookback: int) -> CandleSeries:
    """The candles the pipeline sees at bar t: the last `lookback` up to and including t, never later ones.

    `CandleSeries.slice` already counts gaps inside the window only; the arrays are copied as well,
    because a numpy view's `.base` would still reach the bars after t.
    """
    import dataclasses

    window = history.slice(max(0, t + 1 - lookback), t + 1)
    return dataclasses.replace(
        window,
        **{name: getattr(window, name).copy() for name in ("timestamp", "open", "high", "low", "close", "volume")},
    )


def synthesize_bar(pipeline: "Pipeline", window: CandleSeries, results: list[TheoryResult], index: int) -> BarSignal:
    """Formatters and synthesizer for one bar through `Pipeline.decide`, as `v7 run` does (no market context)."""
    from .logs import get_logger

    request = PromptRequest(
        symbol=window.symbol, granularity=window.granularity, bar_time=window.last_time,
        price=window.last_price, results=results, context=None,
    )
    outcomes = tuple(TheoryOutcome.of(r) for r in results)
    base = dict(index=index, timestamp=int(window.timestamp[-1]), price=window.last_price, theories=outcomes)
    try:
        _, synthesis, name, fallback_reason = pipeline.decide(request)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        get_logger(symbol=window.symbol).warning("no synthesizer produced a signal; position kept", bar_time=window.last_time.isoformat(), error=reason)
        return BarSignal(**base, direction=None, confidence=0.0, synthesizer="", fallback_reason=reason, attempts=0)
    return BarSignal(
        **base, direction=synthesis.direction, confidence=synthesis.confidence, synthesizer=name,
        fallback_reason=fallback_reason, attempts=synthesis.attempts, usage=synthesis.usage,
    )


def signals_for(pipeline: "Pipeline", history: CandleSeries, indices: Sequence[int], lookback: int) -> list[BarSignal]:
    """Theories, formatters and synthesizer at each bar of `indices`, in order."""
    out = []
    for t in indices:
        window = window_at(history, t, lookback)
        out.append(synthesize_bar(pipeline, window, pipeline.analyze(window), t))
    return out


def theory_results_for(pipeline: "Pipeline", history: CandleSeries, indices: Sequence[int], lookback: int) -> list[list[TheoryResult]]:
    return [pipeline.analyze(window_at(history, t, lookback)) for t in indices]


# -- history --------------------------------------------------------------------------------------


def _utc_seconds(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def load_history(config: V7Config, registry: "Registry", symbol: str, start: datetime | None, end: datetime | None) -> CandleSeries:
    """All candles the config's candle feed has for `symbol`, enough before `start` for a full lookback.

    A feed may offer `fetch_history(symbol, granularity, start, end)` (unix seconds, None = open);
    a feed with Coinbase's `fetch_range` is paged through; any other feed is asked, through
    `fetch_candles`, for all the history it has. A replay feed's own `start` is ignored here (it
    only says where `v7 run` begins; see `default_start`).
    """
    name = config.candle_feed
    if not name:
        raise BacktestError("no candle feed is enabled; enable one in [feeds]")
    component = registry.get("feed", name)
    if component is None:
        raise BacktestError(f"candle feed {name!r} is not installed")
    feed_config = config.plugin_config("feed", name) or component.cls.Config()
    if "start" in type(feed_config).model_fields:
        feed_config = feed_config.model_copy(update={"start": None})
    try:
        feed = component.cls(feed_config)
    except Exception as exc:
        raise BacktestError(f"feed {name!r} failed to start: {type(exc).__name__}: {exc}") from exc
    granularity = config.engine.granularity
    step = GRANULARITY_SECONDS[granularity]
    lookback = config.engine.lookback
    start_s, end_s = _utc_seconds(start), _utc_seconds(end)
    try:
        if feed.supports("fetch_history"):
            first = None if start_s is None else start_s - lookback * step
            series = feed.fetch_history(symbol, granularity, first, end_s)
        elif hasattr(feed, "fetch_range"):
            series = _paged_history(feed, symbol, granularity, start_s, end_s, lookback)
        else:
            series = feed.fetch_candles(symbol, granularity, HISTORY_BARS)
    except BacktestError:
        raise
    except Exception as exc:
        raise BacktestError(f"{symbol}: feed {name!r} could not provide history: {type(exc).__name__}: {exc}") from exc
    finally:
        try:
            feed.close()
        except Exception:
            pass
    if series is None or len(series) == 0:
        raise BacktestError(f"{symbol}: feed {name!r} returned no candles")
    return own_copy(series)


def _paged_history(feed: Any, symbol: str, granularity: str, start_s: int | None, end_s: int | None, lookback: int) -> CandleSeries:
    """Closed buckets from a Coinbase-style `fetch_range` (≤ 300 per request), oldest first, validated."""
    import pandas as pd

    from .candles import validate_candles

    step = GRANULARITY_SECONDS[granularity]
    now = int(getattr(feed, "clock", time.time)())
    last_closed = (now // step) * step - step
    end_bucket = min(last_closed, (end_s // step) * step if end_s is not None else last_closed)
    if start_s is None:  # no range given: the last 2 × lookback bars, half of them signal bars
        start_s = end_bucket - (lookback - 1) * step
    first_bucket = (start_s // step) * step - (lookback - 1) * step
    per = int(getattr(getattr(feed, "config", None), "candles_per_request", 300) or 300)
    rows: list[Any] = []
    page = first_bucket
    while page <= end_bucket:
        page_end = min(page + (per - 1) * step, end_bucket)
        rows.extend(feed.fetch_range(symbol, step, page, page_end + step - 1))
        page = page_end + step
    closed = [list(r[:6]) for r in rows if isinstance(r, (list, tuple)) and len(r) >= 6 and isinstance(r[0], (int, float)) and first_bucket <= r[0] <= end_bucket]
    if not closed:
        raise BacktestError(f"{symbol}: no candles between {iso(first_bucket)} and {iso(end_bucket)}")
    frame = pd.DataFrame(closed, columns=["timestamp", "low", "high", "open", "close", "volume"])
    return validate_candles(frame, symbol, granularity, source=f"{getattr(feed, 'name', 'feed')} history")


def own_copy(series: CandleSeries) -> CandleSeries:
    """Contiguous copies: every window handed to a plugin is a view of the backtest's own buffers."""
    import numpy as np

    return CandleSeries(
        symbol=series.symbol, granularity=series.granularity,
        timestamp=np.array(series.timestamp, dtype=np.int64), open=np.array(series.open, dtype=np.float64),
        high=np.array(series.high, dtype=np.float64), low=np.array(series.low, dtype=np.float64),
        close=np.array(series.close, dtype=np.float64), volume=np.array(series.volume, dtype=np.float64),
        gaps=series.gaps, dropped=dict(series.dropped),
    )


def iso(value: int | float | datetime) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(int(value), timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_start(config: V7Config) -> datetime | None:
    """A replay feed's `start` (where `v7 run` begins) doubles as the backtest's default start."""
    name = config.candle_feed
    feed_config = config.plugin_config("feed", name) if name else None
    value = getattr(feed_config, "start", None)
    return value if isinstance(value, datetime) else None


def signal_range(history: CandleSeries, lookback: int, start: datetime | None, end: datetime | None, step: int, bars: int | None = None) -> tuple[list[int], int]:
    """Signal bar indices (every `step` bars) and the last bar of the range (where the strategy is marked).

    Default start: the first bar with a full `lookback` behind it. `bars` keeps only the last N bars of the range.
    """
    import numpy as np

    n = len(history)
    first = lookback - 1 if start is None else int(np.searchsorted(history.timestamp, _utc_seconds(start), side="left"))
    last = n - 1 if end is None else int(np.searchsorted(history.timestamp, _utc_seconds(end), side="right")) - 1
    if bars is not None:
        first = max(first, last - bars + 1)
    first = max(first, 0)
    if first > last:
        raise BacktestError(
            f"{history.symbol}: no bars to backtest between {iso(history.timestamp[min(first, n - 1)])} and "
            f"{iso(history.timestamp[max(last, 0)])} ({n} candles, lookback {lookback})"
        )
    return list(range(first, last + 1, step)), last


# -- scoring --------------------------------------------------------------------------------------


def wilson_interval(hits: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


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


def sharpe_ratio(returns: Sequence[float] | "np.ndarray", periods_per_year: float) -> float | None:
    """Annualised Sharpe ratio (zero risk-free rate): mean / sample std × sqrt(periods per year); None when undefined."""
    import numpy as np

    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return None
    std = float(r.std(ddof=1))
    if not std > 1e-15:
        return None
    return float(r.mean() / std * math.sqrt(periods_per_year))


def periods_per_year(granularity: str) -> float:
    return DAYS_PER_YEAR * 86400 / GRANULARITY_SECONDS[granularity]


def positions(signals: Sequence[BarSignal], first: int, last: int, short_on_sell: bool, hold_keeps_position: bool) -> "np.ndarray":
    """The position held from bar i to bar i+1, for i in first..last-1 (1 long, 0 flat, −1 short).

    A signal at bar t sets the position from t's close on; between signals it is kept.
    """
    import numpy as np

    target = np.full(max(last - first, 0), np.nan)
    for s in signals:
        if not first <= s.index < last or s.direction is None:
            continue
        if s.direction == "BUY":
            target[s.index - first] = 1.0
        elif s.direction == "SELL":
            target[s.index - first] = -1.0 if short_on_sell else 0.0
        elif not hold_keeps_position:
            target[s.index - first] = 0.0
    held = np.zeros_like(target)
    current = 0.0
    for i, value in enumerate(target):
        if not math.isnan(value):
            current = value
        held[i] = current
    return held


def strategy_returns(close: "np.ndarray", held: "np.ndarray", first: int, cost_rate: float) -> "np.ndarray":
    """Per-bar net returns: (1 − cost × |Δposition|) × (1 + position × bar return) − 1."""
    import numpy as np

    bar = close[first + 1:first + 1 + held.shape[0]] / close[first:first + held.shape[0]] - 1.0
    change = np.abs(np.diff(np.concatenate([[0.0], held])))
    return (1.0 - cost_rate * change) * (1.0 + held * bar) - 1.0


def performance(returns: "np.ndarray", held: "np.ndarray", per_year: float) -> Performance:
    import numpy as np

    equity = np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    change = np.abs(np.diff(np.concatenate([[0.0], held])))
    return Performance(
        total_return=float(equity[-1] - 1.0),
        sharpe=sharpe_ratio(returns, per_year),
        max_drawdown=max_drawdown(equity),
        trades=int(np.count_nonzero(change)),
        turnover=float(change.sum()),
        exposure=float(np.count_nonzero(held) / held.shape[0]) if held.shape[0] else 0.0,
        bars=int(returns.shape[0]),
    )


def correlations(signals: Sequence[BarSignal], forward: "np.ndarray", theories: Sequence[str]) -> list[TheoryCorrelation]:
    """Spearman and Pearson correlation of each theory's bias with the forward return."""
    import warnings

    import numpy as np
    from scipy import stats

    out = []
    for position, name in enumerate(theories):
        biases, returns = [], []
        answered = 0
        for s, ret in zip(signals, forward):
            outcome = s.theories[position] if position < len(s.theories) else None
            if outcome is None or outcome.status != "ok" or outcome.bias is None:
                continue
            answered += 1
            if math.isfinite(ret):
                biases.append(outcome.bias)
                returns.append(ret)
        row = TheoryCorrelation(theory=name, n=len(biases), answered=answered / len(signals) if signals else 0.0)
        x, y = np.asarray(biases), np.asarray(returns)
        if len(biases) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho, rho_p = stats.spearmanr(x, y)
                r, r_p = stats.pearsonr(x, y)
            row.spearman, row.spearman_p = _finite(rho), _finite(rho_p)
            row.pearson, row.pearson_p = _finite(r), _finite(r_p)
        out.append(row)
    return out


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def score(
    history: CandleSeries, signals: Sequence[BarSignal], last: int, settings: BacktestConfig, theories: Sequence[str] = (),
) -> Scores:
    """Scores of `signals` (oldest first) with the strategy marked from the first signal bar to bar `last`."""
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
    cost_rate = (settings.fees_bps + settings.slippage_bps) / 10_000
    held = positions(signals, first, last, settings.short_on_sell, settings.hold_keeps_position)
    strategy = performance(strategy_returns(close, held, first, cost_rate), held, per_year)
    always = np.ones_like(held)
    buy_and_hold = performance(strategy_returns(close, always, first, 0.0), always, per_year)
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
    )


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


def symbol_result(history: CandleSeries, signals: list[BarSignal], last: int, settings: BacktestConfig, theories: Sequence[str]) -> SymbolResult:
    overall = score(history, signals, last, settings, theories)
    folds: list[Scores] = []
    fold_spread: dict[str, Spread] = {}
    if settings.folds > 1:
        for lo, hi, fold_last in fold_bounds(signals, last, settings.folds):
            folds.append(score(history, signals[lo:hi], fold_last, settings, theories))
        fold_spread = spread(folds)
    status: dict[str, dict[str, int]] = {name: {} for name in theories}
    synthesizers: dict[str, int] = {}
    for s in signals:
        for outcome in s.theories:
            counts = status.setdefault(outcome.theory, {})
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        key = s.synthesizer or "none"
        synthesizers[key] = synthesizers.get(key, 0) + 1
    return SymbolResult(
        symbol=history.symbol, history_bars=len(history),
        first_history_bar=datetime.fromtimestamp(int(history.timestamp[0]), timezone.utc),
        last_history_bar=datetime.fromtimestamp(int(history.timestamp[-1]), timezone.utc),
        scores=overall, folds=folds, fold_spread=fold_spread, theory_status=status, synthesizers=synthesizers,
    )


def equity_curves(history: CandleSeries, signals: Sequence[BarSignal], last: int, settings: BacktestConfig) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    """Bar timestamps and the strategy and buy-and-hold equity (1.0 at the first signal bar) for charts."""
    import numpy as np

    first = signals[0].index
    held = positions(signals, first, last, settings.short_on_sell, settings.hold_keeps_position)
    cost_rate = (settings.fees_bps + settings.slippage_bps) / 10_000
    strategy = np.concatenate([[1.0], np.cumprod(1.0 + strategy_returns(history.close, held, first, cost_rate))])
    hold = history.close[first:last + 1] / history.close[first]
    return history.timestamp[first:last + 1], strategy, hold


# -- LLM estimate -------------------------------------------------------------------------------


def is_llm(synthesizer: Any) -> bool:
    return bool(getattr(synthesizer, "needs_prompt", False))


def estimate_llm(synthesizer: Any, first_prompt: str, calls: int, cap: int) -> LlmEstimate:
    """Calls and cost of an LLM backtest, from the first prompt's length and the synthesizer's configured prices."""
    cfg = getattr(synthesizer, "config", None)
    messages = synthesizer.messages_for(first_prompt) if hasattr(synthesizer, "messages_for") else [{"content": first_prompt}]
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    prompt_tokens = max(1, math.ceil(chars * TOKENS_PER_CHAR))
    max_completion = getattr(cfg, "max_tokens", None)
    completion = min(TYPICAL_COMPLETION_TOKENS, max_completion) if max_completion else TYPICAL_COMPLETION_TOKENS
    price_in = getattr(cfg, "price_input_cache_miss", None)
    if price_in is None:
        price_in = getattr(cfg, "price_input", None)
    price_out = getattr(cfg, "price_output", None)
    estimate = LlmEstimate(
        synthesizer=synthesizer.name, calls=calls, prompt_tokens_per_call=prompt_tokens, completion_tokens_per_call=completion,
        max_completion_tokens=max_completion, price_input_per_million=price_in, price_output_per_million=price_out, cap=cap,
    )
    if price_in is not None and price_out is not None:
        estimate.estimated_cost = round(calls * (prompt_tokens * price_in + completion * price_out) / 1e6, 6)
        estimate.max_cost = round(calls * (prompt_tokens * price_in + (max_completion or completion) * price_out) / 1e6, 6)
    return estimate


def llm_usage(signals: Iterable[BarSignal], llm_name: str) -> LlmUsage:
    usage = LlmUsage()
    for s in signals:
        usage.requests += s.attempts if s.synthesizer == llm_name or s.fallback_reason else 0
        if s.synthesizer == llm_name and s.attempts == 0:
            usage.cached_answers += 1
        if s.fallback_reason and s.synthesizer != llm_name:
            usage.fallbacks += 1
        if s.usage is not None:
            usage.prompt_tokens += s.usage.prompt_tokens
            usage.completion_tokens += s.usage.completion_tokens
            usage.cost = round(usage.cost + s.usage.cost, 10)
    return usage


# -- running --------------------------------------------------------------------------------------

# What forked workers inherit: set by the parent right before the pool starts.
_FORK_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    import signal

    from .engine import Pipeline, limit_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it cancels the pool
    limit_threads(1)
    state = _FORK_STATE
    kinds = ("theory", "formatter", "synthesizer") if state["synthesize"] else ("theory",)
    state["pipeline"] = Pipeline.build(state["config"], state["registry"], kinds=kinds)


def _worker_chunk(symbol: str, indices: list[int]) -> list[Any]:
    state = _FORK_STATE
    history = state["histories"][symbol]
    if state["synthesize"]:
        return signals_for(state["pipeline"], history, indices, state["lookback"])
    return theory_results_for(state["pipeline"], history, indices, state["lookback"])


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def chunked(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def compute_signals(
    pipeline: "Pipeline",
    histories: dict[str, CandleSeries],
    plan: dict[str, list[int]],
    workers: int,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[dict[str, list[BarSignal]], int]:
    """Signals at every planned bar of every symbol, and the worker processes used (1 = this process).

    Theories run in `workers` forked processes when > 1 (and there are enough bars to share).

    With an LLM synthesizer only the theories run in the workers: prompts and LLM calls stay in
    this process, in bar order, so the response cache, usage and fallbacks behave as in `v7 run`.
    """
    import multiprocessing

    from .engine import limit_threads

    lookback = pipeline.config.engine.lookback
    total = sum(len(v) for v in plan.values())
    llm = is_llm(pipeline.synthesizer) or is_llm(pipeline.fallback)
    out: dict[str, list[BarSignal]] = {symbol: [] for symbol in plan}
    if workers <= 1 or total < 4 * workers or "fork" not in multiprocessing.get_all_start_methods():
        limit_threads(1)  # one BLAS thread per process: measured 2x less CPU per bar than two spinning threads
        for symbol, indices in plan.items():
            for chunk in chunked(indices, 25):
                out[symbol].extend(signals_for(pipeline, histories[symbol], chunk, lookback))
                if progress:
                    progress(symbol, len(chunk))
        return out, 1

    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    size = max(5, min(200, total // (workers * 10) or 5))
    tasks = [(symbol, chunk) for symbol, indices in plan.items() for chunk in chunked(indices, size)]
    _FORK_STATE.clear()
    _FORK_STATE.update(config=pipeline.config, registry=pipeline.registry, histories=histories, lookback=lookback, synthesize=not llm)
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
            futures = [(symbol, chunk, pool.submit(_worker_chunk, symbol, chunk)) for symbol, chunk in tasks]
            try:
                for symbol, chunk, future in futures:
                    done = future.result()
                    if llm:
                        history = histories[symbol]
                        done = [synthesize_bar(pipeline, window_at(history, t, lookback), results, t) for t, results in zip(chunk, done)]
                    out[symbol].extend(done)
                    if progress:
                        progress(symbol, len(chunk))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    except BrokenProcessPool as exc:
        raise BacktestError(f"a worker process died (out of memory, or killed): {exc}; try fewer --workers") from exc
    finally:
        _FORK_STATE.clear()
    return out, workers


@dataclass
class BacktestRun:
    """A finished backtest: the stored result plus what charts and checks need."""

    result: BacktestResult
    histories: dict[str, CandleSeries]
    signals: dict[str, list[BarSignal]]
    lasts: dict[str, int]
    settings: BacktestConfig
    config: V7Config = field(repr=False)


def resolve_settings(config: V7Config, **overrides: Any) -> BacktestConfig:
    """[backtest] with command-line overrides (None = not given), validated again."""
    data = config.backtest.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return BacktestConfig.model_validate(data)


def run_backtest(
    config: V7Config,
    registry: "Registry",
    *,
    settings: BacktestConfig | None = None,
    symbols: list[str] | None = None,
    bars: int | None = None,
    histories: dict[str, CandleSeries] | None = None,
    confirm_llm: bool = False,
    on_estimate: Callable[[LlmEstimate], None] | None = None,
    progress: Callable[[str, int], None] | None = None,
    on_plan: Callable[[dict[str, int]], None] | None = None,
) -> BacktestRun:
    """Replay each symbol's history through the configured pipeline and score the signals.

    `histories` (oldest-first candles per symbol) replaces the candle feed, for tests and embedding.
    Raises `LlmCapExceeded` before any LLM call when the estimate is above the cap and not confirmed.
    """
    from . import __version__
    from .engine import Pipeline

    settings = settings or config.backtest
    symbols = symbols or config.engine.symbols
    lookback = config.engine.lookback
    start = settings.start or default_start(config)
    started = time.perf_counter()
    try:
        pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter", "synthesizer"))
    except StartupError as exc:
        raise BacktestError(str(exc)) from exc
    try:
        if histories is None:
            histories = {s: load_history(config, registry, s, start, settings.end) for s in symbols}
        else:
            histories = {s: own_copy(histories[s]) for s in symbols}
        plan: dict[str, list[int]] = {}
        lasts: dict[str, int] = {}
        for symbol in symbols:
            plan[symbol], lasts[symbol] = signal_range(histories[symbol], lookback, start, settings.end, settings.step, bars)
        if on_plan:
            on_plan({s: len(v) for s, v in plan.items()})

        estimate = None
        llm_name = next((s.name for s in (pipeline.synthesizer, pipeline.fallback) if s is not None and is_llm(s)), None)
        if llm_name is not None:
            llm = pipeline.synthesizer if is_llm(pipeline.synthesizer) else pipeline.fallback
            symbol = symbols[0]
            window = window_at(histories[symbol], plan[symbol][0], lookback)
            request = PromptRequest(
                symbol=symbol, granularity=window.granularity, bar_time=window.last_time, price=window.last_price,
                results=pipeline.analyze(window), context=None,
            )
            first_prompt = pipeline.build_prompt(request) if pipeline.formatters else ""
            calls = sum(len(v) for v in plan.values())
            estimate = estimate_llm(llm, first_prompt, calls, settings.llm_call_cap)
            if on_estimate:
                on_estimate(estimate)
            if calls > settings.llm_call_cap and not confirm_llm:
                raise LlmCapExceeded(estimate)

        workers = settings.workers or available_cores()
        computing = time.perf_counter()
        signals, workers = compute_signals(pipeline, histories, plan, workers, progress)
        elapsed = time.perf_counter() - computing
    finally:
        pipeline.close()

    theories = [t.name for t in pipeline.theories]
    results = [symbol_result(histories[s], signals[s], lasts[s], settings, theories) for s in symbols]
    total = sum(len(v) for v in signals.values())
    theory_ms: dict[str, float] = {}
    for position, name in enumerate(theories):
        times = [s.theories[position].elapsed_ms for v in signals.values() for s in v if position < len(s.theories)]
        theory_ms[name] = round(sum(times) / len(times), 3) if times else 0.0
    result = BacktestResult(
        created_at=datetime.now(timezone.utc),
        v7_version=__version__,
        config_hash=config.config_hash(),
        config_path=str(config.path) if config.path else None,
        granularity=config.engine.granularity,
        lookback=lookback,
        synthesizer=config.synthesizer,
        theories=theories,
        settings=settings.model_dump(mode="json"),
        symbols=results,
        bars=total,
        elapsed_seconds=round(time.perf_counter() - started, 3),
        bars_per_second=round(total / elapsed, 2) if elapsed > 0 else 0.0,
        workers=workers,
        theory_ms=theory_ms,
        llm_estimate=estimate,
        llm_usage=llm_usage((s for v in signals.values() for s in v), llm_name) if llm_name else None,
    )
    return BacktestRun(result, histories, signals, lasts, settings, config)


# -- the lookahead check --------------------------------------------------------------------------


def default_registry() -> "Registry":
    from .registry import load_registry

    return load_registry()


def _recompute_fresh(raw_config: dict[str, Any], expected_hash: str, registry_factory: Callable[[], "Registry"], samples: list[tuple[str, int, dict[str, Any]]]) -> list[BarSignal] | str:
    """In a fresh process: a fresh pipeline per sample, given copies of the candles up to the sample's bar only."""
    from .config import ConfigError, validate_config
    from .engine import Pipeline, limit_threads

    limit_threads(1)
    registry = registry_factory()
    try:
        config = validate_config(raw_config, registry, where="<backtest config>")
    except ConfigError as exc:
        return f"the config could not be rebuilt in a fresh process: {exc}"
    if config.config_hash() != expected_hash:
        return f"the config rebuilt in a fresh process has hash {config.config_hash()}, not {expected_hash}"
    out = []
    for symbol, index, arrays in samples:
        copied = CandleSeries(symbol=symbol, granularity=config.engine.granularity, **arrays)
        window = window_at(copied, len(copied) - 1, config.engine.lookback)
        pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter", "synthesizer"))
        try:
            out.append(synthesize_bar(pipeline, window, pipeline.analyze(window), index))
        finally:
            pipeline.close()
    return out


def lookahead_sample(signals: dict[str, list[BarSignal]], size: int) -> list[tuple[str, BarSignal]]:
    """An evenly spread, deterministic sample over every symbol's signals, latest bars first."""
    chosen: list[tuple[str, BarSignal]] = []
    per_symbol = max(1, math.ceil(size / max(1, len(signals))))
    for symbol, items in signals.items():
        if not items:
            continue
        k = min(per_symbol, len(items))
        picks = sorted({round(i * (len(items) - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [len(items) - 1]
        chosen.extend((symbol, items[p]) for p in picks)
    chosen.sort(key=lambda item: -item[1].timestamp)
    return chosen[:max(size, len(signals))]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def compare_signals(symbol: str, original: BarSignal, again: BarSignal) -> list[LookaheadDifference]:
    """Every field in which two signals for the same bar differ (floats to 1e-9, metrics to 10 digits)."""
    diffs = []

    def add(name: str, a: Any, b: Any) -> None:
        diffs.append(LookaheadDifference(symbol=symbol, bar_time=original.bar_time, field=name, backtest=str(a), recomputed=str(b)))

    if original.direction != again.direction:
        add("direction", original.direction, again.direction)
    if not _close(original.confidence, again.confidence):
        add("confidence", original.confidence, again.confidence)
    if original.synthesizer != again.synthesizer:
        add("synthesizer", original.synthesizer, again.synthesizer)
    for a, b in zip(original.theories, again.theories):
        for name in ("status", "label", "metrics_digest"):
            if getattr(a, name) != getattr(b, name):
                add(f"{a.theory}.{name.replace('_digest', '')}", getattr(a, name), getattr(b, name))
        for name in ("bias", "confidence"):
            if not _close(getattr(a, name), getattr(b, name)):
                add(f"{a.theory}.{name}", getattr(a, name), getattr(b, name))
    if len(original.theories) != len(again.theories):
        add("theories", len(original.theories), len(again.theories))
    return diffs


def check_lookahead(run: BacktestRun, sample: int | None = None, registry_factory: Callable[[], "Registry"] = default_registry) -> LookaheadReport:
    """Recompute a sample of the run's signals where the future cannot exist, and list every difference.

    Each sampled bar t is recomputed in a freshly spawned process (no memory shared with this one:
    no module globals, caches or arrays filled during the backtest) by a fresh pipeline given
    contiguous copies of the `lookback` candles up to t and nothing else. Any difference is either
    lookahead (something in the backtest saw bars after t) or a plugin whose output is not a pure
    function of its candles (hidden state, unseeded randomness). Not caught: a plugin that re-reads
    the data source itself (a file or a network API) behind the engine's back.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    config = run.config
    lookback = config.engine.lookback
    picks = lookahead_sample(run.signals, sample or run.settings.lookahead_sample)
    payload = []
    for symbol, signal in picks:
        window = window_at(run.histories[symbol], signal.index, lookback)
        arrays = {name: np.array(getattr(window, name), copy=True) for name in ("timestamp", "open", "high", "low", "close", "volume")}
        payload.append((symbol, signal.index, arrays))
    raw = config.effective()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            recomputed = pool.submit(_recompute_fresh, raw, config.config_hash(), registry_factory, payload).result()
    except Exception as exc:
        return LookaheadReport(checked=0, error=f"the fresh process failed: {type(exc).__name__}: {exc}")
    if isinstance(recomputed, str):
        return LookaheadReport(checked=0, error=recomputed)
    differences = []
    for (symbol, original), again in zip(picks, recomputed):
        differences.extend(compare_signals(symbol, original, again))
    return LookaheadReport(checked=len(picks), differences=differences)


# -- storage --------------------------------------------------------------------------------------

BACKTESTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS backtests (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config_path TEXT,
    v7_version TEXT NOT NULL,
    granularity TEXT NOT NULL,
    symbols TEXT NOT NULL,
    range_start TEXT NOT NULL,
    range_end TEXT NOT NULL,
    bars INTEGER NOT NULL,
    settings TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backtests_config_hash ON backtests (config_hash, created_at);
"""


def database_path(config: V7Config, registry: "Registry | None" = None) -> Path:
    """The SQLite file of `[sinks.sqlite] path` (its default when the table is absent)."""
    configured = config.plugin_config("sink", "sqlite")
    if configured is None and registry is not None and registry.get("sink", "sqlite") is not None:
        configured = registry.get("sink", "sqlite").cls.Config()
    path = getattr(configured, "path", None)
    return Path(path) if path else Path("v7.db")


def _connect(path: Path, write: bool) -> sqlite3.Connection:
    """A connection to the signal database; for writing, the sqlite sink's schema is created or
    upgraded first, so a database a backtest created is one `v7 run` and `v7 stats` accept."""
    from . import __version__

    if write and path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        if write:
            connection.execute("PRAGMA journal_mode=WAL")
            try:
                from v7.plugins.sinks.sqlite import ensure_schema
            except ImportError:  # pragma: no cover - the built-in sink is part of the distribution
                ensure_schema = None
            if ensure_schema is not None:
                ensure_schema(connection, __version__)
            connection.executescript(BACKTESTS_SCHEMA)
    except BaseException:
        connection.close()
        raise
    return connection


def store_result(path: Path, result: BacktestResult) -> int:
    """Insert one backtest; returns its id (also set on `result`)."""
    starts = [s.scores.start for s in result.symbols]
    ends = [s.scores.end for s in result.symbols]
    connection = _connect(path, write=True)
    try:
        cursor = connection.execute(
            """INSERT INTO backtests (created_at, config_hash, config_path, v7_version, granularity, symbols, range_start,
               range_end, bars, settings, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                iso(result.created_at), result.config_hash, result.config_path, result.v7_version, result.granularity,
                json.dumps([s.symbol for s in result.symbols]), iso(min(starts)), iso(max(ends)), result.bars,
                json.dumps(result.settings, sort_keys=True), "{}",
            ),
        )
        result.id = int(cursor.lastrowid)
        connection.execute("UPDATE backtests SET summary = ? WHERE id = ?", (result.model_dump_json(), result.id))
    finally:
        connection.close()
    return result.id


def load_result(path: Path, key: str) -> BacktestResult:
    """A stored backtest by id, or the latest one whose config hash is `key` (a unique prefix will do)."""
    if not path.exists():
        raise BacktestError(f"{path}: no such database; run a backtest first")
    connection = _connect(path, write=False)
    try:
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'backtests'").fetchone() is None:
            raise BacktestError(f"{path}: no backtests stored yet")
        if key.isdigit():
            row = connection.execute("SELECT summary FROM backtests WHERE id = ?", (int(key),)).fetchone()
        else:
            row = connection.execute(
                "SELECT summary FROM backtests WHERE config_hash LIKE ? ORDER BY created_at DESC, id DESC LIMIT 1", (f"{key}%",)
            ).fetchone()
    finally:
        connection.close()
    if row is None:
        raise BacktestError(f"{path}: no backtest with id or config hash {key!r}")
    return BacktestResult.model_validate_json(row[0])


def comparison_rows(a: BacktestResult, b: BacktestResult) -> list[tuple[str, str, str]]:
    """(metric, A, B) rows for `v7 backtest --compare`, per symbol the two share (or each has)."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:+.2%}"

    def num(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [
        ("backtest id", str(a.id), str(b.id)),
        ("config hash", a.config_hash, b.config_hash),
        ("created", iso(a.created_at), iso(b.created_at)),
        ("synthesizer", a.synthesizer, b.synthesizer),
        ("theories", ", ".join(a.theories), ", ".join(b.theories)),
        ("horizon / step", f"{a.settings.get('horizon')} / {a.settings.get('step')}", f"{b.settings.get('horizon')} / {b.settings.get('step')}"),
        ("fees + slippage (bps)", f"{a.settings.get('fees_bps')} + {a.settings.get('slippage_bps')}", f"{b.settings.get('fees_bps')} + {b.settings.get('slippage_bps')}"),
    ]
    by_a = {s.symbol: s for s in a.symbols}
    by_b = {s.symbol: s for s in b.symbols}
    for symbol in list(dict.fromkeys([*by_a, *by_b])):
        sa, sb = by_a.get(symbol), by_b.get(symbol)

        def both(getter: Callable[[SymbolResult], str]) -> tuple[str, str]:
            return (getter(sa) if sa else "-", getter(sb) if sb else "-")

        def hit(direction: str) -> Callable[[SymbolResult], str]:
            def get(s: SymbolResult) -> str:
                d = s.scores.directions[direction]
                return "-" if d.hit_rate is None else f"{d.hit_rate:.1%} [{d.ci_low:.1%}, {d.ci_high:.1%}] n={d.scored}"
            return get

        rows += [
            (f"{symbol} range", *both(lambda s: f"{iso(s.scores.start)} → {iso(s.scores.end)}")),
            (f"{symbol} signals", *both(lambda s: str(s.scores.signals))),
            (f"{symbol} BUY hit rate", *both(hit("BUY"))),
            (f"{symbol} SELL hit rate", *both(hit("SELL"))),
            (f"{symbol} HOLD share", *both(lambda s: f"{s.scores.hold_share:.1%}")),
            (f"{symbol} strategy return", *both(lambda s: pct(s.scores.strategy.total_return))),
            (f"{symbol} buy-and-hold return", *both(lambda s: pct(s.scores.buy_and_hold.total_return))),
            (f"{symbol} strategy Sharpe", *both(lambda s: num(s.scores.strategy.sharpe))),
            (f"{symbol} max drawdown", *both(lambda s: f"{s.scores.strategy.max_drawdown:.2%}")),
            (f"{symbol} trades", *both(lambda s: str(s.scores.strategy.trades))),
        ]
    return rows


# -- report ---------------------------------------------------------------------------------------


def write_report(directory: Path, run: BacktestRun) -> list[Path]:
    """summary.json, signals-<SYMBOL>.csv and chart-<SYMBOL>.png (price with signals, equity curves)."""
    import csv

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    summary = directory / "summary.json"
    summary.write_text(run.result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    written.append(summary)
    for symbol, signals in run.signals.items():
        if not signals:
            continue
        path = directory / f"signals-{symbol}.csv"
        theories = run.result.theories
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["bar_time", "price", "direction", "confidence", "synthesizer", "fallback_reason", *(f"{t}_bias" for t in theories)])
            for s in signals:
                biases = [("" if o.bias is None else f"{o.bias:.6g}") for o in s.theories]
                writer.writerow([iso(s.timestamp), f"{s.price:.10g}", s.direction or "", f"{s.confidence:.6g}", s.synthesizer, s.fallback_reason or "", *biases])
        written.append(path)
        written.append(_chart(directory / f"chart-{symbol}.png", run, symbol))
    return written


def _chart(path: Path, run: BacktestRun, symbol: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    history, signals, last = run.histories[symbol], run.signals[symbol], run.lasts[symbol]
    stamps, strategy, hold = equity_curves(history, signals, last, run.settings)
    times = np.array(stamps, dtype="datetime64[s]")
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.plot(times, history.close[signals[0].index:last + 1], color="#444444", linewidth=0.8, label="close")
    for direction, marker, colour in (("BUY", "^", "#1a9850"), ("SELL", "v", "#d73027")):
        chosen = [s for s in signals if s.direction == direction]
        if chosen:
            top.scatter(
                np.array([s.timestamp for s in chosen], dtype="datetime64[s]"), [s.price for s in chosen],
                marker=marker, color=colour, s=14, label=f"{direction} ({len(chosen)})", zorder=3,
            )
    scores = next(s.scores for s in run.result.symbols if s.symbol == symbol)
    top.set_title(
        f"{symbol} {run.result.granularity}: {scores.signals} signals, horizon {run.settings.horizon} bars; "
        f"config {run.result.config_hash}"
    )
    top.set_ylabel("price")
    top.legend(loc="upper left")
    bottom.plot(times, strategy, color="#2166ac", label=f"follow the signal ({scores.strategy.total_return:+.1%})")
    bottom.plot(times, hold, color="#999999", label=f"buy and hold ({scores.buy_and_hold.total_return:+.1%})")
    bottom.set_ylabel("equity (start = 1)")
    bottom.legend(loc="upper left")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
