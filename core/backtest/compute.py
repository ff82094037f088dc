"""Computing the signals: the theories at each bar, then the synthesizer (synthesis.py), the LLM cost guard, the worker pool.

For every signal bar t the enabled theories get the last `lookback` candles up to and including t
(`history.slice(t + 1 - lookback, t + 1)`), then the prompt formatters and the synthesizer run
as in `v7 run` (`Pipeline.decide`). Nothing after t is handed to a plugin for bar t (a batch path,
of a theory or of the synthesizer, gets the candles up to its chunk's last bar and must answer each
bar from the candles up to it). Market-context feeds are not consulted: they describe today's
market, which would be lookahead for a past bar.

Bars are independent (each signal is a function of the candles up to its bar only), so chunks of
bars go to a pool of forked worker processes, each with its own pipeline.

Theory results already in the feature store (`[backtest] feature_cache`, see core/features/) for
exactly the same window and theory key are read instead of computed; only the missing (bar, theory)
pairs run, and the parent writes them back when the bars are done.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

from ..collector import gc_paused, heap_frozen
from ..components import StartupError
from ..config import BacktestConfig, V7Config
from ..features.cache import FeatureCache
from ..features.keys import window_digests
from ..models import CandleSeries, PromptRequest, TheoryResult
from ..theory_columns import TheoryColumns, rows_of
from .history import load_histories, own_copy, signal_range
from .learning import compare_learned, learns
from .llm import estimate_llm, is_llm, llm_usage
from .models import BacktestError, BacktestResult, BarSignal, LlmCapExceeded, LlmEstimate, TheoryOutcome
from .synthesis import synthesize_bar, synthesize_chunk, window_at
from .evidence import pooled_for
from .scoring import symbol_result

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Pipeline
    from ..registry import Registry


class KnownColumn(NamedTuple):
    """One theory's results the feature store has for a symbol's planned bars: its columns and, per bar index, its row there."""

    columns: TheoryColumns
    rows: dict[int, int]


# Per theory: what the feature store already holds for one symbol's planned bars.
Known = dict[str, KnownColumn]
# (bar index, result) of every theory result computed, to be written to the feature store.
Fresh = list[tuple[int, TheoryResult]]


def results_at(
    pipeline: "Pipeline", history: CandleSeries, indices: Sequence[int], lookback: int, known: Known | None = None, fresh: Fresh | None = None,
) -> list[TheoryColumns]:
    """Every theory's results at the bars of `indices`, a column per theory in config order.

    `known` results are used as they are (no TheoryResult made per bar); the missing ones are
    computed, by a theory's batch path (`Theory.analyze_batch`, all its missing bars in one call)
    or bar by bar, and appended to `fresh`.
    """
    from ..batch_runner import run_theory_batch

    known = known or {}
    names = [t.name for t in pipeline.theories]
    stored = {name: [known[name].rows.get(t) for t in indices] if name in known else [None] * len(indices) for name in names}
    computed: dict[str, dict[int, TheoryResult]] = {name: {} for name in names}
    timeout = pipeline.config.engine.theory_timeout_seconds
    batched = [t for t in pipeline.theories if type(t).supports("analyze_batch")]
    for theory in batched:
        missing = [t for t, row in zip(indices, stored[theory.name]) if row is None]
        if not missing:
            continue
        # Only candles up to the last bar asked for, copied: the batch cannot reach past its chunk.
        lo = max(0, missing[0] + 1 - lookback)
        part = own_copy(history.slice(lo, missing[-1] + 1))
        for t, result in zip(missing, run_theory_batch(theory, part, [t - lo for t in missing], lookback, timeout)):
            computed[theory.name][t] = result
    plain = [t.name for t in pipeline.theories if t not in batched]
    for position, t in enumerate(indices):
        missing_names = [name for name in plain if stored[name][position] is None]
        if missing_names:
            for name, result in zip(missing_names, pipeline.analyze(window_at(history, t, lookback), only=set(missing_names))):
                computed[name][t] = result
    if fresh is not None:
        fresh.extend((t, result) for name in names for t, result in computed[name].items())
    return [_column(name, indices, stored[name], known.get(name), computed[name]) for name in names]


def _column(name: str, indices: Sequence[int], rows: "list[int | None]", known: KnownColumn | None, computed: dict[int, TheoryResult]) -> TheoryColumns:
    """One theory's column over the chunk: the stored rows taken as they are, computed results wrapped, a mix merged."""
    if known is not None and None not in rows:
        return known.columns.take(rows)  # type: ignore[arg-type]
    if known is None or all(row is None for row in rows):
        return TheoryColumns.of(name, [computed[t] for t in indices])
    stored = known.columns
    results = [computed[t] if row is None else stored.result(row) for t, row in zip(indices, rows)]
    return TheoryColumns.of(name, results, [None if row is None else stored.metrics_digests[row] for row in rows])


