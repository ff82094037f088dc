"""The engine: theory isolation, config order everywhere, fallback, and sinks that fail alone."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from plugin_samples import SamplePlugin
from v7 import Feed, Sink, Synthesizer, hookimpl
from v7.testing import collect_signals
from v7.core.candles import read_candles_csv
from v7.core.config import validate_config
from v7.core.engine import Pipeline, run_theory
from v7.core.registry import PluginSource, load_registry
from helpers import BTC_CSV


def one_signal(pipeline, symbol):
    """One symbol through feeds, theories, formatters and synthesizer, as one iteration of `v7 run` does."""
    return pipeline.evaluate(symbol, pipeline.fetch(symbol))


class FailingSynthesizer(Synthesizer):
    name = "failing"

    def synthesize(self, request):
        raise ConnectionError("upstream is down")


class BrokenSink(Sink):
    name = "broken"

    def write(self, signal):
        raise OSError("disk on fire")


class MorePlugins:
    @hookimpl
    def register_synthesizers(self, register):
        register(FailingSynthesizer)

    @hookimpl
    def register_sinks(self, register):
        register(BrokenSink)


@pytest.fixture(scope="module")
def registry():
    registry = load_registry()
    registry.add_plugin(SamplePlugin(), PluginSource("samples", "v7-test-samples", "1.0"))
    registry.add_plugin(MorePlugins(), PluginSource("more", "v7-test-more", "1.0"))
    return registry


@pytest.fixture(scope="module")
def candles():
    return read_candles_csv(BTC_CSV, "BTC-USD").tail(400)


def pipeline_for(registry, tmp_path, theories, **sections):
    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": 400, "theory_timeout_seconds": 1.0},
        "theories": {"enabled": theories},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}},
        **sections,
    }
    return Pipeline.build(validate_config(raw, registry), registry)


@pytest.mark.parametrize(
    "name, status, message",
    [
        ("raising", "error", "ZeroDivisionError: boom in analyze"),
        ("hanging", "error", "timed out after 1 s"),
        ("invalid", "error", "invalid output: bias"),
        ("not_a_finding", "error", "invalid output"),
        ("abstaining", "insufficient_data", "series is flat"),
    ],
)
def test_a_misbehaving_theory_becomes_an_error_result(registry, tmp_path, candles, name, status, message):
    pipeline = pipeline_for(registry, tmp_path, ["constant", name])
    signal = one_signal(pipeline, "BTC-USD")
    assert signal is not None  # produced from the others
    assert [r.theory for r in signal.theory_results] == ["constant", name]
    failed = signal.theory_results[1]
    assert failed.status == status
    assert message in failed.message
    assert signal.theory_results[0].ok
    assert signal.direction == "BUY"  # the constant theory's +0.5 still counts


def test_too_few_candles_is_insufficient_data_not_a_guess(registry, candles):
    theory = registry.get("theory", "constant").cls()
    result = run_theory(theory, candles.tail(3), timeout=5)
    assert result.status == "insufficient_data"
    assert "needs 5 candles, got 3" in result.message
    assert result.bias is None


def test_config_order_is_the_order_everywhere(registry, tmp_path):
    orders = (["kalman_filter", "monte_carlo", "hurst_exponent"], ["hurst_exponent", "kalman_filter", "monte_carlo"])
    for index, order in enumerate(orders):
        pipeline = pipeline_for(registry, tmp_path / str(index), order)
        signals = collect_signals(pipeline, iterations=1)
        assert [r.theory for r in signals[0].theory_results] == order
        prompt = signals[0].prompt
        positions = [prompt.index(f"### {name}") for name in order]
        assert positions == sorted(positions)
        db = sqlite3.connect(tmp_path / str(index) / "v7.db")
        stored = [row[0] for row in db.execute("SELECT theory FROM theory_results ORDER BY position")]
        assert stored == order


def test_a_theory_not_listed_does_not_run(registry, tmp_path):
    signal = one_signal(pipeline_for(registry, tmp_path, ["monte_carlo"]), "BTC-USD")
    assert [r.theory for r in signal.theory_results] == ["monte_carlo"]


def test_fallback_synthesizer_records_why(registry, tmp_path):
    pipeline = pipeline_for(registry, tmp_path, ["constant"], synthesizer={"use": "failing", "fallback": "consensus"})
    signal = one_signal(pipeline, "BTC-USD")
    assert signal.synthesizer == "consensus"
    assert signal.fallback_reason == "ConnectionError: upstream is down"


def test_one_failing_sink_does_not_stop_the_others(registry, tmp_path, capsys):
    from v7.core.logs import configure_logging

    configure_logging("info", json_lines=True)
    pipeline = pipeline_for(registry, tmp_path, ["constant"], sinks={"enabled": ["broken", "sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}})
    signals = collect_signals(pipeline, iterations=2)
    assert len(signals) == 2
    rows = sqlite3.connect(tmp_path / "v7.db").execute("SELECT count(*) FROM signals").fetchone()[0]
    assert rows == 2
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    failures = [line for line in lines if line["event"] == "sink failed to store signal"]
    assert len(failures) == 2 and failures[0]["plugin"] == "broken" and "disk on fire" in failures[0]["error"]


def test_same_bar_same_config_is_stored_once(registry, tmp_path):
    first = collect_signals(pipeline_for(registry, tmp_path, ["constant"]), iterations=2)
    second = collect_signals(pipeline_for(registry, tmp_path, ["constant"]), iterations=2)
    assert [s.bar_time for s in first] == [s.bar_time for s in second]
    db = sqlite3.connect(tmp_path / "v7.db")
    assert db.execute("SELECT count(*) FROM signals").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM theory_results").fetchone()[0] == 2


def test_replay_steps_one_bar_per_iteration(registry, tmp_path):
    signals = collect_signals(pipeline_for(registry, tmp_path, ["constant"]), iterations=3)
    times = [int(s.bar_time.timestamp()) for s in signals]
    assert [b - a for a, b in zip(times, times[1:])] == [3600, 3600]
    assert all(s.theory_results[0].metrics["bars"] == 400 for s in signals)


class SlowFeed(Feed):
    """A feed that waits on a 'network' for each symbol: the engine must not wait serially."""

    name = "slow"
    live = False
    calls: list[float] = []

    history = None

    def fetch_candles(self, symbol, granularity, lookback):
        time.sleep(0.2)
        SlowFeed.calls.append(time.monotonic())
        return SlowFeed.history.tail(lookback)


class SlowFeedPlugin:
    @hookimpl
    def register_feeds(self, register):
        register(SlowFeed)


def test_fifty_symbols_fetch_concurrently_not_serially(registry, tmp_path):
    registry.add_plugin(SlowFeedPlugin(), PluginSource("slow", "v7-test-slow", "1.0"))
    symbols = [f"S{i:02d}-USD" for i in range(50)]
    raw = {
        "engine": {"symbols": symbols, "lookback": 100, "fetch_workers": 50},
        "feeds": {"enabled": ["slow"]},
        "theories": {"enabled": ["constant"]},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}},
    }
    SlowFeed.history = read_candles_csv(BTC_CSV, "BTC-USD")
    pipeline = Pipeline.build(validate_config(raw, registry), registry)
    started = time.monotonic()
    signals = collect_signals(pipeline, iterations=1)
    elapsed = time.monotonic() - started
    assert sorted(s.symbol for s in signals) == symbols  # stored as each is ready: a slow symbol delays only itself
    assert max(SlowFeed.calls) - min(SlowFeed.calls) < 1.0  # all 50 answered within one "round trip" or so
    assert elapsed < 50 * 0.2 / 4, elapsed  # serial fetching would take 10 s


def test_a_theory_that_keeps_hanging_does_not_pile_up_threads(registry, candles):
    import threading

    theory = registry.get("theory", "hanging").cls()
    before = threading.active_count()
    first = run_theory(theory, candles, timeout=0.2)
    assert first.status == "error" and "timed out" in first.message
    for _ in range(5):
        again = run_theory(theory, candles, timeout=0.2)
        assert again.status == "error" and "previous call timed out and is still running" in again.message
    assert threading.active_count() <= before + 1


def test_a_formatter_returning_nonsense_loses_only_its_part(registry, tmp_path):
    from v7 import PromptFormatter

    class NoneFormatter(PromptFormatter):
        name = "returns_none"

        def format(self, request, prompt, theories):
            return None

    class Plugin:
        @hookimpl
        def register_formatters(self, register):
            register(NoneFormatter)

    registry.add_plugin(Plugin(), PluginSource("none-fmt", "v7-test-none", "1.0"))
    pipeline = pipeline_for(registry, tmp_path, ["constant"], formatters={"enabled": ["markdown", "returns_none"]})
    signal = one_signal(pipeline, "BTC-USD")
    assert signal is not None and "### constant" in signal.prompt


def test_a_replay_that_yields_nothing_stops_instead_of_spinning(registry, tmp_path):
    (tmp_path / "candles").mkdir()
    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": 100},
        "feeds": {"enabled": ["replay"], "replay": {"path": str(tmp_path / "candles")}},
        "theories": {"enabled": ["constant"]},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}},
    }
    pipeline = Pipeline.build(validate_config(raw, registry), registry)
    started = time.monotonic()
    assert collect_signals(pipeline) == []  # no --iterations: it must end by itself
    assert time.monotonic() - started < 10


class BlockingLiveFeed(Feed):
    """A live feed stuck in a long backoff until it is closed, as a rate-limited client can be."""

    name = "blocking_live"
    live = True

    def __init__(self, config=None):
        super().__init__(config)
        import threading

        self.closed = threading.Event()
        self.first = True

    def fetch_candles(self, symbol, granularity, lookback):
        if self.first:
            self.first = False
            return SlowFeed.history.tail(lookback)
        if self.closed.wait(120):
            raise ConnectionError("feed closed while waiting to retry")
        return None

    def close(self):
        self.closed.set()


class BlockingPlugin:
    @hookimpl
    def register_feeds(self, register):
        register(BlockingLiveFeed)


def test_a_stop_request_interrupts_a_live_feed_waiting_in_backoff(registry, tmp_path):
    import threading

    registry.add_plugin(BlockingPlugin(), PluginSource("blocking", "v7-test-blocking", "1.0"))
    SlowFeed.history = read_candles_csv(BTC_CSV, "BTC-USD")
    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": 100, "interval_seconds": 0.1},
        "feeds": {"enabled": ["blocking_live"]},
        "theories": {"enabled": ["constant"]},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}},
    }
    pipeline = Pipeline.build(validate_config(raw, registry), registry)
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()
    signals = collect_signals(pipeline, stop=stop)
    assert len(signals) == 1  # the first iteration's signal was stored
    assert time.monotonic() - started < 10  # not the feed's 120 s wait


def test_replay_refuses_data_of_another_granularity(registry, tmp_path):
    raw = {
        "engine": {"symbols": ["BTC-USD"], "granularity": "1d", "lookback": 100},
        "theories": {"enabled": ["constant"]},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / "v7.db")}},
    }
    pipeline = Pipeline.build(validate_config(raw, registry), registry)
    assert collect_signals(pipeline) == []  # skipped with a clear log line, then stopped: nothing mislabelled
    with pytest.raises(ValueError, match="3600 s apart, but engine.granularity is '1d'"):
        pipeline.feeds["replay"].fetch_candles("BTC-USD", "1d", 100)


def test_a_run_keeps_no_signal_in_memory(registry, tmp_path):
    """Memory stays flat over a long run: once the sinks and `on_signal` have seen a signal, nothing holds it."""
    import gc
    import weakref

    pipeline = pipeline_for(registry, tmp_path, ["constant"])
    seen: list[weakref.ref] = []
    outcome = pipeline.run(iterations=20, on_signal=lambda signal: seen.append(weakref.ref(signal)))
    gc.collect()
    assert outcome.produced == len(seen) == 20 * len(pipeline.config.engine.symbols)
    assert outcome.stored == outcome.produced and outcome.lost == 0 and outcome.spooled == 0
    alive = [ref for ref in seen if ref() is not None]
    assert not alive, f"{len(alive)} signal(s) still referenced after the run"


def test_memory_stays_flat_over_a_run(registry, tmp_path):
    """The slope of traced memory after warm-up: far under 500 bytes per signal (50 MB per 100,000;
    `benchmarks/long_run_memory.py` runs the long one). Keeping each signal costs ~4 KB even with one theory."""
    import gc
    import tracemalloc

    pipeline = pipeline_for(registry, tmp_path, ["constant"])
    samples: dict[int, int] = {}
    count = 0

    def sample(_signal) -> None:
        nonlocal count
        count += 1
        if count in (200, 700):
            gc.collect()
            samples[count] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        pipeline.run(iterations=700, on_signal=sample)
    finally:
        tracemalloc.stop()
    per_signal = (samples[700] - samples[200]) / 500
    assert per_signal < 500, f"memory grows {per_signal:.0f} bytes per signal"


class Forwarder(Sink):
    """Forwards only (as notifications do): records what it was handed, in the order sinks were called."""

    stores = False
    name = "forwarder"

    def __init__(self, calls):
        self.calls = calls

    def write(self, signal):
        self.calls.append(("forwarder", signal.bar_time))
        return True


class Answering(Sink):
    """A store that answers `new` (or raises `fail`) and records its turn."""

    name = "answering"

    def __init__(self, calls, new=True, fail=None):
        self.calls, self.new, self.fail = calls, new, fail

    def write(self, signal):
        self.calls.append(("store", signal.bar_time))
        if self.fail:
            raise self.fail
        return self.new


@pytest.mark.parametrize("stores, forwarded", [
    ([{"new": True}], True),
    ([{"new": False}], False),  # the one store had it: a re-run
    ([{"new": False}, {"new": False}], False),
    ([{"new": False}, {"new": True}], True),  # new to one store
    ([{"fail": OSError("disk on fire")}, {"new": False}], True),  # a store that failed never had it
    ([], True),  # no store: nothing says it was sent before
])
def test_forwarding_sinks_come_after_the_stores_and_skip_what_every_store_had(registry, tmp_path, stores, forwarded):
    pipeline = pipeline_for(registry, tmp_path, ["constant"])
    signal = one_signal(pipeline, "BTC-USD")
    calls: list = []
    pipeline.sinks = [Forwarder(calls), *(Answering(calls, **s) for s in stores)]
    pipeline.store(signal)
    assert [who for who, _ in calls] == ["store"] * len(stores) + (["forwarder"] if forwarded else [])
