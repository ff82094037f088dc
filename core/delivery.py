"""Handing signals to the sinks: stores first, then the sinks that only forward, and what is left after close.

A sink that fails never stops the others; a signal no store took and no spool kept is printed as
JSON on stdout (`last_resort`), so nothing written is ever lost. `Pipeline` (core/engine.py) has
these methods; they need only its sinks, run id and run problems.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .components import SignalHeld, SignalSpooled
from .logs import get_logger
from .models import Signal
from .outcome import Delivery, SignalKey, signal_key

if TYPE_CHECKING:  # pragma: no cover
    from .components import Sink
    from .outcome import RunOutcome
    from .run_problems import RunProblems


class SinkDelivery:
    """The sink half of the pipeline, for `Pipeline` to inherit."""

    sinks: "list[Sink]"
    run_id: str
    problems: "RunProblems"

    def store_many(self, signals: list[Signal]) -> list[Delivery]:
        """`store` of each signal, in order; sinks that can (`write_many`) store them all in one go.

        A sink's batch that raises stored nothing: it is logged and each signal goes to its `write`."""
        if len(signals) < 2:
            return [self.store(signal) for signal in signals]
        answered: dict[int, list[bool]] = {}
        mark = time.perf_counter()
        for position, sink in enumerate(self.sinks):
            if not (sink.stores and type(sink).supports("write_many")):
                continue
            try:
                answers = list(sink.write_many(signals))
                if len(answers) != len(signals):
                    raise TypeError(f"write_many answered {len(answers)} times for {len(signals)} signals")
                answered[position] = answers
            except Exception as exc:
                get_logger(run_id=self.run_id).warning(
                    "sink could not store signals together; storing them one by one", plugin=sink.name, signals=len(signals),
                    error=f"{type(exc).__name__}: {exc}",
                )
        together = (time.perf_counter() - mark) * 1000
        return [self.store(signal, {p: a[i] for p, a in answered.items()}, together) for i, signal in enumerate(signals)]

    def store(self, signal: Signal, answered: dict[int, bool] | None = None, batch_ms: float = 0.0) -> Delivery:
        """Hand a signal to the stores, then to the sinks that only forward; one failing sink never stops the others.

        `answered` = what sinks (by position) already answered for it in a batch (`store_many`), which took `batch_ms`."""
        log = get_logger(symbol=signal.symbol, run_id=self.run_id)
        stored = already = 0
        held: list[str] = []
        spooled: list[str] = []
        answered = answered or {}
        mark = time.perf_counter()
        # Stores first, then sinks that only forward: a signal every store already had (a re-run) is not forwarded again.
        stores = sum(sink.stores for sink in self.sinks)
        for position, sink in sorted(enumerate(self.sinks), key=lambda item: not item[1].stores):
            try:
                if not sink.stores:  # forwards only: its answer counts nothing
                    if already and already == stores:
                        log.debug("signal already stored; not forwarded again", plugin=sink.name, bar_time=signal.bar_time.isoformat())
                    else:
                        sink.write(signal)
                elif answered[position] if position in answered else sink.write(signal):
                    stored += 1
                    self.problems.ok("store_spooling", sink.name)
                    log.info("signal stored", plugin=sink.name, direction=signal.direction, bar_time=signal.bar_time.isoformat())
                else:
                    already += 1
                    log.info("signal already stored; not duplicated", plugin=sink.name, bar_time=signal.bar_time.isoformat())
            except SignalSpooled as exc:
                spooled.append(sink.name)
                log.error("sink could not store signal; spooled", plugin=sink.name, error=f"{type(exc).__name__}: {exc}")
                self.problems.failed("store_spooling", sink.name, f"spooled: {exc}")
            except SignalHeld as exc:
                held.append(sink.name)
                log.error("sink could not store or spool signal; held in memory", plugin=sink.name, error=f"{type(exc).__name__}: {exc}")
                self.problems.failed("store_spooling", sink.name, f"held in memory: {exc}")
            except Exception as exc:
                log.error("sink failed to store signal", plugin=sink.name, error=f"{type(exc).__name__}: {exc}")
        signal.timings_ms["sink"] = round(batch_ms + (time.perf_counter() - mark) * 1000, 3)
        self.problems.synthesized(signal)
        self.problems.deliver()
        return Delivery(stored, already, len(spooled), tuple(held), stores, tuple(spooled))

    def last_resort(self, signal: Signal, reason: str) -> None:
        """A signal in no store and no spool: its JSON on stdout (one line), the only copy left."""
        get_logger(symbol=signal.symbol, run_id=self.run_id).error(
            "signal lost: no sink stored or spooled it; its JSON is written to stdout", bar_time=signal.bar_time.isoformat(), reason=reason,
        )
        print(signal.model_dump_json(), flush=True)

    def _settle_spooled(self, outcome: "RunOutcome") -> None:
        """After the sinks closed: a spool that a later write emptied means its signals are stored after all."""
        if not outcome.spooled or not outcome.spooling_sinks:
            return
        waiting = 0
        for sink in self.sinks:
            if sink.name not in outcome.spooling_sinks:
                continue
            if not sink.supports("reader"):
                return  # cannot tell: they count as spooled
            try:
                with sink.reader() as reader:
                    waiting += reader.waiting()
            except Exception as exc:
                get_logger(plugin=sink.name).warning("spool unreadable at close", error=f"{type(exc).__name__}: {exc}")
                return
        outcome.drained(waiting)

    def _settle_held(self, outcome: "RunOutcome") -> None:
        """After the sinks closed: held signals that no holder saved go to stdout and count as lost."""
        if not outcome.held:
            return
        unsaved: dict[str, set[SignalKey]] = {}
        signals: dict[SignalKey, Signal] = {}
        for sink in self.sinks:
            if sink.supports("unsaved"):
                try:
                    left = sink.unsaved()
                except Exception as exc:
                    get_logger(plugin=sink.name).error("unsaved failed", error=f"{type(exc).__name__}: {exc}")
                    continue
                unsaved[sink.name] = {signal_key(s) for s in left}
                signals.update((signal_key(s), s) for s in left)
        for key in outcome.settle(unsaved):
            if key in signals:
                self.last_resort(signals[key], "held in memory by a sink that could not save it at close")
