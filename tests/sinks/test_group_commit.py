"""Signals that finish together are stored together: `Sink.write_many`, one transaction for all, all or none,
and the run's fallback to `write` one by one when a batch fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import structlog

from factory import LogCapture, make_signal, run_info
from v7 import Sink, hookimpl
from v7.core.config import validate_config
from v7.core.engine import Pipeline
from v7.core.registry import PluginSource, load_registry
from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

ROW = "SELECT symbol, bar_time, direction, confidence, price, synthesizer, reasoning, config_hash, timings, position FROM signals ORDER BY bar_time, symbol"
RESULTS = "SELECT s.bar_time, r.position, r.theory, r.status, r.bias, r.metrics FROM theory_results r JOIN signals s ON s.id = r.signal_id ORDER BY 1, 2"


def open_sink(path: Path) -> SqliteSink:
    sink = SqliteSink(SqliteConfig(path=path))
    sink.open(run_info(), LogCapture())
    return sink


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_a_batch_stores_what_one_by_one_would_and_answers_for_each(tmp_path):
    signals = [make_signal(i, symbol=symbol) for i in range(4) for symbol in ("BTC-USD", "ETH-USD")]
    alone = open_sink(tmp_path / "alone.db")
    assert [alone.write(s) for s in signals[:3]] + [alone.write(s) for s in signals] == [True] * 3 + [False] * 3 + [True] * 5
    alone.close()
    together = open_sink(tmp_path / "together.db")
    assert together.write_many(signals[:3]) == [True] * 3
    assert together.write_many(signals) == [False] * 3 + [True] * 5  # already stored ones answer False, as `write` does
    together.close()
    for sql in (ROW, RESULTS):
        assert rows(tmp_path / "together.db", sql) == rows(tmp_path / "alone.db", sql) != []
    # every signal's row says how long its commit took (the batch's), written by the next transaction or at close
    assert rows(tmp_path / "together.db", "SELECT count(*) FROM signals WHERE sink_ms IS NULL OR sink_ms < 0") == [(0,)]


def test_a_batch_that_fails_midway_stores_none_of_its_signals(tmp_path, monkeypatch):
    sink = open_sink(tmp_path / "v7.db")
    sink.write(make_signal(0))
    original = SqliteSink._insert_one
    calls = []

    def third_fails(self, connection, signal):
        calls.append(signal.symbol)
        if len(calls) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return original(self, connection, signal)

    monkeypatch.setattr(SqliteSink, "_insert_one", third_fails)
    with pytest.raises(sqlite3.OperationalError):
        sink.write_many([make_signal(i, symbol="ETH-USD") for i in range(1, 5)])
    monkeypatch.setattr(SqliteSink, "_insert_one", original)
    assert rows(tmp_path / "v7.db", "SELECT count(*) FROM signals") == [(1,)]
    assert sink.write_many([make_signal(i, symbol="ETH-USD") for i in range(1, 5)]) == [True] * 4  # a fresh connection after the failure
    sink.close()
    assert rows(tmp_path / "v7.db", "SELECT count(*) FROM signals") == [(5,)]


class Batching(Sink):
    """Stores in memory; its batches fail when `fail_batches` is set."""

    name = "batching"
    fail_batches = False
    batches: list[int] = []
    stored: list[str] = []

    def write(self, signal):
        Batching.stored.append(signal.symbol)
        return True

    def write_many(self, signals):
        if Batching.fail_batches:
            raise OSError("the batch did not fit")
        Batching.batches.append(len(signals))
        Batching.stored.extend(s.symbol for s in signals)
        return [True] * len(signals)


class OneByOne(Sink):
    name = "one_by_one"
    stored: list[str] = []

    def write(self, signal):
        OneByOne.stored.append(signal.symbol)
        return True


class Sinks:
    @hookimpl
    def register_sinks(self, register):
        register(Batching)
        register(OneByOne)


@pytest.fixture
def pipeline(tmp_path):
    registry = load_registry()
    registry.add_plugin(Sinks(), PluginSource("batching", "v7-test-batching", "1.0"))
    Batching.batches, Batching.stored, OneByOne.stored, Batching.fail_batches = [], [], [], False
    raw = {"engine": {"symbols": ["BTC-USD"]}, "sinks": {"enabled": ["batching", "one_by_one"]}}
    built = Pipeline.build(validate_config(raw, registry), registry)
    built.open()
    yield built
    built.close()


@pytest.mark.parametrize("fail", [False, True])
def test_the_run_stores_signals_together_where_a_sink_can_and_one_by_one_when_its_batch_fails(pipeline, fail):
    Batching.fail_batches = fail
    signals = [make_signal(i, symbol=f"S{i}-USD") for i in range(5)]
    with structlog.testing.capture_logs() as events:
        deliveries = pipeline.store_many(signals)
    assert [(d.stored, d.sinks) for d in deliveries] == [(2, 2)] * 5  # each signal counted as stored by both sinks
    assert Batching.stored == OneByOne.stored == [s.symbol for s in signals]
    assert Batching.batches == ([] if fail else [5])
    warned = [e for e in events if e["event"] == "sink could not store signals together; storing them one by one"]
    assert (len(warned), warned[0]["plugin"] if warned else None) == ((1, "batching") if fail else (0, None))
    assert all(s.timings_ms["sink"] >= 0 for s in signals)
