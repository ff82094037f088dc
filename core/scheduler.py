"""One iteration of `v7 run`: each symbol goes on as soon as its own data is ready.

A symbol's candles are fetched on the fetch pool, its theories and synthesizer run on the symbol
pool, and its signal is stored (in this thread: sinks are never called concurrently) as soon as it
is made. Market context is fetched once per iteration on a pool of its own with its own deadline:
a symbol waits for it at most until then and goes on without it. The iteration has a deadline too:
a symbol still running then is carried over (stored when it finishes) and skipped by the next
iterations until it does, so a slow symbol delays only itself.

With `[portfolio] enabled` the signals of an iteration's symbols are held until all are in (or the
deadline passes), adjusted together by core/portfolio/step.py, then stored; a symbol finishing
after its iteration's book went out, and every signal of a book whose step failed, still gets the
caps: at most max_symbol, and within the gross the book left (`step.capped`).
"""

from __future__ import annotations

import dataclasses
import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

from .components import EndOfData, UpToDate
from .logs import get_logger
from .models import CandleSeries, MarketContext, Signal

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Fetched, Pipeline
    from .portfolio.step import Released
    from .outcome import Delivery, RunOutcome

Contexts = dict[str, tuple[MarketContext | None, str | None]]


@dataclasses.dataclass
class IterationReport:
    evaluated: int = 0  # symbols whose data reached the theories
    ended: list[str] = dataclasses.field(default_factory=list)  # symbols at the end of their replay


class LocalEvaluator:
    """Where symbols are evaluated by default: each on the symbol pool of this process.

    The scheduler hands an evaluator each batch of symbols ready together and gets a future per
    symbol; `[engine] executor = "dask"` swaps in core/distributed.py's `DaskEvaluator`.
    """

    def __init__(self, pipeline: "Pipeline", pool: ThreadPoolExecutor) -> None:
        self.pipeline, self.pool = pipeline, pool

    def evaluate(self, items: list[tuple[str, "Fetched"]]) -> list[tuple[Future, str]]:
        return [(self.pool.submit(self.pipeline.evaluate, symbol, fetched), symbol) for symbol, fetched in items]

    def close(self) -> None:
        pass


def _dask_evaluator(pipeline: "Pipeline") -> "LocalEvaluator":
    from .distributed import DaskEvaluator  # Dask is imported only when asked for

    return DaskEvaluator(pipeline)  # type: ignore[return-value] - the same three methods


