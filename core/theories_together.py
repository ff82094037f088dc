"""Running a bar's theories with one hand-off to a worker thread instead of one per theory.

Handing a call to another thread and back costs 60–130 µs on a small VM, more than some theories
take; `v7.analyze` and every bar of `v7 run` paid it once per theory. Here one worker per calling
thread runs the theories one after the other and wakes the caller once, at the end. The
guarantees of `run_theory` stay: each theory has its own time limit (the caller watches which
theory is running since when), a theory that hangs is abandoned (its answer, if it ever comes, is
dropped; further calls of it answer `error` at once until it returns), and the theories after it
run again in isolation, one worker each, so they are never blocked by it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import weakref
from typing import Any, Sequence

from .components import Theory
from .models import CandleSeries, TheoryResult
from .theory_runner import CallWorker, finding_result, hung_theories, run_theory, timed_out, too_few_candles


class _Job:
    """One call: the theories in order, their answers, and which one runs since when (under `lock`)."""

    def __init__(self, theories: list[Theory], candles: CandleSeries) -> None:
        self.theories, self.candles = theories, candles
        self.answers: list[tuple[bool, Any, float] | None] = [None] * len(theories)
        self.lock = threading.Lock()
        self.current: tuple[int, float] | None = None  # (position, perf_counter at its start)
        self.abandoned = False

    def run(self) -> None:
        for position, theory in enumerate(self.theories):
            with self.lock:
                if self.abandoned:
                    return
                started = time.perf_counter()
                self.current = (position, started)
            try:
                answer: tuple[bool, Any] = (False, theory.analyze(self.candles))
            except BaseException as exc:  # noqa: BLE001 - finding_result says what it means
                answer = (True, exc)
            elapsed = (time.perf_counter() - started) * 1000
            with self.lock:
                if self.abandoned:  # the caller gave up on this theory while it ran: it may serve again
                    hung_theories.discard(theory)
                    return
                self.answers[position] = (*answer, elapsed)
        with self.lock:
            self.current = None


_local = threading.local()


def _worker() -> CallWorker:
    """This thread's worker, in this process: a forked child inherits the thread-local but not the thread."""
    pid, worker = getattr(_local, "worker", (None, None))
    if worker is None or pid != os.getpid():
        worker = CallWorker("theories")
        _local.worker = (os.getpid(), worker)
        weakref.finalize(threading.current_thread(), worker.jobs.put, None)  # ends with its thread
    return worker


def run_theories(theories: Sequence[Theory], candles: CandleSeries, timeout: float) -> list[TheoryResult]:
    """`run_theory` of each theory on the same candles, in order, with one thread hand-off for all."""
    results: list[TheoryResult | None] = [too_few_candles(t, len(candles)) for t in theories]
    todo = [i for i, r in enumerate(results) if r is None]
    worker = _worker()
    if len(todo) < 2 or worker.busy.is_set() or any(theories[i] in hung_theories for i in todo):
        return [r if r is not None else run_theory(t, candles, timeout) for t, r in zip(theories, results)]
    job = _Job([theories[i] for i in todo], candles)
    finished: queue.SimpleQueue[None] = queue.SimpleQueue()
    worker.submit(job.run, finished)
    hung: int | None = None
    submitted = time.perf_counter()
    while True:
        try:
            finished.get(timeout=_until_deadline(job, timeout))
            break
        except queue.Empty:
            pass
        with job.lock:
            current = job.current
            if current is not None and time.perf_counter() - current[1] >= timeout:
                job.abandoned, hung = True, current[0]
                hung_theories.add(job.theories[current[0]])
                break
            if current is None and not any(job.answers) and time.perf_counter() - submitted >= timeout:
                job.abandoned = True  # never started: its worker is gone; every theory runs alone below
                break
    for position, i in enumerate(todo):
        answer = job.answers[position]
        if answer is not None:
            results[i] = finding_result(theories[i], answer[1], answer[2], raised=answer[0])
        elif position == hung:
            results[i] = timed_out(theories[i], timeout, timeout * 1000)
        else:  # after the one that hung: each on its own worker again
            results[i] = run_theory(theories[i], candles, timeout)
    return [r for r in results if r is not None]


def _until_deadline(job: _Job, timeout: float) -> float:
    """Seconds until the running theory's time is up (the whole limit when none has started yet)."""
    with job.lock:
        current = job.current
    if current is None:
        return timeout
    return max(0.001, current[1] + timeout - time.perf_counter())
