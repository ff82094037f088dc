"""`[engine] theory_workers`: how many symbols' theories compute at once in a process, while
`symbol_workers` symbols are processed concurrently (their feeds and synthesizer calls overlap)."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import BTC_CSV
from v7 import Feed, Theory, TheoryFinding, hookimpl
from v7.core.candles import read_candles_csv
from v7.core.config import validate_config
from v7.core.engine import Pipeline
from v7.core.registry import PluginSource, load_registry

HISTORY = read_candles_csv(BTC_CSV, "BTC-USD")


class Candles(Feed):
    name = "candles_now"
    live = False

    def fetch_candles(self, symbol, granularity, lookback):
        return HISTORY.slice(0, lookback)


class Counting(Theory):
    """Sleeps a little (the GIL is released) and records how many calls overlap."""

    name = "overlap_counting"
    default_min_candles = 5
    lock = threading.Lock()
    running = 0
    most = 0

    def analyze(self, candles):
        with Counting.lock:
            Counting.running += 1
            Counting.most = max(Counting.most, Counting.running)
        time.sleep(0.02)
        with Counting.lock:
            Counting.running -= 1
        return TheoryFinding(bias=0.1, confidence=0.5, label="x", interpretation="counted")


class Plugins:
    @hookimpl
    def register_feeds(self, register):
        register(Candles)

    @hookimpl
    def register_theories(self, register):
        register(Counting)


@pytest.mark.parametrize("theory_workers", [1, 3])
def test_at_most_theory_workers_symbols_compute_at_once(tmp_path, theory_workers):
    registry = load_registry()
    registry.add_plugin(Plugins(), PluginSource("slots", "v7-test-slots", "1.0"))
    symbols = [f"S{i}-USD" for i in range(12)]
    raw = {
        "engine": {"symbols": symbols, "lookback": 50, "symbol_workers": 4, "theory_workers": theory_workers},
        "feeds": {"enabled": ["candles_now"], "candles": "candles_now"},
        "theories": {"enabled": ["overlap_counting"]},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}},
    }
    Counting.most = Counting.running = 0
    outcome = Pipeline.build(validate_config(raw, registry), registry).run(iterations=1)
    assert outcome.stored == len(symbols)
    assert Counting.most <= theory_workers  # never more
    assert Counting.most > 1 if theory_workers > 1 else Counting.most == 1  # and they do overlap when allowed
