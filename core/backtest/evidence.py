"""Do a backtest's signals carry information? The honest scores, per symbol and pooled.

Each horizon is scored from the same signals: every direction against the base rate over the same
bars, the rank IC of direction × confidence and of each theory's bias, calibration of BUY/SELL
confidence, and a verdict in plain words driven by the IC's interval. Intervals come from a
moving-block bootstrap whose blocks span the overlap of the forward returns (`block_for`); pooled
scores resample calendar blocks shared by every symbol. The strategy's Sharpe is compared with
the same decisions circularly shifted, under the same execution model and costs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..config import BacktestConfig
from ..evaluation import (
    base_rate, block_length, calibration, circular_shift_pvalue, edge, hit_rate, mean_return, pooled_rank_ic, rank_ic,
    signed_score, verdict,
)
from ..evaluation.null import ShiftNull
from ..models import CandleSeries
from .execution import Execution, decisions, fill, in_force, interval_returns
from .models import BarSignal, DirectionEvidence, HorizonScores, PooledScores, TheoryEvidence, theory_biases

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def block_for(settings: BacktestConfig, horizon: int) -> int:
    """Signals per bootstrap block: `block_length`, or 4 × ceil(horizon / step).

    Forward returns overlap for horizon / step signals, and signals are themselves persistent; a
    block of exactly the overlap left 95% intervals covering ~89% of the time on random walks,
    four times that ~93–95% (tests/evaluation/test_known_answers.py)."""
    return settings.block_length or 4 * block_length(horizon, settings.step)


def all_horizons(settings: BacktestConfig) -> list[int]:
    """The headline horizon first, then the others of `horizons`, each once."""
    return list(dict.fromkeys([settings.horizon, *settings.horizons]))


class SignalArrays:
    """One symbol's signals as arrays, the failed bars (no synthesizer answered) left out."""

    def __init__(self, history: CandleSeries, signals: Sequence[BarSignal], theories: Sequence[str]) -> None:
        import numpy as np

        kept = [s for s in signals if s.direction is not None]
        self.index = np.asarray([s.index for s in kept], dtype=np.int64)
        self.timestamp = np.asarray([s.timestamp for s in kept], dtype=np.int64)
        self.direction = np.asarray([s.direction for s in kept], dtype=object)
        self.confidence = np.asarray([s.confidence for s in kept], dtype=np.float64)
        self.score = signed_score(self.direction, self.confidence)
        self.close = history.close
        self.bias: dict[str, np.ndarray] = theory_biases(kept, theories)

    def forward(self, horizon: int) -> "np.ndarray":
        from .scoring import forward_returns

        return forward_returns(self.close, self.index, horizon)


def horizon_scores(
    scope: str, arrays: SignalArrays, horizon: int, settings: BacktestConfig, directional: dict[str, bool],
) -> HorizonScores:
    import numpy as np

    forward = arrays.forward(horizon)
    known = np.isfinite(forward)
    block, resamples, seed = block_for(settings, horizon), settings.bootstrap_resamples, settings.seed
    direction, f = arrays.direction, forward
    directions = {}
    for which in ("BUY", "SELL", "HOLD"):
        chosen = direction == which
        item = DirectionEvidence(
            direction=which, scored=int(np.count_nonzero(chosen & known)),
            mean_confidence=float(arrays.confidence[chosen].mean()) if chosen.any() else None,
        )
        if known.any():
            item.mean_return = mean_return(direction, f, which, block, resamples, seed)
            if which != "HOLD":
                item.base_rate = base_rate(f[known], which)
                item.hit_rate = hit_rate(direction, f, which, block, resamples, seed)
                item.edge = edge(direction, f, which, block, resamples, seed)
        directions[which] = item
    ic = rank_ic(arrays.score, f, block, resamples, seed) if known.any() else None
    theories = []
    for name, bias in arrays.bias.items():
        spoke = float(np.count_nonzero(np.isfinite(bias)) / bias.shape[0]) if bias.shape[0] else 0.0
        row = TheoryEvidence(theory=name, directional=directional.get(name, True), spoke=spoke)
        if row.directional and spoke > 0 and known.any():
            row.ic = rank_ic(bias, f, block, resamples, seed)
        theories.append(row)
    return HorizonScores(
        horizon=horizon, block=block, scored=int(np.count_nonzero(known)),
        up_share=float(np.mean(f[known] > 0)) if known.any() else None,
        directions=directions, ic=ic, theories=theories,
        calibration=_calibration(direction, arrays.confidence, f),
        verdict=verdict(scope, ic),
    )


