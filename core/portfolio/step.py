"""The run-time portfolio step: an iteration's signals, sized per symbol, adjusted together before the sinks.

Called by the scheduler (core/scheduler.py) once every symbol of an iteration has its signal, or at
the iteration's deadline with the ones that have. The covariance comes from the closes the theories
saw (each symbol's fetched candles, never a later bar), aligned on the timestamps they share.

A signal that cannot go through the step (its symbol finished after the iteration's book was
released, or the step itself failed) still gets the caps (`capped`): |position| ≤ max_symbol, and
with what the book already released, Σ|position| ≤ max_gross.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

from ..logs import get_logger
from .allocate import aligned_returns, allocate
from .config import PortfolioConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..components import Theory
    from ..models import CandleSeries, Signal
    from ..sizing.config import SizingConfig


@dataclasses.dataclass
class Released:
    """An iteration's book once handed to the sinks: the gross Σ|position| it holds so far, which a
    symbol late for it must fit beside."""

    gross: float = 0.0


def limit_of(loss_limit: float | None, sizing: "SizingConfig") -> float:
    """The largest |position| a signal's sizing allows: min(max_position, its loss limit loss_budget / CVaR)
    (`Sizing.loss_limit`; None, no risk theory: max_position). The portfolio step never goes past it."""
    return sizing.max_position if loss_limit is None else min(sizing.max_position, loss_limit)


def own_limit(signal: "Signal", theories: Sequence["Theory"], sizing: "SizingConfig") -> float:
    """`limit_of` a stored signal: the CVaR taken as its sizing took it (`tail_loss` over the signal's theory
    results; docs/sizing.md)."""
    from ..sizing.rule import loss_limit, tail_loss

    cvar, _ = tail_loss(signal.theory_results, theories)
    return limit_of(loss_limit(cvar, sizing), sizing)


def adjust(
    signals: Sequence["Signal"], candles: dict[str, "CandleSeries"], config: PortfolioConfig,
    limits: Sequence[float] | None = None, run_id: str | None = None,
) -> list["Signal"]:
    """The signals, in the same order, each with its `position` replaced by its share of the book
    (and its `sizing` line saying so: the weight and the position before and after). `limits` =
    each signal's own largest |position| (`own_limit`), which the step never goes past."""
    if not signals:
        return []
    series = [candles[s.symbol] for s in signals]
    returns = aligned_returns([c.timestamp for c in series], [c.close for c in series], config.covariance_bars)
    allocation = allocate([s.position for s in signals], returns, config, limits)
    get_logger(run_id=run_id).info(
        "portfolio step", method=config.method, symbols=[s.symbol for s in signals],
        proposed=[round(s.position, 6) for s in signals], positions=[round(float(q), 6) for q in allocation.positions],
        weights=[round(float(w), 6) for w in allocation.weights], bars=0 if returns is None else int(returns.shape[0]),
        limits=None if limits is None else [round(float(x), 6) for x in limits], equal_because=allocation.equal_because,
    )
    return [
        s.model_copy(update={"position": float(q), "sizing": f"{s.sizing or 'sized'}; portfolio {config.method}: weight {w:.2f} of {len(signals)}, {s.position:+.3f} → {q:+.3f}"})
        for s, q, w in zip(signals, allocation.positions, allocation.weights)
    ]


def capped(signals: Sequence["Signal"], config: PortfolioConfig, released: Released, why: str, run_id: str | None = None) -> list["Signal"]:
    """Signals that go out without the step, within the caps: |position| ≤ max_symbol each, then all of
    them scaled by one factor into the gross room the book leaves, max_gross − `released.gross`
    (which then counts them). Plain arithmetic, no covariance: the path for when something went wrong."""
    room = max(0.0, config.max_gross - released.gross)
    clipped = [max(-config.max_symbol, min(config.max_symbol, s.position)) for s in signals]
    gross = sum(abs(q) for q in clipped)
    scale = room / gross if gross > room else 1.0
    positions = [q * scale for q in clipped]
    released.gross += sum(abs(q) for q in positions)
    get_logger(run_id=run_id).warning(
        "portfolio caps only", reason=why, symbols=[s.symbol for s in signals], proposed=[round(s.position, 6) for s in signals],
        positions=[round(q, 6) for q in positions], gross_room=round(room, 6),
    )
    return [
        s.model_copy(update={"position": q, "sizing": (
            f"{s.sizing or 'sized'}; portfolio caps only ({why}): max {config.max_symbol:g} per symbol, "
            f"gross room {room:.3f} of {config.max_gross:g}, {s.position:+.3f} → {q:+.3f}"
        )})
        for s, q in zip(signals, positions)
    ]
