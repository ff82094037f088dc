"""The per-signal position rule, in one place: `v7 run` and `v7 backtest` both size through `sizing_for`.

For a BUY (or, with shorting on, a SELL) from a synthesizer whose confidence is a calibrated probability p:

    b          = the synthesizer's own `payoff` (mean gain / mean loss of its past signals in this direction), or,
                 when it gives none, mean gain / mean loss of the window's forward returns over `horizon` bars
    f*         = p − (1 − p) / b                               (≤ 0: no edge, no position)
    kelly      = min(max_position, kelly_fraction × f*)
    vol scale  = min(max_volatility_scale, target_volatility / realised annual volatility)
    loss limit = loss_budget / CVaR                             (CVaR of the enabled risk theory)
    |position| = min(kelly × vol scale, loss limit, max_position), negative for a SELL

An uncalibrated synthesizer gets `uncalibrated_fraction` in place of `kelly`. Everything is computed
from the candles the theories saw (up to the signal's bar), never later ones. See docs/sizing.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..models import granularity_seconds

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..components import Theory
    from ..engine import Pipeline
    from ..models import CandleSeries, PromptRequest, Synthesis, TheoryResult
    from .config import SizingConfig

MIN_PAYOFF_RETURNS = 30  # forward returns needed before a payoff ratio means anything
MIN_VOLATILITY_RETURNS = 10  # one-bar returns needed for a realised volatility
SECONDS_PER_YEAR = 365 * 86400  # crypto trades every day of the year


class Sizing(BaseModel):
    """A signal's suggested position and how the rule got there (every factor, for the reader)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    position: float = Field(ge=-1.0, le=1.0, description="signed fraction of capital: > 0 long, < 0 short, 0 flat")
    kelly: float | None = Field(default=None, description="kelly_fraction × f*, capped at max_position (None: not a Kelly size)")
    probability: float | None = Field(default=None, description="the calibrated probability p the Kelly fraction used")
    payoff: float | None = Field(default=None, description="b = mean gain / mean loss of past forward returns")
    payoff_from: str | None = Field(
        default=None, description='"past signals": the synthesizer\'s own (`Synthesis.payoff`); "window": every forward return of the window',
    )
    volatility: float | None = Field(default=None, description="realised annual volatility of the recent window")
    volatility_scale: float | None = Field(default=None, description="min(max_volatility_scale, target / realised)")
    loss_limit: float | None = Field(default=None, description="loss_budget / CVaR (None: no risk theory enabled)")
    rule: str = Field(description="the rule applied, in a line")


def position_text(value: float) -> str:
    """A position as a signed % of capital (`+4.7%`, `-12.5%`), `0%` when flat: how `v7 signals` and the dashboard show it.
    A small one keeps two decimals (`+0.07%`), a tinier one shows as `+<0.01%`: a position is never shown as 0 unless flat."""
    if not value:
        return "0%"
    if abs(value) >= 0.0005:  # shows at least 0.1%
        return f"{value:+.1%}"
    if abs(value) >= 0.00005:
        return f"{value:+.2%}"
    return "+<0.01%" if value > 0 else "-<0.01%"


def kelly(p: float, b: float) -> float:
    """The Kelly fraction f* = p − (1 − p)/b of a bet won with probability p that pays b per unit lost."""
    return p - (1.0 - p) / b


def forward_returns(close: "np.ndarray", horizon: int) -> "np.ndarray":
    """close[s + horizon] / close[s] − 1 for every s whose end is inside `close` (nothing past its last bar)."""
    return close[horizon:] / close[:-horizon] - 1.0


def payoff_ratio(close: "np.ndarray", horizon: int, short: bool = False) -> float | None:
    """b = mean gain / mean loss of the forward returns (a short's gain is a fall); None when too few to tell."""
    import numpy as np

    if close.shape[0] <= horizon:
        return None
    returns = forward_returns(np.asarray(close, dtype=np.float64), horizon)
    if short:
        returns = -returns
    gains, losses = returns[returns > 0], returns[returns < 0]
    if returns.shape[0] < MIN_PAYOFF_RETURNS or gains.shape[0] == 0 or losses.shape[0] == 0:
        return None
    return float(gains.mean() / -losses.mean())


def annual_volatility(close: "np.ndarray", bars: int, granularity: str) -> float | None:
    """Standard deviation of the last `bars` one-bar log returns × sqrt(bars per year); None when too few."""
    import numpy as np

    recent = np.asarray(close[-(bars + 1):], dtype=np.float64)
    if recent.shape[0] - 1 < MIN_VOLATILITY_RETURNS:
        return None
    returns = np.diff(np.log(recent))
    return float(returns.std(ddof=1) * math.sqrt(SECONDS_PER_YEAR / granularity_seconds(granularity)))


def flat_rule(direction: str | None, settings: "SizingConfig") -> str | None:
    """Why this answer takes no position whatever the candles and the risk say; None when it may take one."""
    if not settings.enabled:
        return "sizing off ([sizing] enabled = false)"
    if direction not in ("BUY", "SELL"):
        return f"{direction or 'no signal'}: no position"
    if direction == "SELL" and not settings.short_enabled:
        return "SELL with short_enabled = false: flat"
    return None


def loss_limit(cvar: float | None, settings: "SizingConfig") -> float | None:
    """loss_budget / CVaR, the largest |position| the loss budget allows; None without a positive CVaR (no limit)."""
    return settings.loss_budget / cvar if cvar is not None and cvar > 0 else None


