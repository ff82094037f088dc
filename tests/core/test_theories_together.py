"""`run_theories`: a bar's theories in one thread hand-off, with every guarantee of `run_theory`."""

from __future__ import annotations

import threading
import time

import numpy as np

from plugin_samples import AbstainingTheory, ConstantTheory, RaisingTheory
from v7 import CandleSeries, Theory, TheoryFinding
from v7.core.theories_together import run_theories
from v7.core.theory_runner import run_theory


def candles(n: int = 50) -> CandleSeries:
    close = 100 + np.cumsum(np.random.default_rng(1).normal(0, 1, n))
    return CandleSeries(
        symbol="BTC-USD", granularity="1h", timestamp=3600 * np.arange(n, dtype=np.int64), open=close, high=close + 1,
        low=close - 1, close=close, volume=np.ones(n),
    )


class Gate(Theory):
    """Blocks until released: a hang the test controls, and a record of which threads ran it."""

    name = "gate"
    default_min_candles = 5

    def __init__(self, config=None):
        super().__init__(config)
        self.release = threading.Event()
        self.calls = 0

    def analyze(self, series):
        self.calls += 1
        self.release.wait(10)
        return TheoryFinding(bias=0.0, confidence=0.5, label="open", interpretation="released")


def test_same_results_as_each_theory_run_alone():
    theories = [ConstantTheory(), RaisingTheory(), AbstainingTheory(), ConstantTheory(ConstantTheory.Config(bias=-0.25))]
    series = candles()
    together = run_theories(theories, series, timeout=5)
    alone = [run_theory(t, series, timeout=5) for t in theories]
    strip = lambda r: r.model_dump(exclude={"elapsed_ms"})  # noqa: E731
    assert [strip(r) for r in together] == [strip(r) for r in alone]
    assert [r.status for r in together] == ["ok", "error", "insufficient_data", "ok"]


def test_too_few_candles_never_reach_a_worker():
    results = run_theories([ConstantTheory(), ConstantTheory()], candles(3), timeout=5)
    assert [r.status for r in results] == ["insufficient_data", "insufficient_data"]


def test_a_hanging_theory_times_out_and_the_ones_after_it_still_answer():
    gate, after = Gate(), ConstantTheory()
    series = candles()
    started = time.perf_counter()
    results = run_theories([ConstantTheory(), gate, after], series, timeout=0.3)
    waited = time.perf_counter() - started
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "timed out after 0.3 s" in results[1].message
    assert waited < 5  # not the gate's 10 s
    # While its abandoned call still runs, the theory answers at once instead of piling up threads.
    again = run_theories([gate, after], series, timeout=0.3)
    assert again[0].status == "error" and "still running" in again[0].message and again[1].status == "ok"
    assert gate.calls == 1
    gate.release.set()
    deadline = time.time() + 5
    while time.time() < deadline:
        if run_theories([gate, after], series, timeout=2)[0].status == "ok":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the released theory never served again")


def test_threads_calling_at_once_each_get_their_own_answers():
    series = candles()
    outcomes: dict[int, list[str]] = {}

    def call(i: int) -> None:
        theory = ConstantTheory(ConstantTheory.Config(bias=i / 10))
        outcomes[i] = [f"{r.status}:{r.bias}" for r in run_theories([theory, RaisingTheory()], series, timeout=5)]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == {i: [f"ok:{i / 10}", "error:None"] for i in range(6)}


def _in_forked_child(queue) -> None:
    results = run_theories([ConstantTheory(), ConstantTheory()], candles(), timeout=5)
    queue.put([r.status for r in results])


def test_a_forked_child_gets_a_worker_of_its_own():
    """A child inherits the parent's thread-local worker but not its thread: it must not wait for it."""
    import multiprocessing

    run_theories([ConstantTheory(), ConstantTheory()], candles(), timeout=5)  # the parent's worker exists
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_in_forked_child, args=(answers,))
    child.start()
    try:
        assert answers.get(timeout=30) == ["ok", "ok"]
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