def _calibration(direction: "np.ndarray", confidence: "np.ndarray", forward: "np.ndarray"):
    """Hit rate by confidence bin over BUY and SELL signals, against each one's base rate."""
    import numpy as np

    known = np.isfinite(forward)
    trades = known & ((direction == "BUY") | (direction == "SELL"))
    if np.count_nonzero(trades) < 2:
        return None
    up, down = float(np.mean(forward[known] > 0)), float(np.mean(forward[known] < 0))
    buy = direction[trades] == "BUY"
    hit = np.where(buy, forward[trades] > 0, forward[trades] < 0).astype(np.float64)
    return calibration(confidence[trades], hit, np.where(buy, up, down))


def shift_null(history: CandleSeries, signals: Sequence[BarSignal], first: int, last: int, settings: BacktestConfig) -> ShiftNull | None:
    """The strategy's Sharpe against its own decisions circularly shifted, filled by the same execution model."""
    from .scoring import periods_per_year

    execution = Execution.of(settings)
    decided = decisions(signals, first, last, settings.short_on_sell, settings.hold_keeps_position)
    if decided.shape[0] < 3:
        return None
    held = in_force(decided, execution.lag)
    return circular_shift_pvalue(
        held, None, execution.cost_rate, periods_per_year(history.granularity), shifts=settings.bootstrap_resamples,
        seed=settings.seed, min_shift=block_for(settings, settings.horizon),
        returns_of=lambda positions: fill(history, first, positions, execution).returns,
        pair_returns=lambda before, after: interval_returns(history, first, before, after, execution)[0],
        pairing="lead" if execution.next_open else "from_flat",
    )


def pooled_scores(per_symbol: dict[str, SignalArrays], horizon: int, settings: BacktestConfig, directional: dict[str, bool]) -> PooledScores:
    """IC of the signal and of each directional theory over every symbol, resampling shared calendar blocks."""
    import numpy as np

    block, resamples, seed = block_for(settings, horizon), settings.bootstrap_resamples, settings.seed
    arrays = list(per_symbol.values())
    forward = np.concatenate([a.forward(horizon) for a in arrays]) if arrays else np.array([])
    calendar = np.concatenate([a.timestamp for a in arrays]) if arrays else np.array([], dtype=np.int64)
    score = np.concatenate([a.score for a in arrays]) if arrays else np.array([])
    ic = pooled_rank_ic(score, forward, calendar, block, resamples, seed) if np.isfinite(forward).any() else None
    theories = []
    names = arrays[0].bias.keys() if arrays else []
    for name in names:
        bias = np.concatenate([a.bias[name] for a in arrays])
        spoke = float(np.count_nonzero(np.isfinite(bias)) / bias.shape[0]) if bias.shape[0] else 0.0
        row = TheoryEvidence(theory=name, directional=directional.get(name, True), spoke=spoke)
        if row.directional and spoke > 0 and ic is not None:
            row.ic = pooled_rank_ic(bias, forward, calendar, block, resamples, seed)
        theories.append(row)
    return PooledScores(
        horizon=horizon, block=block, scored=int(np.count_nonzero(np.isfinite(forward))), ic=ic, theories=theories,
        verdict=verdict("pooled", ic),
    )


def pooled_for(
    histories: dict[str, CandleSeries], signals: dict[str, list[BarSignal]], symbols: Sequence[str], settings: BacktestConfig,
    theories: Sequence[str], directional: dict[str, bool],
) -> list[PooledScores]:
    """Pooled scores at every horizon, the headline first; [] for a single symbol (its own scores say it all)."""
    if len(symbols) < 2:
        return []
    arrays = {s: SignalArrays(histories[s], signals[s], theories) for s in symbols if signals.get(s)}
    return [pooled_scores(arrays, h, settings, directional) for h in all_horizons(settings)]