def position_for(
    direction: str | None, confidence: float, calibrated: bool, close: "np.ndarray | None", granularity: str,
    cvar: float | None, settings: "SizingConfig", risk_missing: str | None = None, payoff: float | None = None,
) -> Sizing:
    """The position for one signal. `cvar` = the risk theory's tail loss (None: no risk theory enabled);
    `risk_missing` = why a risk theory that is enabled gave none (then no position: the budget cannot be checked);
    `payoff` = b of the synthesizer's own past signals in this direction (`Synthesis.payoff`; None: the window's ratio)."""
    flat = flat_rule(direction, settings)
    if flat is not None:
        return Sizing(position=0.0, rule=flat)
    short = direction == "SELL"
    if risk_missing is not None:
        return Sizing(position=0.0, rule=f"no position: {risk_missing}, so the loss budget cannot be checked")
    if close is None:
        return Sizing(position=0.0, rule="no position: no candles to size from")
    volatility = annual_volatility(close, settings.volatility_bars, granularity)
    if volatility is None:
        return Sizing(position=0.0, rule=f"no position: fewer than {MIN_VOLATILITY_RETURNS} returns for the volatility")
    scale = settings.max_volatility_scale if volatility <= 0 else min(settings.max_volatility_scale, settings.target_volatility / volatility)
    base: dict[str, float | None] = {"volatility": volatility, "volatility_scale": scale}
    source: str | None = None
    if calibrated:
        source = "past signals" if payoff is not None else "window"
        b = payoff if payoff is not None else payoff_ratio(close, settings.horizon, short)
        if b is None:
            return Sizing(position=0.0, **base, rule=f"no position: too few {settings.horizon}-bar gains and losses for a payoff ratio")
        edge = kelly(confidence, b)
        base.update(probability=confidence, payoff=b)
        if edge <= 0:
            return Sizing(position=0.0, kelly=0.0, payoff_from=source, **base,
                          rule=f"no edge: f* = {confidence:.3f} − {1 - confidence:.3f}/{b:.2f} (b from {source}) = {edge:.3f} ≤ 0")
        fraction = min(settings.max_position, settings.kelly_fraction * edge)
        base["kelly"] = fraction
        text = f"{settings.kelly_fraction:g} Kelly (p {confidence:.3f}, b {b:.2f} from {source}, f* {edge:.3f}) = {fraction:.3f}"
    else:
        fraction = settings.uncalibrated_fraction
        text = f"uncalibrated confidence: fixed {fraction:g}"
    size = fraction * scale
    text += f" × vol scale {scale:.2f} (realised {volatility:.0%}/yr)"
    limit = loss_limit(cvar, settings)
    if limit is not None and limit < size:
        size = limit
        text += f", cut to loss budget {settings.loss_budget:g} / CVaR {cvar:.2%}"
    if size > settings.max_position:
        size = settings.max_position
        text += f", capped at {settings.max_position:g}"
    position = -size if short else size
    return Sizing(position=position, loss_limit=limit, payoff_from=source, **base, rule=f"{text} → {position:+.3f}")


def loss_theories(theories: "Sequence[Theory]") -> dict[str, dict[str, str]]:
    """The enabled theories declaring `loss_metrics`, by name, with what they declare: the only results `tail_loss` reads."""
    return {t.name: type(t).loss_metrics for t in theories if type(t).loss_metrics}


def tail_loss(results: "Sequence[TheoryResult]", theories: "Sequence[Theory]") -> tuple[float | None, str | None]:
    """(CVaR, None) from the first enabled theory declaring `loss_metrics` (its VaR if it declares no CVaR);
    (None, None) when none declares them; (None, why) when those that do gave no number."""
    declared = loss_theories(theories)
    if not declared:
        return None, None
    for result in results:
        names = declared.get(result.theory)
        if names is None or not result.ok:
            continue
        for key in ("cvar", "var"):
            value = result.metrics.get(names.get(key, ""))
            if value is not None:
                return max(0.0, float(value)), None
    return None, f"the risk theory ({', '.join(declared)}) gave no VaR/CVaR"


def sizing_for(pipeline: "Pipeline", request: "PromptRequest", synthesis: "Synthesis", answered_by: str) -> Sizing:
    """The sizing of the synthesizer's answer on `request` (the candles the theories saw); never raises."""
    candles: "CandleSeries | None" = request.candles
    return size_answer(
        pipeline, request.symbol, synthesis.direction, synthesis.confidence, answered_by, request.results,
        candles.close if candles is not None else None, request.granularity, synthesis.payoff,
    )


def size_answer(
    pipeline: "Pipeline", symbol: str, direction: str | None, confidence: float, answered_by: str,
    results: "Sequence[TheoryResult]", close: "np.ndarray | None", granularity: str, payoff: float | None = None,
) -> Sizing:
    """The sizing of one answer (`close` = the closes the theories saw, up to the bar; `payoff` = the answer's
    `Synthesis.payoff`); never raises: a failure is logged and sizes nothing, so a signal is never lost to its sizing."""
    try:
        flat = flat_rule(direction, pipeline.config.sizing)
        if flat is not None:  # most answers: no need for the risk theory's tail or the candles
            return Sizing(position=0.0, rule=flat)
        synthesizer = next((s for s in (pipeline.synthesizer, pipeline.fallback) if s is not None and s.name == answered_by), None)
        calibrated = synthesizer is not None and type(synthesizer).calibrated
        cvar, missing = tail_loss(results, pipeline.theories)
        return position_for(direction, confidence, calibrated, close, granularity, cvar, pipeline.config.sizing, missing, payoff)
    except Exception as exc:
        from ..logs import get_logger

        get_logger(symbol=symbol).error("sizing failed; position 0", error=f"{type(exc).__name__}: {exc}")
        return Sizing(position=0.0, rule=f"sizing failed: {type(exc).__name__}: {exc}")