def signals_for(
    pipeline: "Pipeline", history: CandleSeries, indices: Sequence[int], lookback: int, known: Known | None = None, fresh: Fresh | None = None,
) -> list[BarSignal]:
    """Theories, formatters and synthesizer at each bar of `indices`, in order.

    `known` results are used instead of running their theory; computed ones are appended to `fresh`.
    """
    columns = results_at(pipeline, history, indices, lookback, known, fresh)
    per_theory = [TheoryOutcome.column(c) for c in columns]  # made a theory at a time, then turned into rows per bar
    outcomes = list(zip(*per_theory)) if per_theory else [() for _ in indices]
    return synthesize_chunk(pipeline, history, indices, lookback, columns, outcomes)


def theory_results_for(
    pipeline: "Pipeline", history: CandleSeries, indices: Sequence[int], lookback: int, known: Known | None = None, fresh: Fresh | None = None,
) -> list[list[TheoryResult]]:
    """Each bar's theory results (config order): what the driver synthesizes bar by bar (an LLM, a learner)."""
    return rows_of(results_at(pipeline, history, indices, lookback, known, fresh), len(indices))


def stored_results(cache: FeatureCache, histories: dict[str, CandleSeries], plan: dict[str, list[int]], lookback: int) -> tuple[dict[str, Known], dict[str, dict[int, str]]]:
    """What the feature store holds for the planned bars (by symbol and theory) and each bar's window digest."""
    known: dict[str, Known] = {}
    digests: dict[str, dict[int, str]] = {}
    for symbol, indices in plan.items():
        history = histories[symbol]
        digests[symbol] = window_digests(history, indices, lookback)
        times = history.timestamp[indices].tolist() if indices else []
        index_of = dict(zip(times, indices))
        found = cache.lookup(symbol, times, [digests[symbol][t] for t in indices])
        known[symbol] = {
            name: KnownColumn(columns, {index_of[bar_time]: row for row, bar_time in enumerate(bar_times)})
            for name, (bar_times, columns) in found.items()
        }
    return known, digests


def incomplete_bars(known: dict[str, Known], plan: dict[str, list[int]], names: list[str]) -> int:
    """Planned bars for which the store lacks at least one theory's result: the bars to compute."""
    count = 0
    for symbol, indices in plan.items():
        have = known.get(symbol, {})
        if any(name not in have for name in names):
            count += len(indices)
            continue
        rows = [have[name].rows for name in names]
        count += sum(1 for t in indices if not all(t in r for r in rows))
    return count

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


def _worker_chunk(symbol: str, indices: list[int], state: dict[str, Any] | None = None) -> tuple[list[Any], Fresh]:
    """Signals (or theory results, with an LLM synthesizer) of a chunk, and the results computed for the store.

    `state` is a Dask worker's copy of what forked workers inherit in `_FORK_STATE` (core/distributed.py).
    """
    state = _FORK_STATE if state is None else state
    history = state["histories"][symbol]
    known = state["known"].get(symbol)
    fresh: Fresh = []
    compute = signals_for if state["synthesize"] else theory_results_for
    done = compute(state["pipeline"], history, indices, state["lookback"], known, fresh)
    # Without a feature store nobody reads `fresh`: 100,000 bars of TheoryResults would be ~1 GB to ship back.
    return done, fresh if state.get("store", True) else []


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def chunked(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


CHUNK_BARS = 1000  # history bars per chunk of work: batch paths amortise their per-call costs over it


def bar_chunks(indices: list[int], bars: int = CHUNK_BARS) -> list[list[int]]:
    """Signal bars grouped by `t // bars`: the same chunks in one process, in workers or on a cluster,
    so a batch path answers the same bars together whatever the executor (equal results, to the bit)."""
    out: list[list[int]] = []
    for t in indices:
        if out and out[-1][-1] // bars == t // bars:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def compute_signals(
    pipeline: "Pipeline",
    histories: dict[str, CandleSeries],
    plan: dict[str, list[int]],
    workers: int,
    progress: Callable[[str, int], None] | None = None,
    feature_cache: str | None = None,
) -> tuple[dict[str, list[BarSignal]], int]:
    """Signals at every planned bar of every symbol, and the worker processes used (1 = this process).

    Theories run in `workers` forked processes when > 1 (and enough bars need computing to share).
    `feature_cache` is the feature store's folder (None = `[backtest] feature_cache`, "" = no store):
    stored results are read, only the missing ones computed and then written there.

    With an LLM synthesizer only the theories run in the workers: prompts and LLM calls stay in
    this process, in bar order, so the response cache, usage and fallbacks behave as in `v7 run`;
    the same for a synthesizer that `learns` (it must see each symbol's bars in order).
    """
    lookback = pipeline.config.engine.lookback
    # An LLM (calls in bar order, its cache and usage as in `v7 run`) or a synthesizer that learns from
    # the bars it is shown answers in this process; the workers then compute only the theories.
    in_driver = any(s is not None and (is_llm(s) or type(s).learns) for s in (pipeline.synthesizer, pipeline.fallback))
    cache = FeatureCache.open(pipeline.config, pipeline.theories, feature_cache)
    # The histories and stored results live to the end of the backtest and hold no cycles: frozen, so no
    # collection walks them; the results are read with collection paused and frozen before it resumes.
    with heap_frozen() as freeze:
        with gc_paused():
            known, digests = stored_results(cache, histories, plan, lookback) if cache else ({}, {})
            freeze()

        def keep(symbol: str, fresh: Fresh) -> None:
            if cache:
                history = histories[symbol]
                for t, result in fresh:
                    cache.add(symbol, int(history.timestamp[t]), digests[symbol][t], result)

        to_compute = incomplete_bars(known, plan, [t.name for t in pipeline.theories])
        try:
            return _compute(pipeline, histories, plan, workers, progress, known, keep, in_driver, to_compute, store=cache is not None)
        finally:
            if cache:
                cache.flush()


