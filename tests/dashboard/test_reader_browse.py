"""The reader methods the dashboard browses with: the sqlite sink's indexed queries answer exactly
what the default implementations (here through the jsonl sink's reader) answer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dash_setup import Quiet, sample, store_backtest, write
from v7 import RunInfo, SignalQuery
from v7.plugins.sinks.jsonl import JsonlConfig, JsonlSink
from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink


@pytest.fixture
def readers(tmp_path):
    signals = sample(30)
    db = tmp_path / "v7.db"
    write(db, signals)
    jsonl = JsonlSink(JsonlConfig(path=str(tmp_path / "signals.jsonl"), include_prompt=True))
    jsonl.open(RunInfo(run_id="run0", config_hash="cafe0000cafe0000", v7_version="test", plugin_versions={}), Quiet())
    for signal in signals:
        jsonl.write(signal)
    jsonl.close()
    sqlite_reader, jsonl_reader = SqliteSink(SqliteConfig(path=db)).reader(), jsonl.reader()
    yield sqlite_reader, jsonl_reader
    sqlite_reader.close()
    jsonl_reader.close()


def ids(signals):
    return [s.id for s in signals]


def test_pages_by_id_newest_first_match_the_default(readers):
    sqlite_reader, jsonl_reader = readers
    btc = SignalQuery(symbol="BTC-USD")
    for kwargs in ({}, {"limit": 5}, {"before_id": 10, "limit": 3}, {"after_id": 25}, {"after_id": 3, "limit": 4},
                   {"query": btc, "limit": 4}, {"query": btc, "after_id": 20, "before_id": 28}, {"limit": 0}):
        expected = ids(jsonl_reader.page(**kwargs))
        assert ids(sqlite_reader.page(**kwargs)) == expected, kwargs
    assert ids(sqlite_reader.page(limit=3)) == [30, 29, 28]
    assert ids(sqlite_reader.page(after_id=3, limit=4)) == [7, 6, 5, 4]  # the oldest new ones: a live feed misses none
    assert ids(sqlite_reader.page(btc, before_id=9, limit=10)) == [7, 5, 3, 1]
    assert sqlite_reader.page(limit=1, with_prompt=True)[0].prompt == "prompt 29 <b>bold?</b>"
    assert sqlite_reader.page(limit=1)[0].prompt is None


def test_one_signal_and_the_latest_per_symbol(readers):
    sqlite_reader, jsonl_reader = readers
    one = sqlite_reader.signal(7)
    assert one.id == 7 and one.prompt == "prompt 6 <b>bold?</b>" and one.theory_results[0].theory == "hurst_exponent"
    same = {"symbol", "bar_time", "direction", "confidence", "reasoning", "prompt", "theory_results", "usage"}
    assert one.model_dump(include=same) == jsonl_reader.signal(7).model_dump(include=same)
    assert sqlite_reader.signal(999) is None and jsonl_reader.signal(999) is None
    latest = sqlite_reader.latest_per_symbol()
    assert [(s.symbol, s.id) for s in latest] == [("BTC-USD", 29), ("ETH-USD", 30)]
    assert [(s.symbol, s.id) for s in jsonl_reader.latest_per_symbol()] == [("BTC-USD", 29), ("ETH-USD", 30)]
    assert ids(sqlite_reader.latest_per_symbol(SignalQuery(symbol="ETH-USD"))) == [30]


def test_active_runs_are_the_runs_that_stored_signals_lately(readers, tmp_path):
    sqlite_reader, jsonl_reader = readers
    recently = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert sqlite_reader.active_runs(recently) == jsonl_reader.active_runs(recently) == {"run0"}
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert sqlite_reader.active_runs(later) == jsonl_reader.active_runs(later) == set()


def test_stored_backtests_are_listed_newest_first(tmp_path, backtest_json):
    db = tmp_path / "v7.db"
    with SqliteSink(SqliteConfig(path=db)).reader() as reader:
        assert reader.backtests() == []  # no database yet
    first, second = store_backtest(db, backtest_json), store_backtest(db, backtest_json)
    with SqliteSink(SqliteConfig(path=db)).reader() as reader:
        listed = reader.backtests()
        assert [b.id for b in listed] == [second, first] and [b.id for b in reader.backtests(limit=1)] == [second]
        assert listed[0] == reader.backtest(str(second))
    assert JsonlSink(JsonlConfig(path=str(tmp_path / "x.jsonl"))).reader().backtests() == []
