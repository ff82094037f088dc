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


class _TheoryWorker:
    """A daemon thread that runs one theory's calls, so a hang can be abandoned without killing anything.

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


# One worker per theory per calling thread: symbols processed in parallel never queue behind
# each other, so a theory's time limit measures its own work only.
_workers = threading.local()


def theory_worker(theory: Theory) -> _TheoryWorker:
    """This thread's worker for `theory` (run_theory and the batch runner share it)."""
    workers = _workers.__dict__.setdefault("by_theory", weakref.WeakKeyDictionary())
    worker = workers.get(theory)
    if worker is None:
        worker = workers[theory] = _TheoryWorker(theory.name)
        weakref.finalize(theory, worker.jobs.put, None)  # the thread ends with its theory
    return worker


def run_theory(theory: Theory, candles: CandleSeries, timeout: float) -> TheoryResult:
    """Run one theory in isolation: an exception, a hang past `timeout` or invalid output becomes an error result."""
    base = {"theory": theory.name, "version": str(theory.version)}
    if len(candles) < theory.min_candles:
        return TheoryResult(
            **base,
            status="insufficient_data",
            message=f"needs {theory.min_candles} candles, got {len(candles)}",
            interpretation=f"Not enough history: {len(candles)} of {theory.min_candles} candles.",
        )
    outcome: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def target() -> tuple[str, Any]:
        try:
            return ("ok", theory.analyze(candles))
        except InsufficientData as exc:
            return ("insufficient_data", str(exc) or "insufficient data")
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything
            return ("error", f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    worker = theory_worker(theory)
    if worker.busy.is_set():
        message = "its previous call timed out and is still running"
        return TheoryResult(**base, status="error", message=message, interpretation=message)
    worker.submit(target, outcome)
    try:
        status, value = outcome.get(timeout=timeout)
    except queue.Empty:
        return TheoryResult(
            **base, status="error", elapsed_ms=(time.perf_counter() - started) * 1000,
            message=f"timed out after {timeout:g} s", interpretation="The theory did not finish in time.",
        )
    elapsed_ms = (time.perf_counter() - started) * 1000
    if status != "ok":
        return TheoryResult(**base, status=status, elapsed_ms=elapsed_ms, message=value, interpretation=value)
    try:
        # Re-validated even when it is a TheoryFinding: a model can be mutated or built unchecked.
        finding = TheoryFinding.model_validate(value.model_dump() if isinstance(value, TheoryFinding) else value)
    except ValidationError as exc:
        message = f"invalid output: {one_line(exc, limit=20)}"
        return TheoryResult(**base, status="error", elapsed_ms=elapsed_ms, message=message, interpretation=message)
    return TheoryResult(**base, status="ok", elapsed_ms=elapsed_ms, **finding.model_dump())
