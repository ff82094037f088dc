"""The batch path contract (`Theory.analyze_batch`): used by backtests when a theory has one, equal to the
bar-by-bar path, and a batch that fails, hangs or miscounts costs speed, never results."""

from __future__ import annotations

import time

import pytest
import structlog

from backtest_setup import make_config
from v7 import InsufficientData, Theory, TheoryFinding, hookimpl
from v7.core.backtest import run_backtest
from v7.core.batch_runner import run_theory_batch
from v7.core.registry import PluginSource, load_registry
from v7.testing import assert_batch_matches

CALLS: dict[str, int] = {}


class MeanReversion(Theory):
    """The last close's distance from the window's mean, in units of the window's range; abstains on a flat window."""

    name = "mean_distance"
    version = "1.0"
    default_min_candles = 10

    def analyze(self, candles):
        CALLS["analyze"] = CALLS.get("analyze", 0) + 1
        return self._finding(candles.close)

    @staticmethod
    def _finding(closes):
        span = float(closes.max() - closes.min())
        if span == 0:
            raise InsufficientData("flat window")
        distance = float((closes[-1] - closes.mean()) / span)
        return TheoryFinding(bias=max(-1.0, min(1.0, -distance)), confidence=min(1.0, abs(distance)),
                             label="stretched" if abs(distance) > 0.25 else "near", interpretation="Distance from the mean.",
                             metrics={"distance": distance, "n": float(closes.shape[0])})

    def analyze_batch(self, history, ends, lookback):
        """Running sums for the mean; the range per window (cheap enough here)."""
        import numpy as np

        CALLS["batch"] = CALLS.get("batch", 0) + 1
        closes = history.close
        sums = np.concatenate([[0.0], np.cumsum(closes)])
        out = []
        for t in ends:
            first = max(0, t + 1 - lookback)
            window = closes[first:t + 1]
            span = float(window.max() - window.min())
            if span == 0:
                out.append(InsufficientData("flat window"))
                continue
            mean = (sums[t + 1] - sums[first]) / (t + 1 - first)
            distance = float((closes[t] - mean) / span)
            out.append(TheoryFinding(bias=max(-1.0, min(1.0, -distance)), confidence=min(1.0, abs(distance)),
                                     label="stretched" if abs(distance) > 0.25 else "near", interpretation="Distance from the mean.",
                                     metrics={"distance": distance, "n": float(t + 1 - first)}))
        return out


class WithoutBatch(MeanReversion):
    name = "mean_distance_slow"

    analyze_batch = Theory.analyze_batch  # the base class's "not supported": bar by bar


class BrokenBatch(MeanReversion):
    name = "mean_distance_broken"

    def analyze_batch(self, history, ends, lookback):
        raise RuntimeError("bug in the fast path")


class ShortBatch(MeanReversion):
    name = "mean_distance_short"

    def analyze_batch(self, history, ends, lookback):
        return super().analyze_batch(history, ends, lookback)[:-1]


class HangingBatch(MeanReversion):
    name = "mean_distance_hanging"

    def analyze_batch(self, history, ends, lookback):
        time.sleep(5)
        return super().analyze_batch(history, ends, lookback)


class Plugin:
    @hookimpl
    def register_theories(self, register):
        for cls in (MeanReversion, WithoutBatch, BrokenBatch, ShortBatch, HangingBatch):
            register(cls)


@pytest.fixture(scope="module")
def batch_registry():
    return load_registry([(Plugin(), PluginSource("batch-test-plugins", "v7-batch-tests", "1.0"))])


def test_the_example_batch_path_matches_bar_by_bar(btc):
    assert assert_batch_matches(MeanReversion(), btc, range(0, len(btc)), 50) == len(btc)


def test_a_backtest_uses_the_batch_path_and_gives_the_same_signals(batch_registry, btc):
    fast_config = make_config(batch_registry, theories=["mean_distance"], backtest={"step": 1})
    slow_config = make_config(batch_registry, theories=["mean_distance_slow"], backtest={"step": 1})
    CALLS.clear()
    fast = run_backtest(fast_config, batch_registry, histories={"BTC-USD": btc})
    assert CALLS.get("batch", 0) >= 1 and CALLS.get("analyze", 0) == 0  # no bar went through analyze
    CALLS.clear()
    slow = run_backtest(slow_config, batch_registry, histories={"BTC-USD": btc})
    assert CALLS.get("batch", 0) == 0 and CALLS["analyze"] == slow.result.bars
    pairs = list(zip(fast.signals["BTC-USD"], slow.signals["BTC-USD"]))
    assert len(pairs) == fast.result.bars > 100
    for a, b in pairs:  # running sums round differently: equal to 1e-9, labels and directions exactly
        assert (a.direction, a.theories[0].label, a.theories[0].status) == (b.direction, b.theories[0].label, b.theories[0].status)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-9) and a.theories[0].bias == pytest.approx(b.theories[0].bias, abs=1e-9)


@pytest.mark.parametrize("name", ["mean_distance_broken", "mean_distance_short"])
def test_a_failing_batch_path_falls_back_to_bar_by_bar(batch_registry, btc, name):
    config = make_config(batch_registry, theories=[name], backtest={"step": 5})
    reference = make_config(batch_registry, theories=["mean_distance_slow"], backtest={"step": 5})
    with structlog.testing.capture_logs() as events:
        run = run_backtest(config, batch_registry, histories={"BTC-USD": btc})
    assert any(e["event"] == "batch path failed; computing bar by bar" and e["theory"] == name for e in events)
    expected = run_backtest(reference, batch_registry, histories={"BTC-USD": btc})
    assert [s.theories[0].bias for s in run.signals["BTC-USD"]] == [s.theories[0].bias for s in expected.signals["BTC-USD"]]
    assert all(s.theories[0].status == "ok" for s in run.signals["BTC-USD"])


def test_a_hanging_batch_path_times_out_for_the_whole_batch(btc):
    theory = HangingBatch()
    started = time.monotonic()
    results = run_theory_batch(theory, btc, [100, 101, 102], lookback=50, timeout=0.2)
    assert time.monotonic() - started < 4  # 3 bars × 0.2 s for the batch, then bar by bar: never the 5 s sleep
    assert len(results) == 3 and {r.theory for r in results} == {"mean_distance_hanging"}


def test_min_candles_and_insufficient_data_are_per_bar(btc):
    import dataclasses

    import numpy as np

    flat = dataclasses.replace(btc, close=np.full(len(btc), 100.0), open=np.full(len(btc), 100.0),
                               high=np.full(len(btc), 100.0), low=np.full(len(btc), 100.0))
    results = run_theory_batch(MeanReversion(), flat, [3, 20], lookback=50, timeout=5)
    assert results[0].status == "insufficient_data" and "needs 10 candles, got 4" in results[0].message
    assert results[1].status == "insufficient_data" and results[1].message == "flat window"
    ok = run_theory_batch(MeanReversion(), btc, [60, 61], lookback=50, timeout=5)
    assert [r.status for r in ok] == ["ok", "ok"] and all(r.elapsed_ms >= 0 for r in ok)
