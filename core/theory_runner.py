"""Running one theory in isolation (time limit, errors, output validation) and capping the numeric thread pools.

The engine and the backtest both run theories through `run_theory`; plugin authors reach it as
`v7.testing.run_theory`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import weakref
from typing import Any

from pydantic import ValidationError

from .components import InsufficientData, Theory
from .errors import one_line
from .models import CandleSeries, TheoryFinding, TheoryResult

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def limit_threads(max_threads: int) -> None:
    """Cap BLAS/OpenMP pools: env vars for libraries not yet loaded, threadpoolctl for loaded ones."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(max_threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=max_threads)
    except Exception:  # threadpoolctl missing or a library it cannot drive: env vars still apply
        pass


class CallWorker:
    """A daemon thread that runs one theory's calls (or, for `run_theories`, a bar's theories in turn),
    so a hang can be abandoned without killing anything.

    Reused from call to call (starting a thread per call costs ~0.5 ms per theory per bar). After a
    time-out the worker is set aside: while its call still runs, the theory answers `error` at once
    instead of piling up one stuck thread per call; once the call ends the worker serves again.
    """

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.busy = threading.Event()
        threading.Thread(target=self._serve, name=f"theory-{name}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            item = self.jobs.get()
            if item is None:
                return
            job, outcome = item
            result = job()
            self.busy.clear()  # before answering, so the next call never finds this worker busy
            outcome.put(result)
            del item, job, result  # holding the finished call would keep its theory (and candles) alive

    def submit(self, job: Any, outcome: "queue.SimpleQueue[Any]") -> None:
        self.busy.set()  # busy from submission until the answer is ready
        self.jobs.put((job, outcome))


_THEORY_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def theory_slots(count: int) -> threading.BoundedSemaphore:
    """This process's `count` slots for computing theories (`[engine] theory_workers`), shared by every pipeline.

    Theories hold the GIL nearly all the time (numpy on 1,000 candles is call overhead, not long
    loops): four symbols computing at once took 35% longer per iteration over 1,000 symbols than
    one at a time, on 2 cores. Feeds and synthesizers (LLM calls) stay concurrent."""
    with _SLOTS_LOCK:
        slots = _THEORY_SLOTS.get(count)
        if slots is None:
            slots = _THEORY_SLOTS[count] = threading.BoundedSemaphore(count)
        return slots


# Theories abandoned after a time-out by `run_theories` while their call still runs: they answer
# `error` at once meanwhile, as a busy worker's theory does here.
hung_theories: "weakref.WeakSet[Theory]" = weakref.WeakSet()

# One worker per theory per calling thread: symbols processed in parallel never queue behind
# each other, so a theory's time limit measures its own work only.
_workers = threading.local()


def theory_worker(theory: Theory) -> CallWorker:
    """This thread's worker for `theory` (run_theory and the batch runner share it)."""
    workers = _workers.__dict__.setdefault("by_theory", weakref.WeakKeyDictionary())
    worker = workers.get(theory)
    if worker is None:
        worker = workers[theory] = CallWorker(theory.name)
        weakref.finalize(theory, worker.jobs.put, None)  # the thread ends with its theory
    return worker


def too_few_candles(theory: Theory, count: int) -> TheoryResult | None:
    """The `insufficient_data` result of a window of `count` candles below `min_candles`; None when enough."""
    if count >= theory.min_candles:
        return None
    return TheoryResult(
        theory=theory.name, version=str(theory.version), status="insufficient_data",
        message=f"needs {theory.min_candles} candles, got {count}",
        interpretation=f"Not enough history: {count} of {theory.min_candles} candles.",
    )


def finding_result(theory: Theory, finding: Any, elapsed_ms: float, raised: bool) -> TheoryResult:
    """What `analyze` (or a batch path) answered for one bar, validated into its result: a finding
    is `ok`; when `raised` (the exception `analyze` raised, or one a batch path answered for a bar),
    an `InsufficientData` abstains and anything else is an error; invalid output is an error."""
    base = {"theory": theory.name, "version": str(theory.version), "elapsed_ms": elapsed_ms}
    if raised:
        status = "insufficient_data" if isinstance(finding, InsufficientData) else "error"
        message = (str(finding) or "insufficient data") if status == "insufficient_data" else f"{type(finding).__name__}: {finding}"
        return TheoryResult(**base, status=status, message=message, interpretation=message)
    try:
        # Re-validated even when it is a TheoryFinding: a model can be mutated or built unchecked. Its
        # field values (`__dict__`) are validated into new objects: 1.5x faster than through model_dump(),
        # and cheaper than `model_construct`, which pydantic runs in Python.
        checked = TheoryFinding.model_validate(finding.__dict__ if isinstance(finding, TheoryFinding) else finding)
    except ValidationError as exc:
        message = f"invalid output: {one_line(exc, limit=20)}"
        return TheoryResult(**base, status="error", message=message, interpretation=message)
    return TheoryResult.model_validate({**base, "status": "ok", **checked.__dict__})


def timed_out(theory: Theory, timeout: float, elapsed_ms: float) -> TheoryResult:
    """The `error` result of a call abandoned after `timeout` seconds."""
    return TheoryResult(
        theory=theory.name, version=str(theory.version), status="error", elapsed_ms=elapsed_ms,
        message=f"timed out after {timeout:g} s", interpretation="The theory did not finish in time.",
    )


def run_theory(theory: Theory, candles: CandleSeries, timeout: float) -> TheoryResult:
    """Run one theory in isolation: an exception, a hang past `timeout` or invalid output becomes an error result."""
    base = {"theory": theory.name, "version": str(theory.version)}
    short = too_few_candles(theory, len(candles))
    if short is not None:
        return short
    outcome: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

    def target() -> tuple[bool, Any]:
        try:
            return False, theory.analyze(candles)
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything; finding_result says what it means
            return True, exc

    started = time.perf_counter()
    worker = theory_worker(theory)
    if worker.busy.is_set() or theory in hung_theories:
        message = "its previous call timed out and is still running"
        return TheoryResult(**base, status="error", message=message, interpretation=message)
    worker.submit(target, outcome)
    try:
        raised, value = outcome.get(timeout=timeout)
    except queue.Empty:
        return timed_out(theory, timeout, (time.perf_counter() - started) * 1000)
    return finding_result(theory, value, (time.perf_counter() - started) * 1000, raised=raised)
