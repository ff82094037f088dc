"""The execution model: when a decision becomes a position, and what each change of position costs.

A signal is decided on its closed bar t. With `execution = "next_open"` (the default, freqtrade's
convention) the position changes at the open of bar t + 1 + `delay_bars`; with `"close"` at the
close of bar t + `delay_bars`. Every change of position pays `(fees_bps + slippage_bps) / 10⁴` per
unit traded, buy-and-hold's entry included. A short is rebalanced every bar.

Time runs over intervals: interval i goes from the close of bar first + i to the close of bar
first + i + 1, so it holds the open of bar first + i + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..config import BacktestConfig
from ..models import CandleSeries
from .models import BarSignal

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


@dataclass(frozen=True)
class Execution:
    """How decisions are filled: at the next open or at the close, `delay` bars later, at `cost_rate` per unit."""

    next_open: bool
    delay: int
    cost_rate: float

    @classmethod
    def of(cls, settings: BacktestConfig) -> "Execution":
        return cls(settings.execution == "next_open", settings.delay_bars, (settings.fees_bps + settings.slippage_bps) / 10_000)

    @property
    def lag(self) -> int:
        """Bars from the decision to the bar whose open (or close) fills it."""
        return self.delay + (1 if self.next_open else 0)


def decisions(signals: Sequence[BarSignal], first: int, last: int, short_on_sell: bool, hold_keeps_position: bool) -> "np.ndarray":
    """The position each signal asks for, at its bar (first..last, NaN = no new decision: keep)."""
    import numpy as np

    decided = np.full(max(last - first + 1, 0), np.nan)
    for s in signals:
        if not first <= s.index <= last or s.direction is None:
            continue
        if s.direction == "BUY":
            decided[s.index - first] = 1.0
        elif s.direction == "SELL":
            decided[s.index - first] = -1.0 if short_on_sell else 0.0
        elif not hold_keeps_position:
            decided[s.index - first] = 0.0
    return decided


def in_force(decided: "np.ndarray", lag: int) -> "np.ndarray":
    """Position in force after each bar's fill (bars first..last), from decisions `lag` bars earlier; flat before the first."""
    import numpy as np

    n = decided.shape[0]
    effective = np.full(n, np.nan)
    if lag < n:
        effective[lag:] = decided[:n - lag]
    # Carry the last decision forward: each bar takes the value of the latest decided bar up to it.
    latest = np.where(np.isnan(effective), -1, np.arange(n))
    np.maximum.accumulate(latest, out=latest)
    return np.where(latest >= 0, effective[np.maximum(latest, 0)], 0.0)


@dataclass
class Filled:
    """Per-interval net returns, the position held over most of each interval, and the units traded in it."""

    returns: "np.ndarray"
    held: "np.ndarray"
    traded: "np.ndarray"


def fill(history: CandleSeries, first: int, held: "np.ndarray", execution: Execution) -> Filled:
    """Net returns of holding `held` (positions after each bar's fill, bars first..last) under `execution`.

    `held` may be a matrix, one position sequence per row (the circular-shift null fills them all at once)."""
    import numpy as np

    n = held.shape[-1] - 1  # intervals
    if not execution.next_open:
        # The fill is at the close that starts the interval: the interval earns with the new position.
        previous = np.concatenate([np.zeros(held.shape[:-1] + (1,)), held[..., :-1]], axis=-1)[..., :n]
        position = held[..., :n]
        returns, traded = interval_returns(history, first, previous, position, execution)
        return Filled(returns, position, traded)
    before, after = held[..., :-1], held[..., 1:]
    returns, traded = interval_returns(history, first, before, after, execution)
    return Filled(returns, after, traded)


def interval_returns(history: CandleSeries, first: int, before: "np.ndarray", after: "np.ndarray", execution: Execution) -> tuple["np.ndarray", "np.ndarray"]:
    """Each interval's net return and units traded, from the position before its fill and the one after.

    A return depends on nothing else (and the interval's prices): the circular-shift null looks the
    shifted sequences' returns up in a table of these (`pair_returns`) instead of filling each one."""
    import numpy as np

    n = before.shape[-1]
    close = history.close[first:first + n + 1]
    traded = np.abs(after - before)
    if not execution.next_open:
        return (1.0 - execution.cost_rate * traded) * (1.0 + after * (close[1:] / close[:-1] - 1.0)) - 1.0, traded
    opens = history.open[first + 1:first + n + 1]
    returns = before * (close[1:] / close[:-1] - 1.0)  # no change: the whole interval with the same position
    changed = np.nonzero(traded)
    if changed[0].size:  # a fill: the old position until the open, the cost, the new one from the open to the close
        bar = changed[-1]
        gap = 1.0 + before[changed] * (opens[bar] / close[:-1][bar] - 1.0)
        rest = 1.0 + after[changed] * (close[1:][bar] / opens[bar] - 1.0)
        returns[changed] = gap * (1.0 - execution.cost_rate * traded[changed]) * rest - 1.0
    return returns, traded


def follow(history: CandleSeries, signals: Sequence[BarSignal], first: int, last: int, settings: BacktestConfig) -> Filled:
    """The follow-the-signal strategy from the first signal bar's close to bar `last`'s close."""
    execution = Execution.of(settings)
    decided = decisions(signals, first, last, settings.short_on_sell, settings.hold_keeps_position)
    return fill(history, first, in_force(decided, execution.lag), execution)


def buy_and_hold(history: CandleSeries, first: int, last: int, settings: BacktestConfig) -> Filled:
    """Bought when the first signal could have been filled, paying the same entry cost; held to `last`."""
    import numpy as np

    execution = Execution.of(settings)
    decided = np.full(max(last - first + 1, 0), np.nan)
    if decided.size:
        decided[0] = 1.0
    return fill(history, first, in_force(decided, execution.lag), execution)
