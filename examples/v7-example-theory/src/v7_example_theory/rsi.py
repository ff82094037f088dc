"""Wilder's Relative Strength Index (RSI) as a V7 theory, read as a mean-reversion signal.

RSI = 100 · avg_gain / (avg_gain + avg_loss), where the averages of the close-to-close gains
and losses start as simple means over the first `period` moves and are then smoothed with
Wilder's rule `avg = (avg · (period − 1) + move) / period` over every later move in the window.

Bias convention (V7: −1 bearish … +1 bullish): an *oversold* market (low RSI) is expected to
bounce, so it reads bullish; an *overbought* one (high RSI) reads bearish:
`bias = (50 − RSI) / 50` (RSI 0 → +1, RSI 50 → 0, RSI 100 → −1), and
`confidence = |RSI − 50| / 50`, the distance from a balanced market. Being contrarian already,
this bias must not be faded again by a regime rule: consensus re-reads only `momentum_theories`.

Only `v7` and pydantic are imported here: V7 imports every installed plugin module for
`v7 plugins` and `v7 --help`, so numpy waits until `analyze` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from v7 import CandleSeries, InsufficientData, SeriesConfig, Theory, TheoryFinding, TheoryResult, hookimpl, window_closes

from . import __version__

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence


class RsiConfig(SeriesConfig):
    """The `[theories.rsi]` table; unknown keys are rejected at startup (inherited `extra="forbid"`).

    `SeriesConfig` brings the abstention settings every built-in theory shares (`stale_bars`,
    `max_unchanged_fraction`), so RSI abstains on the same bad data as they do.
    """

    period: int = Field(default=14, ge=2, le=1000, description="Moves averaged by Wilder's smoothing")
    overbought: float = Field(default=70.0, gt=50, le=100, description="RSI at or above this is overbought (bearish)")
    oversold: float = Field(default=30.0, ge=0, lt=50, description="RSI at or below this is oversold (bullish)")


def wilder_rsi(closes: "Sequence[float]", period: int = 14) -> tuple[float, float, float]:
    """RSI of the last close (0 … 100) with the Wilder-smoothed average gain and average loss.

    Raises `InsufficientData` when RSI is undefined: fewer than `period + 1` closes, or no moves.
    """
    import numpy as np

    if len(closes) < period + 1:
        raise InsufficientData(f"RSI({period}) needs {period + 1} closes, got {len(closes)}")
    moves = np.diff(np.asarray(closes, dtype=np.float64))
    gains = np.where(moves > 0, moves, 0.0)
    losses = np.where(moves < 0, -moves, 0.0)
    avg_gain = float(gains[:period].mean())
    avg_loss = float(losses[:period].mean())
    # A plain loop: each average depends on the previous one, and 1,000 floats take well under a millisecond.
    for gain, loss in zip(gains[period:].tolist(), losses[period:].tolist()):
        avg_gain += (gain - avg_gain) / period
        avg_loss += (loss - avg_loss) / period
    if avg_gain + avg_loss <= 0.0:
        raise InsufficientData(f"flat series: no price moves in {len(closes)} closes, RSI is undefined")
    return 100.0 * avg_gain / (avg_gain + avg_loss), avg_gain, avg_loss


class RelativeStrengthIndex(Theory):
    """Wilder's RSI on the closes: oversold reads bullish, overbought bearish (mean reversion)."""

    name = "rsi"
    version = __version__
    Config = RsiConfig

    @property
    def min_candles(self) -> int:
        # The engine answers `insufficient_data` itself below this, without calling `analyze`.
        return self.config.min_candles or self.config.period + 1

    def analyze(self, candles: CandleSeries) -> TheoryFinding:
        cfg: RsiConfig = self.config
        # V7's shared abstention checks: too few, non-finite, non-positive, flat, stale or illiquid closes.
        closes = window_closes(candles, len(candles), cfg.period + 1, cfg)
        rsi, avg_gain, avg_loss = wilder_rsi(closes, cfg.period)

        if rsi >= cfg.overbought:
            label = "overbought"
            reading = f"at or above {cfg.overbought:g}: overbought, which as mean reversion leans bearish"
        elif rsi <= cfg.oversold:
            label = "oversold"
            reading = f"at or below {cfg.oversold:g}: oversold, which as mean reversion leans bullish"
        else:
            label = "neutral"
            reading = f"between {cfg.oversold:g} and {cfg.overbought:g}: neutral, no stretched move to fade"
        bias = max(-1.0, min(1.0, (50.0 - rsi) / 50.0))
        confidence = min(1.0, abs(rsi - 50.0) / 50.0)
        return TheoryFinding(
            bias=bias,
            confidence=confidence,
            label=label,
            interpretation=f"RSI({cfg.period}) is {rsi:.1f}, {reading} (bias {bias:+.2f}).",
            metrics={"rsi": rsi, "avg_gain": avg_gain, "avg_loss": avg_loss, "period": float(cfg.period)},
        )

    def prompt_section(self, result: TheoryResult) -> str | None:
        """This theory's part of the LLM prompt: the value, the zones and how to read them."""
        if not result.ok or "rsi" not in result.metrics:
            return None  # the formatter's generic section explains failures
        cfg: RsiConfig = self.config
        return "\n".join(
            [
                f"### rsi (Wilder's RSI, period {cfg.period})",
                f"RSI: {result.metrics['rsi']:.1f} → {result.label} "
                f"(overbought ≥ {cfg.overbought:g}, oversold ≤ {cfg.oversold:g})",
                f"Mean-reversion reading: bias {result.bias:+.2f}, confidence {result.confidence:.2f}. "
                "RSI can stay overbought or oversold for long in a strong trend; weigh it against the regime.",
            ]
        )


@hookimpl
def register_theories(register):
    register(RelativeStrengthIndex)
