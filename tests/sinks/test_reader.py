"""The reader capability of the built-in sinks: `SqliteSink.reader()` / `reader_at()`, `JsonlSink.reader()`."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from factory import LogCapture, make_signal, run_info, usage
from v7 import MarketContext, NotSupported, SignalQuery, SignalReader, Sink, StoredBacktest, StoredSignal
from v7.plugins.sinks.jsonl import JsonlConfig, JsonlReader, JsonlSink
from v7.plugins.sinks.sqlite import SCHEMA_VERSION, SqliteConfig, SqliteReader, SqliteSink, SqliteSinkError

FIXTURE_V1 = Path(__file__).with_name("schema_v1.sql")


def signals(count: int = 3):
    context = MarketContext(source="coingecko", price=101.0, market_cap_rank=1, fetched_at=datetime(2024, 3, 1, tzinfo=timezone.utc))
    return [
        make_signal(i, symbol="BTC-USD" if i % 2 == 0 else "ETH-USD", usage=usage(100, 10, 60, 40, 0.001) if i == 1 else None,
                    context=context if i == 0 else None, context_error=None if i == 0 else "no context feed", prompt=f"prompt {i}")
        for i in range(count)
    ]


def test_both_sinks_declare_the_reader_capability():
    assert SqliteSink.supports("reader") and JsonlSink.supports("reader")
    assert not Sink.supports("reader")


def test_sqlite_reader_gives_back_what_was_written(tmp_path):
    sink = SqliteSink(SqliteConfig(path=tmp_path / "v7.db"))
    sink.open(run_info(), LogCapture())
    written = signals()
    for signal in written:
        assert sink.write(signal)
    sink.close()
    with sink.reader() as reader:
        assert isinstance(reader, SignalReader) and reader.location == str((tmp_path / "v7.db").resolve())
        stored = list(reader.signals())
        with_prompt = list(reader.signals(with_prompt=True))
        assert reader.schema_version() == SCHEMA_VERSION
        assert reader.waiting() == 0
        runs = reader.runs()
    assert [s.id for s in stored] == [1, 2, 3] and all(isinstance(s, StoredSignal) for s in stored)
    for original, back in zip(written, stored):
        assert back.stored_at is not None and back.sink_ms is not None and back.sink_ms >= 0
        assert back.prompt is None
        same = back.model_dump(exclude={"id", "stored_at", "sink_ms", "prompt", "created_at", "bar_time"})
        assert same == original.model_dump(exclude={"prompt", "created_at", "bar_time"})
        assert back.bar_time == original.bar_time and abs(back.created_at - original.created_at) < timedelta(seconds=1)
    assert [s.prompt for s in with_prompt] == ["prompt 0", "prompt 1", "prompt 2"]
    assert stored[0].context.market_cap_rank == 1 and stored[1].usage.cache_hit_tokens == 60 and stored[2].usage is None
    assert [r.run_id for r in runs] == ["run0"] and runs[0].stopped_at is not None and runs[0].plugin_versions == {"sink:sqlite": "2.0"}
    with SqliteSink.reader_at(str(tmp_path / "v7.db")) as reader:
        assert [s.symbol for s in reader.signals(SignalQuery(symbol="ETH-USD"))] == ["ETH-USD"]
        future = datetime.now(timezone.utc) + timedelta(hours=1)
        assert list(reader.signals(SignalQuery(created_since=future))) == [] and reader.runs(future) == []


def test_sqlite_reader_counts_the_sinks_spool_and_reads_a_v1_database(tmp_path):
    sink = SqliteSink(SqliteConfig(path=tmp_path / "v7.db"))
    sink.spool.append(make_signal(0))
    sink.spool.append(make_signal(1))
    with pytest.raises(SqliteSinkError, match="no database at"):
        sink.reader().signals()  # nothing stored yet: the error comes on the first read, naming the path
    reader = sink.reader()
    assert reader.waiting() == 2 and reader.spool.path == sink.spool.path
    path = tmp_path / "old.db"
    sqlite3.connect(path).executescript(FIXTURE_V1.read_text())
    with SqliteSink.reader_at(str(path)) as old:
        stored = list(old.signals())
        assert old.schema_version() == 1 and len(stored) == 3
        assert all(s.stored_at is None and s.sink_ms is None for s in stored)
        assert sum(len(s.theory_results) for s in stored) == 6
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0] == 1


def backtest_record(config_hash: str = "beef0000beef0000", **fields) -> StoredBacktest:
    values = dict(
        created_at=datetime(2024, 5, 1, tzinfo=timezone.utc), config_hash=config_hash, config_path="config.toml",
        v7_version="test", granularity="1h", symbols=["BTC-USD", "ETH-USD"],
        range_start=datetime(2024, 1, 1, tzinfo=timezone.utc), range_end=datetime(2024, 3, 1, tzinfo=timezone.utc),
        bars=1440, settings={"horizon": 24, "step": 1}, result_json=json.dumps({"id": None, "bars": 1440}),
    )
    values.update(fields)
    return StoredBacktest(**values)


def test_backtests_are_kept_beside_the_signals_in_a_database_v7_run_accepts(tmp_path):
    path = tmp_path / "new" / "v7.db"
    reader = SqliteSink.reader_at(str(path))
    assert reader.backtest("1") is None  # no database yet
    first = reader.save_backtest(backtest_record())
    second = reader.save_backtest(backtest_record(created_at=datetime(2024, 5, 2, tzinfo=timezone.utc)))
    other = reader.save_backtest(backtest_record("abcd0000abcd0000"))
    assert (first, second, other) == (1, 2, 3)
    loaded = reader.backtest("1")
    assert loaded.id == 1 and loaded.symbols == ["BTC-USD", "ETH-USD"] and loaded.settings == {"horizon": 24, "step": 1}
    assert json.loads(loaded.result_json) == {"id": 1, "bars": 1440}  # the result names its id
    assert reader.backtest("beef").id == 2  # the latest with that config hash prefix
    assert reader.backtest("abcd").id == 3 and reader.backtest("ffff") is None and reader.backtest("99") is None
    assert reader.schema_version() == SCHEMA_VERSION
    reader.close()
    # The database a backtest made is one the sink writes into.
    sink = SqliteSink(SqliteConfig(path=path))
    sink.open(run_info(), LogCapture())
    assert sink.write(make_signal(0))
    sink.close()
    with sink.reader() as again:
        assert len(list(again.signals())) == 1 and again.backtest("1").bars == 1440


def test_jsonl_reader_reads_the_file_and_refuses_stdout(tmp_path):
    sink = JsonlSink(JsonlConfig(path=str(tmp_path / "signals.jsonl"), include_prompt=True))
    sink.open(run_info(), LogCapture())
    for signal in signals():
        assert sink.write(signal)
    sink.close()
    with (tmp_path / "signals.jsonl").open("a") as handle:
        handle.write('{"not": "a signal"}\n{"torn": ')
    with sink.reader() as reader:
        assert isinstance(reader, JsonlReader)
        stored = list(reader.signals())
        assert [s.id for s in stored] == [1, 2, 3] and [s.prompt for s in stored] == [None, None, None]
        assert [s.prompt for s in reader.signals(with_prompt=True)] == ["prompt 0", "prompt 1", "prompt 2"]
        assert [s.id for s in reader.signals(SignalQuery(symbol="ETH-USD"))] == [2]
        assert reader.waiting() == 0 and reader.runs() == [] and reader.schema_version() is None
        summary = reader.summary()
        assert summary["signals"] == 3 and summary["llm"]["signals_with_usage"] == 1
        with pytest.raises(NotSupported):
            reader.save_backtest(backtest_record())
    assert stored[0].theory_results == signals()[0].theory_results
    with pytest.raises(NotSupported, match="stdout"):
        JsonlSink(JsonlConfig(path="-")).reader()
    with pytest.raises(Exception, match="no signals file at"):
        JsonlSink.reader_at(str(tmp_path / "missing.jsonl")).signals()
