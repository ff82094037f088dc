"""The run-time portfolio step: an iteration's signals, sized per symbol, adjusted together before the sinks.

Called by the scheduler (core/scheduler.py) once every symbol of an iteration has its signal, or at
the iteration's deadline with the ones that have. The covariance comes from the closes the theories
saw (each symbol's fetched candles, never a later bar), aligned on the timestamps they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..logs import get_logger
from .allocate import aligned_returns, allocate
from .config import PortfolioConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..models import CandleSeries, Signal


def adjust(signals: Sequence["Signal"], candles: dict[str, "CandleSeries"], config: PortfolioConfig, run_id: str | None = None) -> list["Signal"]:
    """The signals, in the same order, each with its `position` replaced by its share of the book
    (and its `sizing` line saying so: the weight and the position before and after)."""
    if not signals:
        return []
    series = [candles[s.symbol] for s in signals]
    returns = aligned_returns([c.timestamp for c in series], [c.close for c in series], config.covariance_bars)
    allocation = allocate([s.position for s in signals], returns, config)
    get_logger(run_id=run_id).info(
        "portfolio step", method=config.method, symbols=[s.symbol for s in signals],
        proposed=[round(s.position, 6) for s in signals], positions=[round(float(q), 6) for q in allocation.positions],
        weights=[round(float(w), 6) for w in allocation.weights], bars=0 if returns is None else int(returns.shape[0]),
        equal_because=allocation.equal_because,
    )
    return [
        s.model_copy(update={"position": float(q), "sizing": f"{s.sizing or 'sized'}; portfolio {config.method}: weight {w:.2f} of {len(signals)}, {s.position:+.3f} → {q:+.3f}"})
        for s, q, w in zip(signals, allocation.positions, allocation.weights)
    ]
