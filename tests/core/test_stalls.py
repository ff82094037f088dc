"""A slow symbol or a slow context feed delays only itself (#11 point 5): each symbol goes on as soon
as its own data is ready, market context is fetched once per iteration with its own deadline, and
an iteration has a deadline."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import BTC_CSV
from plugin_samples import SamplePlugin
from v7 import Feed, MarketContext, hookimpl
from v7.core.candles import read_candles_csv
from v7.core.config import validate_config
from v7.core.engine import Pipeline
from v7.core.registry import PluginSource, load_registry


HISTORY = read_candles_csv(BTC_CSV, "BTC-USD")


class StallingFeed(Feed):
    """Candles for every symbol, instantly except for those in `slow` (seconds to wait)."""

    name = "stalling"
    live = False
    slow: dict[str, float] = {}
    release = threading.Event()  # set at the end of a test: no thread outlives it for long

    def __init__(self, config=None):
        super().__init__(config)
        self.served: dict[str, int] = {}

    def fetch_candles(self, symbol, granularity, lookback):
        if symbol in self.slow:
            self.release.wait(self.slow[symbol])
        bars = self.served.get(symbol, 0)
        self.served[symbol] = bars + 1
        return HISTORY.slice(bars, bars + lookback)


class SlowContext(Feed):
    """Market context that takes `delay` seconds per call; counts its calls."""

    name = "slow_context"
    live = False
    provides = frozenset({"context"})
    delay = 0.0
    calls: list[str] = []

    def __init__(self, config=None):
        super().__init__(config)
        # This test's list: a context call of an earlier test, still finishing, counts there.
        self.calls = SlowContext.calls

    def fetch_context(self, symbol):
        self.calls.append(symbol)
        StallingFeed.release.wait(self.delay)
        return MarketContext(source=self.name, price=1.0)


class StallPlugins:
    @hookimpl
    def register_feeds(self, register):
        register(StallingFeed)
        register(SlowContext)


@pytest.fixture
def registry():
    registry = load_registry()
    registry.add_plugin(SamplePlugin(), PluginSource("samples", "v7-test-samples", "1.0"))
    registry.add_plugin(StallPlugins(), PluginSource("stalls", "v7-test-stalls", "1.0"))
    StallingFeed.release.clear()
    SlowContext.calls = []
    yield registry
    StallingFeed.release.set()


def pipeline(registry, tmp_path, symbols, context=False, **engine):
    feeds = {"enabled": ["stalling", "slow_context"] if context else ["stalling"], "candles": "stalling"}
    raw = {
        "engine": {"symbols": symbols, "lookback": 100, **engine},
        "feeds": feeds,
        "theories": {"enabled": ["constant"]},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}},
    }
    return Pipeline.build(validate_config(raw, registry), registry)


def timed_run(pipe, **options):
    started = time.monotonic()
    stored: list[tuple[str, float]] = []
    outcome = pipe.run(on_signal=lambda s: stored.append((s.symbol, time.monotonic() - started)), **options)
    return outcome, stored


def test_a_slow_symbol_delays_only_itself(registry, tmp_path):
    StallingFeed.slow = {"SLOW-USD": 2.0}
    pipe = pipeline(registry, tmp_path, ["SLOW-USD", "BTC-USD", "ETH-USD"])
    outcome, stored = timed_run(pipe, iterations=1)
    when = dict(stored)
    assert set(when) == {"SLOW-USD", "BTC-USD", "ETH-USD"}
    # The slow symbol is first in the config; the others were stored without waiting for it.
    assert when["BTC-USD"] < 1.0 and when["ETH-USD"] < 1.0, when
    assert when["SLOW-USD"] >= 1.9
    assert outcome.stored == 3


def test_slow_market_context_is_waited_for_only_until_its_deadline(registry, tmp_path):
    StallingFeed.slow = {}
    SlowContext.delay = 5.0
    pipe = pipeline(registry, tmp_path, ["BTC-USD", "ETH-USD"], context=True, context_timeout_seconds=0.3)
    outcome, stored = timed_run(pipe, iterations=1)
    assert len(stored) == 2 and max(t for _, t in stored) < 2.0, stored
    import sqlite3

    rows = sqlite3.connect(tmp_path / "v7.db").execute("SELECT context, context_error FROM signals").fetchall()
    assert all(context is None and error == "market context not ready within 0.3 s (context_timeout_seconds)" for context, error in rows), rows


def test_market_context_is_fetched_once_per_iteration_and_used_when_in_time(registry, tmp_path):
    StallingFeed.slow = {}
    SlowContext.delay = 0.05
    pipe = pipeline(registry, tmp_path, ["BTC-USD", "ETH-USD"], context=True, context_timeout_seconds=5)
    outcome, stored = timed_run(pipe, iterations=3)
    assert outcome.stored == 6
    assert sorted(SlowContext.calls) == sorted(["BTC-USD", "ETH-USD"] * 3)  # one call per symbol per iteration
    import sqlite3

    rows = sqlite3.connect(tmp_path / "v7.db").execute("SELECT context, context_error FROM signals").fetchall()
    assert all(context is not None and error is None for context, error in rows)


def test_a_symbol_past_the_iteration_deadline_is_carried_over_and_stored_when_done(registry, tmp_path):
    StallingFeed.slow = {"SLOW-USD": 1.5}
    pipe = pipeline(registry, tmp_path, ["SLOW-USD", "BTC-USD"], iteration_timeout_seconds=0.4)
    outcome, stored = timed_run(pipe, iterations=3)
    btc = [t for symbol, t in stored if symbol == "BTC-USD"]
    slow = [t for symbol, t in stored if symbol == "SLOW-USD"]
    # BTC-USD had its three iterations without waiting for SLOW-USD; SLOW-USD, still running in the
    # next iterations, was skipped by them and stored once, when its fetch finished.
    assert len(btc) == 3 and btc[-1] < 1.4, stored
    assert len(slow) == 1 and slow[0] >= 1.4
    assert outcome.produced == 4 and outcome.lost == 0
