"""The pipeline: feeds → theories → prompt formatters → synthesizer → sinks, one symbol at a time.

The engine, not pluggy's hook fan-out, runs the components: it keeps the config's order, gives
each theory a time limit and turns any plugin failure into a recorded result instead of a crash.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .components import (
    EndOfData, Feed, PromptFormatter, Sink, StartupError, SynthesisFailed, Synthesizer, Theory,
)
from .config import V7Config
from .delivery import SinkDelivery
from .logs import get_logger
from .models import CandleSeries, MarketContext, PromptRequest, RunInfo, Signal, Synthesis, SynthesisRequest, TheoryResult
from .outcome import RunOutcome
from .registry import Registry
from .resume import resume_feeds
from .run_problems import RunProblems
from .scheduler import Scheduler
from .sizing import sizing_for

from .theories_together import run_theories
from .trained import check_trained
from .theory_runner import THREAD_ENV_VARS, limit_threads, run_theory, theory_slots  # noqa: F401 - re-exported for callers of the engine


@dataclass(frozen=True)
class Fetched:
    """What the feeds returned for one symbol in one iteration."""

    candles: CandleSeries
    elapsed_ms: float
    context: MarketContext | None = None  # filled in by the scheduler, fetched once per iteration
    context_error: str | None = None


@dataclass
class Pipeline(SinkDelivery):
    """The configured components, instantiated once per run, in config order (handing signals to the sinks: core/delivery.py)."""

    config: V7Config
    registry: Registry
    feeds: dict[str, Feed] = field(default_factory=dict)
    theories: list[Theory] = field(default_factory=list)
    formatters: list[PromptFormatter] = field(default_factory=list)
    synthesizer: Synthesizer | None = None
    fallback: Synthesizer | None = None
    sinks: list[Sink] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    config_hash: str = ""
    problems: RunProblems = field(default_factory=RunProblems)  # for sinks that take notices; set up at open()
    _closed: set[int] = field(default_factory=set)

    @classmethod
    def build(cls, config: V7Config, registry: Registry, kinds: tuple[str, ...] = ("feed", "theory", "formatter", "synthesizer", "sink")) -> "Pipeline":
        pipeline = cls(config, registry)
        for kind in kinds:
            for name in config.enabled.get(kind, []):
                component = pipeline._instantiate(kind, name)
                if kind == "feed":
                    pipeline.feeds[name] = component
                elif kind == "theory":
                    pipeline.theories.append(component)
                elif kind == "formatter":
                    pipeline.formatters.append(component)
                elif kind == "sink":
                    pipeline.sinks.append(component)
                elif name == config.synthesizer:
                    pipeline.synthesizer = component
                else:
                    pipeline.fallback = component
        pipeline.config_hash = config.config_hash()
        if "theory" in kinds:
            for synthesizer in (pipeline.synthesizer, pipeline.fallback):
                if synthesizer is not None:
                    check_trained(config, synthesizer, pipeline.theories)
        return pipeline

    def _instantiate(self, kind: str, name: str) -> Any:
        component = self.registry.get(kind, name)
        if component is None:
            error = self.registry.error_for(kind, name)
            raise StartupError(f"{kind} plugin {name!r} is enabled but unusable: {error.describe() if error else 'not installed'}")
        try:
            return component.cls(self.config.plugin_config(kind, name) or component.cls.Config())
        except Exception as exc:
            raise StartupError(
                f"{kind} plugin {name!r} (distribution {component.source.distribution}) failed to start: {type(exc).__name__}: {exc}"
            ) from exc

    def check_symbols(self, symbols: list[str] | None = None) -> list[str]:
        """What the enabled feeds say is wrong with the symbols to run, before anything is fetched."""
        symbols = symbols or self.config.engine.symbols
        problems = []
        for name, feed in self.feeds.items():
            try:
                problems.extend(feed.check_symbols(list(symbols), self.config.engine.granularity))
            except Exception as exc:  # a broken check must not hide the others
                problems.append(f"feed {name!r} could not check the symbols: {type(exc).__name__}: {exc}")
        return problems

    # -- stages ------------------------------------------------------------------------------

    def analyze(self, candles: CandleSeries, only: set[str] | None = None) -> list[TheoryResult]:
        """Every theory's result in config order; `only` = just the theories of those names (the rest are known)."""
        timeout = self.config.engine.theory_timeout_seconds
        return run_theories([theory for theory in self.theories if only is None or theory.name in only], candles, timeout)

    def build_prompt(self, request: PromptRequest) -> str:
        prompt = ""
        theories = {t.name: t for t in self.theories}
        for formatter in self.formatters:
            try:
                text = formatter.format(request, prompt, theories)
                if not isinstance(text, str):
                    raise TypeError(f"format() returned {type(text).__name__}, expected str")
                prompt = text
            except Exception as exc:
                get_logger(symbol=request.symbol, plugin=formatter.name).error(
                    "formatter failed; its part of the prompt is skipped", error=f"{type(exc).__name__}: {exc}"
                )
        return prompt

    def synthesize(self, request: SynthesisRequest) -> tuple[Synthesis, str, str | None]:
        """The primary synthesizer's answer, or the fallback's with the reason it was needed.

        The returned synthesis counts the primary's attempts and token usage too: a fallback
        signal still shows what the failed LLM calls cost.
        """
        assert self.synthesizer is not None
        try:
            return Synthesis.checked(self.synthesizer.synthesize(request)), self.synthesizer.name, None
        except Exception as exc:
            if self.fallback is None:
                raise
            reason = exc.reason if isinstance(exc, SynthesisFailed) else f"{type(exc).__name__}: {exc}"
            attempts = exc.attempts if isinstance(exc, SynthesisFailed) else 1
            usage = exc.usage if isinstance(exc, SynthesisFailed) else None
            log = get_logger(symbol=request.symbol)
            (log.debug if getattr(exc, "quiet", False) else log.warning)(
                "synthesizer failed, using fallback", plugin=self.synthesizer.name, fallback=self.fallback.name, reason=reason,
            )
        answer = Synthesis.checked(self.fallback.synthesize(request))
        answer.attempts = attempts
        answer.usage = usage
        return answer, self.fallback.name, reason

    def decide(
        self, request: PromptRequest, timings: dict[str, float] | None = None, keep_prompt: bool = True,
    ) -> tuple[str, Synthesis, str, str | None]:
        """The stages after the theories, shared by `v7 run` and `v7 backtest`: formatters, then the synthesizer.

        Returns the prompt, the answer, who answered and why the fallback was needed (if it was).
        `keep_prompt=False` (a backtest, which stores no prompt) skips the formatters unless a
        synthesizer reads the prompt.
        """
        timings = timings if timings is not None else {}
        mark = time.perf_counter()
        wanted = keep_prompt or any(s is not None and s.needs_prompt for s in (self.synthesizer, self.fallback))
        prompt = self.build_prompt(request) if self.formatters and wanted else ""
        timings["formatters"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        synthesis, name, fallback_reason = self.synthesize(SynthesisRequest.of(request, prompt))
        timings["synthesizer"] = (time.perf_counter() - mark) * 1000
        return prompt, synthesis, name, fallback_reason

    def fetch_context(self, symbol: str) -> tuple[MarketContext | None, str | None]:
        errors = []
        for name in self.config.context_feeds:
            try:
                context = self.feeds[name].fetch_context(symbol)
                if context is not None:
                    self.problems.ok("feed_failing", name, symbol, what="context")
                    return context, None
                errors.append(f"{name}: no context for {symbol}")
            except Exception as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                self.problems.failed("feed_failing", name, f"{type(exc).__name__}: {exc}", symbol, what="context")
        return None, ("; ".join(errors) or None)

    def fetch(self, symbol: str) -> "Fetched | None":
        """Candles for one symbol (market context comes separately); None when the symbol must be skipped this iteration.

        Raises `EndOfData` when a replay has no more bars for the symbol.
        """
        log = get_logger(symbol=symbol, run_id=self.run_id)
        engine = self.config.engine
        started = time.perf_counter()
        feed = self.feeds[self.config.candle_feed] if self.config.candle_feed else None
        if feed is None:
            raise StartupError("no candle feed is enabled")
        try:
            candles = feed.fetch_candles(symbol, engine.granularity, engine.lookback)
        except EndOfData:
            raise
        except Exception as exc:
            log.error("feed failed; symbol skipped this iteration", plugin=feed.name, error=f"{type(exc).__name__}: {exc}")
            self.problems.failed("feed_failing", feed.name, f"{type(exc).__name__}: {exc}", symbol, what="candles")
            return None
        self.problems.ok("feed_failing", feed.name, symbol, what="candles")
        if candles is None or len(candles) == 0:
            log.warning("feed returned no usable candles; symbol skipped this iteration", plugin=feed.name)
            return None
        return Fetched(candles.tail(engine.lookback), (time.perf_counter() - started) * 1000)

    def evaluate(self, symbol: str, fetched: "Fetched") -> Signal | None:
        """Theories, formatters and synthesizer on fetched data; None when no synthesizer answered."""
        log = get_logger(symbol=symbol, run_id=self.run_id)
        engine = self.config.engine
        candles, context, context_error = fetched.candles, fetched.context, fetched.context_error
        timings: dict[str, float] = {"feed": fetched.elapsed_ms}

        with theory_slots(engine.theory_workers):
            mark = time.perf_counter()
            results = self.analyze(candles)
            timings["theories"] = (time.perf_counter() - mark) * 1000

        request = PromptRequest(
            symbol=symbol, granularity=engine.granularity, bar_time=candles.signal_time,
            price=candles.last_price, results=results, context=context, candles=candles,
        )
        try:
            prompt, synthesis, synthesizer_name, fallback_reason = self.decide(request, timings)
        except Exception as exc:
            log.error("no synthesizer produced a signal; symbol skipped", error=f"{type(exc).__name__}: {exc}")
            return None
        sizing = sizing_for(self, request, synthesis, synthesizer_name)

        return Signal(
            symbol=symbol,
            granularity=engine.granularity,
            bar_time=candles.signal_time,
            direction=synthesis.direction,
            confidence=synthesis.confidence,
            price=candles.last_price,
            reasoning=synthesis.reasoning,
            synthesizer=synthesizer_name,
            fallback_reason=fallback_reason,
            attempts=synthesis.attempts,
            usage=synthesis.usage,
            theory_results=results,
            context=context,
            context_error=context_error,
            prompt=prompt or None,
            run_id=self.run_id,
            config_hash=self.config_hash,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            position=sizing.position,
            sizing=sizing.rule,
        )

    def run_info(self) -> RunInfo:
        from . import __version__

        versions = {}
        for kind, names in self.config.enabled.items():
            for name in names:
                component = self.registry.get(kind, name)
                if component is not None:
                    versions[f"{kind}:{name}"] = component.version
        return RunInfo(
            run_id=self.run_id,
            config_hash=self.config_hash,
            v7_version=__version__,
            plugin_versions=versions,
            config_path=str(self.config.path) if self.config.path else None,
        )

    def open(self) -> None:
        info = self.run_info()
        for sink in self.sinks:
            sink.open(info, get_logger(plugin=sink.name, run_id=self.run_id))
        self.problems = RunProblems(self.sinks, self.run_id, self.synthesizer.name if self.synthesizer and self.fallback else None)
        resume_feeds(self)  # after the sinks opened: a spool replayed at open counts as stored

    def close(self) -> None:
        for component in [*self.sinks, *self.feeds.values(), self.synthesizer, self.fallback]:
            if component is None or id(component) in self._closed:
                continue
            self._closed.add(id(component))
            try:
                component.close()
            except Exception as exc:
                get_logger(plugin=component.name).error("close failed", error=f"{type(exc).__name__}: {exc}")

    # -- the loop ----------------------------------------------------------------------------

    def run(
        self, iterations: int | None = None, symbols: list[str] | None = None, stop: threading.Event | None = None,
        on_signal: Callable[[Signal], None] | None = None,
    ) -> "RunOutcome":
        """Run the main loop; returns what it did, counted. `on_signal` sees each signal after the sinks.

        No signal is kept: memory stays flat however long the run (a caller that wants them collects them).
        """
        stop = stop or threading.Event()
        symbols = symbols or self.config.engine.symbols
        live = any(feed.live for feed in self.feeds.values())
        ended: set[str] = set()
        outcome = RunOutcome(symbols=list(symbols))
        log = get_logger(run_id=self.run_id)
        log.info("run started", symbols=symbols, iterations=iterations, config_hash=self.config_hash)
        # A stop request closes the live feeds and the primary synthesizer at once: their rate-limit
        # and retry waits end now, not after minutes of backoff. Signals already computed are stored.
        finished = threading.Event()
        threading.Thread(target=self._close_feeds_on, args=(stop, finished), name="stop-watcher", daemon=True).start()
        try:
            self.open()
            iteration = 0
            engine = self.config.engine
            deadline_s = engine.iteration_timeout_seconds or (engine.interval_seconds if live else None)
            # Feeds wait on the network, theories on the CPU: separate pools, so 50 symbols fetch
            # concurrently while only `symbol_workers` compute at a time (see core/scheduler.py).
            scheduler = Scheduler(self, list(symbols), outcome, on_signal)
            try:
                while not stop.is_set() and (iterations is None or iteration < iterations):
                    iteration += 1
                    started = time.monotonic()
                    active = [s for s in symbols if s not in ended]
                    if not active:
                        log.info("every symbol reached the end of its data; stopping")
                        break
                    report = scheduler.iterate(active, None if deadline_s is None else started + deadline_s)
                    self.problems.deliver()  # feeds that failed this iteration, when no signal was stored after
                    ended.update(report.ended)
                    if not report.evaluated and not live and any(s not in ended for s in active) and not scheduler.busy:
                        # Replayed data will not appear by retrying: stop instead of spinning.
                        log.error("no symbol produced data and no feed is live; stopping", symbols=[s for s in active if s not in ended])
                        break
                    if live and (iterations is None or iteration < iterations):
                        stop.wait(max(0.0, engine.interval_seconds - (time.monotonic() - started)))
                scheduler.drain()
                self.problems.deliver()
            finally:
                scheduler.close()
            if stop.is_set():
                log.info("stop requested; the current signals were finished and stored")
        finally:
            finished.set()
            self.close()
            self._settle_held(outcome)
            self._settle_spooled(outcome)
            log.info("run stopped", **outcome.as_fields())
        return outcome

    def _close_feeds_on(self, stop: threading.Event, finished: threading.Event) -> None:
        while not stop.wait(0.2):
            if finished.is_set():
                return
        # Live feeds, and the primary synthesizer (an LLM in backoff): the fallback stays open and
        # answers for any symbol still being decided, so no signal is left half-made.
        waiting = [feed for feed in self.feeds.values() if feed.live]
        if self.synthesizer is not None and self.fallback is not None:
            waiting.append(self.synthesizer)
        for component in waiting:
            if id(component) in self._closed:
                continue
            self._closed.add(id(component))
            try:
                component.close()
            except Exception as exc:
                get_logger(plugin=component.name).error("close failed", error=f"{type(exc).__name__}: {exc}")

    def log_signal(self, signal: Signal) -> None:
        log = get_logger(symbol=signal.symbol, run_id=self.run_id)
        for result in signal.theory_results:
            # A constant event with the values as fields, so JSON logs can be aggregated per theory.
            value = next(iter(result.metrics.values()), None)
            log.info(
                "theory result", plugin=result.theory, theory=result.theory, status=result.status,
                value=None if value is None else round(value, 6), label=result.label or None,
                message=result.message, elapsed_ms=round(result.elapsed_ms, 2),
            )
        log.info(
            "signal",
            direction=signal.direction,
            confidence=round(signal.confidence, 3),
            position=round(signal.position, 6),
            price=signal.price,
            bar_time=signal.bar_time.isoformat(),
            synthesizer=signal.synthesizer,
            fallback_reason=signal.fallback_reason,
            timings_ms=signal.timings_ms,
        )