def _compute(
    pipeline: "Pipeline", histories: dict[str, CandleSeries], plan: dict[str, list[int]], workers: int,
    progress: Callable[[str, int], None] | None, known: dict[str, Known], keep: Callable[[str, Fresh], None], in_driver: bool, to_compute: int,
    store: bool = True,
) -> tuple[dict[str, list[BarSignal]], int]:
    import multiprocessing

    from ..engine import limit_threads

    lookback = pipeline.config.engine.lookback
    out: dict[str, list[BarSignal]] = {symbol: [] for symbol in plan}
    dask = pipeline.config.engine.executor == "dask" and to_compute > 0  # the (symbol, chunk) tasks on the cluster
    if not dask and (workers <= 1 or to_compute < 4 * workers or "fork" not in multiprocessing.get_all_start_methods()):
        limit_threads(1)  # one BLAS thread per process: measured 2x less CPU per bar than two spinning threads
        for symbol, indices in plan.items():
            for chunk in bar_chunks(indices):
                fresh: Fresh = []
                out[symbol].extend(signals_for(pipeline, histories[symbol], chunk, lookback, known.get(symbol), fresh))
                keep(symbol, fresh)
                if progress:
                    progress(symbol, len(chunk))
        return out, 1

    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    tasks = [(symbol, chunk) for symbol, indices in plan.items() for chunk in bar_chunks(indices)]
    _FORK_STATE.clear()
    _FORK_STATE.update(config=pipeline.config, registry=pipeline.registry, histories=histories, lookback=lookback, synthesize=not in_driver, known=known, store=store)
    context = multiprocessing.get_context("fork")
    try:
        if dask:
            from ..distributed import ChunkPool

            executor: Any = ChunkPool(pipeline, {k: v for k, v in _FORK_STATE.items() if k != "registry"})
            workers = executor.size
        else:
            executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init)
        with executor as pool:
            futures = [(symbol, chunk, pool.submit(_worker_chunk, symbol, chunk)) for symbol, chunk in tasks]
            try:
                for position, (symbol, chunk, future) in enumerate(futures):
                    done, fresh = future.result()
                    futures[position] = (symbol, chunk, None)  # its results are kept once, in `out`
                    keep(symbol, fresh)
                    if in_driver:
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
    before_close: Callable[["Pipeline", BacktestResult], None] | None = None,
) -> BacktestRun:
    """Replay each symbol's history through the configured pipeline and score the signals.

    `histories` (oldest-first candles per symbol) replaces the candle feed, for tests and embedding.
    `before_close(pipeline, result)` runs once everything is scored, before the plugins close
    (`v7 train` saves what the synthesizer learned there).
    Raises `LlmCapExceeded` before any LLM call when the estimate is above the cap and not confirmed.
    """
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
        signals, workers = compute_signals(pipeline, histories, plan, workers, progress, settings.feature_cache)
        elapsed = time.perf_counter() - computing
        learning = learns(pipeline)
        importances = pipeline.synthesizer.importances() if learning and type(pipeline.synthesizer).supports("importances") else {}
        result = _assemble(
            config, settings, pipeline, histories, signals, lasts, symbols, importances if learning else None,
            started=started, elapsed=elapsed, workers=workers, estimate=estimate, llm_name=llm_name,
        )
        if before_close is not None:
            before_close(pipeline, result)
    finally:
        pipeline.close()
    return BacktestRun(result, histories, signals, lasts, settings, config)


def _assemble(
    config: V7Config, settings: BacktestConfig, pipeline: "Pipeline", histories: dict[str, CandleSeries], signals: dict[str, list[BarSignal]],
    lasts: dict[str, int], symbols: list[str], importances: dict[str, dict[str, float]] | None, *, started: float, elapsed: float,
    workers: int, estimate: LlmEstimate | None, llm_name: str | None,
) -> BacktestResult:
    """Every score of the signals, as the stored result; `importances` given (maybe empty) when the synthesizer learns."""
    from .. import __version__

    lookback = config.engine.lookback
    learning = importances is not None
    theories = [t.name for t in pipeline.theories]
    directional = {t.name: type(t).directional for t in pipeline.theories}
    results = [symbol_result(histories[s], signals[s], lasts[s], settings, theories, directional) for s in symbols]
    pooled = pooled_for(histories, signals, symbols, settings, theories, directional)
    comparisons = [
        compare_learned(histories[s], signals[s], lasts[s], settings, theories, directional, config.synthesizer, config.fallback or "", (importances or {}).get(s, {}))
        for s in symbols
    ] if learning else []
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
        learning=comparisons,
    )
    return result