class Scheduler:
    """Pools and in-flight work of a run; `iterate()` runs one iteration, `drain()` waits for the rest."""

    def __init__(self, pipeline: "Pipeline", symbols: list[str], outcome: "RunOutcome",
                 on_signal: Callable[[Signal], None] | None = None) -> None:
        engine = pipeline.config.engine
        self.pipeline, self.outcome, self.on_signal = pipeline, outcome, on_signal
        self.fetchers = ThreadPoolExecutor(max_workers=min(engine.fetch_workers, len(symbols)), thread_name_prefix="fetch")
        self.workers = ThreadPoolExecutor(max_workers=min(engine.symbol_workers, len(symbols)), thread_name_prefix="symbol")
        self.context_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="context")
        self.evaluator = LocalEvaluator(pipeline, self.workers) if engine.executor != "dask" else _dask_evaluator(pipeline)
        self.ready: list[tuple[str, "Fetched"]] = []  # handed to the evaluator together
        self.context: Future[Contexts] | None = None
        self.fetching: dict[Future, str] = {}
        self.evaluating: dict[Future, str] = {}
        self.waiting: dict[str, "Fetched"] = {}  # candles ready, market context not yet
        self.log = get_logger(run_id=pipeline.run_id)
        self.portfolio = pipeline.config.portfolio if pipeline.config.portfolio.enabled else None
        self.gathering: set[str] = set()  # this iteration's symbols, whose signals wait for the portfolio step
        self.book: list[Signal] = []  # their signals so far
        self.late: dict[str, "Released"] = {}  # symbols missing from a released book: the gross it took
        self.outgoing: list[Signal] = []  # finished, not yet handed to the sinks
        # Every future posts itself here when done: the loop waits on one queue, not on all the
        # futures in flight (`concurrent.futures.wait` locks each of them, 1,000 per wake-up).
        self.completed: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.candles: dict[str, CandleSeries] = {}  # the candles their theories saw (the covariance's closes)

    @property
    def busy(self) -> set[str]:
        return set(self.fetching.values()) | set(self.evaluating.values()) | set(self.waiting)

    @property
    def working(self) -> bool:
        """`bool(busy)`, without building the set (the loop asks at every wake-up)."""
        return bool(self.fetching or self.evaluating or self.waiting)

    def iterate(self, active: list[str], deadline: float | None) -> IterationReport:
        report = IterationReport()
        engine = self.pipeline.config.engine
        busy = self.busy
        carried = [s for s in active if s in busy]
        if carried:
            self.log.warning("symbols still running from an earlier iteration; skipped this iteration", symbols=carried)
        fresh = [s for s in active if s not in busy]
        context_deadline = None
        if self.pipeline.config.context_feeds and fresh:
            context_deadline = time.monotonic() + engine.context_timeout_seconds
            if self.context is None or self.context.done():
                self.context = self._tracked(self.context_pool.submit(self._fetch_contexts, fresh))
            else:
                self.log.warning("market context of an earlier iteration is still being fetched; not asked again")
        for symbol in fresh:
            self.fetching[self._tracked(self.fetchers.submit(self.pipeline.fetch, symbol))] = symbol
        if self.portfolio is not None:
            self.gathering = set(fresh)
            for symbol in fresh:  # not carried over: no signal of an earlier book is still to come
                self.late.pop(symbol, None)
        try:
            self._gather(report, deadline, context_deadline)
        finally:  # everything held goes to the sinks, whatever ended the iteration
            self._release_book()
            self._send()
        return report

    def _gather(self, report: IterationReport, deadline: float | None, context_deadline: float | None) -> None:
        while self.working:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.log.warning("iteration deadline passed; symbols still running go on and are stored when done", symbols=sorted(self.busy))
                break
            if self.waiting and (context_deadline is None or now >= context_deadline or (self.context and self.context.done())):
                self._release_waiting(report)
                continue
            timers = [t for t in (deadline, context_deadline if self.waiting else None) if t is not None]
            timeout = max(0.0, min(timers) - now) if timers else None
            if not (self.fetching or self.evaluating or (self.waiting and self.context)):  # pragma: no cover - busy implies something to wait for
                break
            for future in self._completions(timeout):
                self._finish(future, report)
            self._flush()  # new work first: the workers compute while the sinks commit
            self._send()

    def drain(self) -> None:
        """Wait for everything still running (the end of the run) and store what it makes."""
        report = IterationReport()
        while self.working:
            if self.waiting and (self.context is None or self.context.done()):
                self._release_waiting(report)
                continue
            done = self._completions(self.pipeline.config.engine.context_timeout_seconds)
            if not done and self.waiting:  # the context is late: go on without it
                self._release_waiting(report, give_up=True)
            for future in done:
                self._finish(future, report)
            self._flush()  # new work first: the workers compute while the sinks commit
            self._send()

    def _tracked(self, future: Future) -> Future:
        future.add_done_callback(self.completed.put)
        return future

    def _completions(self, timeout: float | None) -> list[Future]:
        """The futures done since the last call: waits up to `timeout` (None: until one is) for the first."""
        try:
            done = [self.completed.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                done.append(self.completed.get_nowait())
            except queue.Empty:
                return done

    def close(self) -> None:
        for pool in (self.fetchers, self.workers):
            pool.shutdown(wait=True)
        self.evaluator.close()
        self.context_pool.shutdown(wait=False, cancel_futures=True)  # a hung context call must not hold the stop

    # -- steps --------------------------------------------------------------------------------

    def _fetch_contexts(self, symbols: list[str]) -> Contexts:
        return {symbol: self.pipeline.fetch_context(symbol) for symbol in symbols}

    def _finish(self, future: Future, report: IterationReport) -> None:
        if future in self.fetching:
            self._fetched(self.fetching.pop(future), future, report)
        elif future in self.evaluating:
            self._evaluated(self.evaluating.pop(future), future)

    def _fetched(self, symbol: str, future: Future, report: IterationReport) -> None:
        try:
            fetched = future.result()
        except EndOfData as exc:
            report.ended.append(symbol)
            if isinstance(exc, UpToDate):
                self.outcome.up_to_date.add(symbol)
            self.log.info("feed has no more data for symbol", symbol=symbol, reason=str(exc))
            return
        except Exception as exc:  # a bug, not bad data: report it and keep the loop alive
            self.log.exception("fetching failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
            return
        if fetched is None:
            return
        if self.pipeline.config.context_feeds and self.context is not None and not self.context.done():
            self.waiting[symbol] = fetched
            return
        self._evaluate(symbol, fetched, report)

    def _release_waiting(self, report: IterationReport, give_up: bool = False) -> None:
        for symbol, fetched in list(self.waiting.items()):
            del self.waiting[symbol]
            self._evaluate(symbol, fetched, report, give_up=give_up)
        self._flush()

    def _evaluate(self, symbol: str, fetched: "Fetched", report: IterationReport, give_up: bool = False) -> None:
        report.evaluated += 1
        if symbol in self.gathering:
            self.candles[symbol] = fetched.candles
        if self.pipeline.config.context_feeds:
            fetched = dataclasses.replace(fetched, **self._context_for(symbol, give_up))
        self.ready.append((symbol, fetched))

    def _flush(self) -> None:
        if self.ready:
            self.evaluating.update((self._tracked(future), symbol) for future, symbol in self.evaluator.evaluate(self.ready))
            self.ready = []

    def _context_for(self, symbol: str, give_up: bool) -> dict:
        timeout = self.pipeline.config.engine.context_timeout_seconds
        future = self.context
        if future is None or not future.done() or give_up:
            return {"context": None, "context_error": f"market context not ready within {timeout:g} s (context_timeout_seconds)"}
        try:
            context, error = future.result().get(symbol, (None, "market context was not asked for this symbol this iteration"))
        except Exception as exc:
            return {"context": None, "context_error": f"market context failed: {type(exc).__name__}: {exc}"}
        return {"context": context, "context_error": error}

    def _evaluated(self, symbol: str, future: Future) -> None:
        try:
            signal = future.result()
        except Exception as exc:  # a bug, not bad data: report it and keep the loop alive
            self.log.exception("processing failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
            return
        if signal is None:
            return
        if symbol in self.gathering:
            self.book.append(signal)
            return
        released = self.late.pop(symbol, None)
        if released is not None and self.portfolio is not None:  # late for its book: the caps, in the room it left
            from .portfolio.step import capped

            signal = capped([signal], self.portfolio, released, "late for its iteration's book", self.pipeline.run_id)[0]
        self.outgoing.append(signal)  # sent with the others that finished together (`_send`)

    def _release_book(self) -> None:
        """The portfolio step over the iteration's signals held so far, then each to the sinks."""
        book, candles, gathering = self.book, self.candles, self.gathering
        self.book, self.candles, self.gathering = [], {}, set()
        if self.portfolio is None:
            return
        from .portfolio.step import Released, adjust, capped, own_limit

        released = Released()
        for symbol in gathering.difference(s.symbol for s in book):  # still running: their signals come later
            self.late[symbol] = released
        if not book:
            return
        pipeline = self.pipeline
        try:
            limits = [own_limit(s, pipeline.theories, pipeline.config.sizing) for s in book]
            book = adjust(book, candles, self.portfolio, limits, pipeline.run_id)
            released.gross = sum(abs(s.position) for s in book)
        except Exception as exc:  # a bug: the signals still go out, within the caps
            self.log.exception("portfolio step failed; signals stored within the caps", error=f"{type(exc).__name__}: {exc}")
            book = capped(book, self.portfolio, released, "the portfolio step failed", pipeline.run_id)
        self.outgoing.extend(book)
        self._send()

    def _send(self) -> None:
        """The signals that finished since the last send, to the sinks in one go (`Pipeline.store_many`:
        one commit for all where a sink can), then each counted, logged and handed on."""
        signals, self.outgoing = self.outgoing, []
        if not signals:
            return
        pipeline = self.pipeline
        for signal, delivery in zip(signals, pipeline.store_many(signals)):
            self._delivered(signal, delivery)

    def _delivered(self, signal: Signal, delivery: "Delivery") -> None:
        pipeline = self.pipeline
        if not self.outcome.count(signal, delivery):
            pipeline.last_resort(signal, "every sink failed")
        pipeline.log_signal(signal)
        if self.on_signal is not None:
            self.on_signal(signal)
