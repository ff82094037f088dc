"""Computing the signals: the window at each bar, the pipeline on it, the LLM cost guard, the worker pool.

For every signal bar t the enabled theories get the last `lookback` candles up to and including t
(`history.slice(t + 1 - lookback, t + 1)`), then the prompt formatters and the synthesizer run
exactly as in `Pipeline.process_symbol`. Nothing after t is ever handed to a plugin. Market-context
feeds are not consulted: they describe today's market, which would be lookahead for a past bar.

Bars are independent (each signal is a function of the candles up to its bar only), so chunks of
bars go to a pool of forked worker processes, each with its own pipeline.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..components import StartupError, Synthesizer
from ..config import BacktestConfig, V7Config
from ..models import CandleSeries, PromptRequest, TheoryResult, TokenUsage
from .history import load_histories, own_copy, signal_range
from .models import BacktestError, BacktestResult, BarSignal, LlmCapExceeded, LlmEstimate, LlmUsage, TheoryOutcome
from .evidence import pooled_for
from .scoring import symbol_result

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Pipeline
    from ..registry import Registry


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
    from ..logs import get_logger

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
        fallback_reason=fallback_reason, attempts=synthesis.attempts, usage=synthesis.usage, decided_by=synthesis.decided_by or "",
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

# -- LLM estimate -------------------------------------------------------------------------------


def is_llm(synthesizer: Synthesizer | None) -> bool:
    """A synthesizer that needs a prompt (an LLM): its calls are estimated and capped."""
    return synthesizer is not None and synthesizer.needs_prompt


def estimate_llm(synthesizer: Synthesizer, first_prompt: str, calls: int, cap: int) -> LlmEstimate:
    """Calls and cost of an LLM backtest: the synthesizer's own `estimate_cost` of `calls` prompts like the first.

    A synthesizer without that capability (or whose estimate fails) gets an estimate with the cost
    unknown; the cap still counts its calls.
    """
    if type(synthesizer).supports("estimate_cost"):
        try:
            cost = synthesizer.estimate_cost(first_prompt, calls)
        except Exception as exc:
            note = f"{synthesizer.name!r} could not estimate it ({type(exc).__name__}: {exc})"
        else:
            return LlmEstimate.of(synthesizer.name, cap, cost.model_copy(update={"calls": calls}))
    else:
        note = f"{synthesizer.name!r} does not estimate its cost (no estimate_cost)"
    return LlmEstimate(synthesizer=synthesizer.name, calls=calls, cap=cap, cost_note=note)


def llm_usage(signals: Iterable[BarSignal], llm_name: str) -> LlmUsage:
    usage = LlmUsage()
    tokens = TokenUsage()
    for s in signals:
        usage.requests += s.attempts if s.synthesizer == llm_name or s.fallback_reason else 0
        if s.synthesizer == llm_name and s.attempts == 0:
            usage.cached_answers += 1
        if s.fallback_reason and s.synthesizer != llm_name:
            usage.fallbacks += 1
        tokens = tokens + s.usage
    usage.prompt_tokens, usage.completion_tokens, usage.cost = tokens.prompt_tokens, tokens.completion_tokens, tokens.cost
    return usage


# -- running --------------------------------------------------------------------------------------

# What forked workers inherit: set by the parent right before the pool starts.
_FORK_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    import signal

    from ..engine import Pipeline, limit_threads

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

    from ..engine import limit_threads

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
    from .. import __version__
    from ..engine import Pipeline

    settings = settings or config.backtest
    symbols = symbols or config.engine.symbols
    lookback = config.engine.lookback
    start = settings.start
    started = time.perf_counter()
    try:
        pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter", "synthesizer"))
    except StartupError as exc:
        raise BacktestError(str(exc)) from exc
    try:
        if histories is None:
            histories = load_histories(config, registry, symbols, start, settings.end)
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
    directional = {t.name: type(t).directional for t in pipeline.theories}
    results = [symbol_result(histories[s], signals[s], lasts[s], settings, theories, directional) for s in symbols]
    pooled = pooled_for(histories, signals, symbols, settings, theories, directional)
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
        pooled=pooled,
        confidence_meaning=type(pipeline.synthesizer).confidence_meaning if pipeline.synthesizer is not None else None,
    )
    return BacktestRun(result, histories, signals, lasts, settings, config)
