"""The synthesizer's step of a backtest: the answers at a chunk's bars, as `v7 run` gets them.

Bar by bar, each bar goes through `Pipeline.decide` (formatters, synthesizer, fallback). A
synthesizer with a batch path (`Synthesizer.synthesize_batch`) answers a chunk's bars in one call
instead; when it raises or answers wrongly the chunk goes bar by bar, so a bug costs speed, never
signals. Market-context feeds are never consulted (today's market is lookahead for a past bar).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..models import CandleSeries, SynthesisRequest, TheoryResult
from ..synthesis_batch import SynthesisBatch, SynthesisColumns
from ..theory_columns import TheoryColumns, rows_of
from ..portfolio.step import limit_of
from ..sizing import size_answer, sizing_for
from ..sizing.rule import flat_rule, loss_theories
from .learning import baseline_answer
from .llm import is_llm
from .models import BarSignal, TheoryOutcome

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Pipeline


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


def synthesize_bar(
    pipeline: "Pipeline", window: CandleSeries, results: list[TheoryResult], index: int, outcomes: tuple[TheoryOutcome, ...] | None = None,
) -> BarSignal:
    """Formatters and synthesizer for one bar through `Pipeline.decide`, as `v7 run` does (no market context).

    `window` = the candles the theories saw (the request's `candles`); `outcomes` = the results as
    `TheoryOutcome`s, when already made."""
    from ..logs import get_logger

    # Already the synthesizer's request (empty prompt): `Pipeline.decide` hands it on as it is unless a formatter writes one.
    request = SynthesisRequest(
        symbol=window.symbol, granularity=window.granularity, bar_time=window.last_time,
        price=window.last_price, results=results, context=None, candles=window,
    )
    outcomes = outcomes if outcomes is not None else tuple(TheoryOutcome.of(r) for r in results)
    base = dict(index=index, timestamp=int(window.timestamp[-1]), price=window.last_price, theories=outcomes)
    try:
        _, synthesis, name, fallback_reason = pipeline.decide(request, keep_prompt=False)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        get_logger(symbol=window.symbol).warning("no synthesizer produced a signal; position kept", bar_time=window.last_time.isoformat(), error=reason)
        return BarSignal(**base, direction=None, confidence=0.0, synthesizer="", fallback_reason=reason, attempts=0)
    sizing = sizing_for(pipeline, request, synthesis, name)
    return BarSignal(
        **base, direction=synthesis.direction, confidence=synthesis.confidence, synthesizer=name,
        fallback_reason=fallback_reason, attempts=synthesis.attempts, usage=synthesis.usage, decided_by=synthesis.decided_by or "",
        baseline=baseline_answer(pipeline, request, synthesis, name), position=sizing.position,
        limit=limit_of(sizing.loss_limit, pipeline.config.sizing),
        learned_until=None if synthesis.learned_until is None else int(synthesis.learned_until.timestamp()),
    )


def synthesize_chunk(
    pipeline: "Pipeline", history: CandleSeries, indices: Sequence[int], lookback: int,
    columns: list[TheoryColumns], outcomes: list[tuple[TheoryOutcome, ...]],
) -> list[BarSignal]:
    """The signal at each bar of `indices` (ascending), from its theories' `columns` (config order):
    one batch call when the synthesizer has one, else bar by bar."""
    if batches(pipeline) and indices:
        done = batch_signals(pipeline, history, indices, lookback, columns, outcomes)
        if done is not None:
            return done
    # The synthesizer may read the window (`request.candles`) but never writes it: a view will do, no
    # copy, and its gaps from one cumulated count instead of a recount per bar.
    gaps = history.gap_counts()
    windows = (history.slice(lo, t + 1, int(gaps[t] - gaps[lo])) for lo, t in ((max(0, t + 1 - lookback), t) for t in indices))
    rows = rows_of(columns, len(indices))
    return [synthesize_bar(pipeline, w, r, t, o) for w, t, r, o in zip(windows, indices, rows, outcomes)]


def batches(pipeline: "Pipeline") -> bool:
    """True when the primary synthesizer answers chunks in one call: it has a batch path, needs no
    prompt and learns nothing from the order it is shown bars in."""
    synthesizer = pipeline.synthesizer
    if synthesizer is None or is_llm(synthesizer):
        return False
    kind = type(synthesizer)
    return kind.supports("synthesize_batch") and not kind.learns


def batch_signals(
    pipeline: "Pipeline", history: CandleSeries, indices: Sequence[int], lookback: int,
    columns: list[TheoryColumns], outcomes: list[tuple[TheoryOutcome, ...]],
) -> list[BarSignal] | None:
    """The chunk's signals from one `synthesize_batch` call; None (logged) when it raised or answered wrongly."""
    from ..logs import get_logger

    synthesizer = pipeline.synthesizer
    assert synthesizer is not None
    lo = max(0, indices[0] + 1 - lookback)
    part = history.slice(lo, indices[-1] + 1)  # views, up to the chunk's last bar: nothing later to read
    batch = SynthesisBatch(
        symbol=history.symbol, granularity=history.granularity, history=part, ends=[t - lo for t in indices],
        lookback=lookback, theories=columns, reasoning=False,
    )
    try:
        answer = synthesizer.synthesize_batch(batch)
        # Validated again as a new model: the plugin may have changed a column after building it.
        answers = SynthesisColumns.model_validate(dict(answer.__dict__) if isinstance(answer, SynthesisColumns) else answer)
        if len(answers.direction) != len(indices):
            raise ValueError(f"{len(answers.direction)} answers for {len(indices)} bars")
    except Exception as exc:
        get_logger(symbol=history.symbol, plugin=synthesizer.name).warning(
            "synthesizer batch failed; synthesizing bar by bar", bars=len(indices), error=f"{type(exc).__name__}: {exc}",
        )
        return None
    name, settings, granularity = synthesizer.name, pipeline.config.sizing, history.granularity
    close, stamps = history.close, history.timestamp[indices[0]:indices[-1] + 1].tolist()
    prices = close[indices[0]:indices[-1] + 1].tolist()
    # Sizing reads only the results of the theories declaring `loss_metrics`: only theirs are made.
    declared = loss_theories(pipeline.theories)
    risky = [c for c in columns if c.theory in declared]
    out = []
    for i, t in enumerate(indices):
        direction, confidence = answers.direction[i], answers.confidence[i]
        position, limit = 0.0, settings.max_position
        if flat_rule(direction, settings) is None:  # sized from the closes the theories saw, up to t
            sized = size_answer(
                pipeline, history.symbol, direction, confidence, name, [c.result(i) for c in risky], close[max(0, t + 1 - lookback):t + 1],
                granularity, answers.payoff[i] if answers.payoff else None,
            )
            position, limit = sized.position, limit_of(sized.loss_limit, settings)
        out.append(BarSignal(
            index=t, timestamp=int(stamps[t - indices[0]]), price=prices[t - indices[0]], direction=direction, confidence=confidence,
            synthesizer=name, fallback_reason=None, theories=outcomes[i], decided_by=answers.decided_by[i] or "", position=position, limit=limit,
        ))
    return out
