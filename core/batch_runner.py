"""Running a theory's batch path (`Theory.analyze_batch`) with the same guarantees as `run_theory`.

A backtest computes each theory at many consecutive bars; a theory with a batch path answers them
in one call (running sums, one recursion, shared draws). Each bar's result must be what
`run_theory` would give on that bar's window: the same `min_candles` check, the same validation of
the finding, `InsufficientData` per bar. When the batch path raises, times out or answers the
wrong number of bars, the bars are computed one by one instead, and the log says why.
"""

from __future__ import annotations

import queue
import time
from typing import Any, Sequence

from .components import Theory
from .logs import get_logger
from .models import CandleSeries, TheoryResult
from .theory_runner import finding_result, run_theory, theory_worker, too_few_candles


def window_of(history: CandleSeries, t: int, lookback: int) -> CandleSeries:
    return history.slice(max(0, t + 1 - lookback), t + 1)


def run_theory_batch(theory: Theory, history: CandleSeries, ends: Sequence[int], lookback: int, timeout: float) -> list[TheoryResult]:
    """The result of `theory` at each bar of `ends` (ascending indices into `history`)."""
    results: dict[int, TheoryResult] = {}
    ready: list[int] = []
    for t in ends:
        short = too_few_candles(theory, min(lookback, t + 1))
        if short is not None:
            results[t] = short
        else:
            ready.append(t)
    if ready:
        answers, failure, elapsed_ms = _call(theory, history, ready, lookback, timeout * len(ready))
        if failure is not None:
            get_logger(plugin=theory.name).warning("batch path failed; computing bar by bar", theory=theory.name, bars=len(ready), error=failure)
            for t in ready:
                results[t] = run_theory(theory, window_of(history, t, lookback), timeout)
        else:
            per_bar = elapsed_ms / len(ready)
            for t, answer in zip(ready, answers):
                results[t] = finding_result(theory, answer, per_bar, raised=isinstance(answer, BaseException))
    return [results[t] for t in ends]


def _call(theory: Theory, history: CandleSeries, ends: list[int], lookback: int, timeout: float) -> tuple[list[Any], str | None, float]:
    """The batch call on the theory's worker thread (the one `run_theory` uses), so a hang past
    `timeout` is abandoned, not waited for, and no thread is started per call."""
    outcome: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def target() -> tuple[str, Any]:
        try:
            return ("ok", theory.analyze_batch(history, ends, lookback))
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything
            return ("error", f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    worker = theory_worker(theory)
    if worker.busy.is_set():
        return [], "its previous call timed out and is still running", 0.0
    worker.submit(target, outcome)
    try:
        status, value = outcome.get(timeout=timeout)
    except queue.Empty:
        return [], f"timed out after {timeout:g} s for {len(ends)} bars", 0.0
    elapsed_ms = (time.perf_counter() - started) * 1000
    if status != "ok":
        return [], value, 0.0
    if not isinstance(value, (list, tuple)) or len(value) != len(ends):
        count = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
        return [], f"answered {count} findings for {len(ends)} bars", 0.0
    return list(value), None, elapsed_ms
