"""The sqlite sink: schema v4 and its migrations from the frozen v1, v2 and v3 schemas, one transaction per
signal, idempotence, clear errors and the spool when the database is locked, full or read-only,
and readers that read while `v7 run` writes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from factory import FAST_THEORIES, LogCapture, make_read_only, make_signal, run_info, write_config
from helpers import approx_tree, run_v7
from v7 import Signal
from v7.plugins.sinks import sqlite as sqlite_sink
from v7.plugins.sinks.sqlite import SCHEMA_VERSION, SqliteConfig, SqliteReader, SqliteSink, SqliteSinkError, open_reader

FIXTURE_V1 = Path(__file__).with_name("schema_v1.sql")
FIXTURE_V2 = Path(__file__).with_name("schema_v2.sql")
FIXTURE_V3 = Path(__file__).with_name("schema_v3.sql")


def open_sink(path: Path, log: LogCapture | None = None, **config) -> SqliteSink:
    sink = SqliteSink(SqliteConfig(path=path, **config))
    sink.open(run_info(), log or LogCapture())
    return sink


def table_rows(db: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple]:
    return db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid").fetchall()


def shape(db: sqlite3.Connection) -> dict:
    """Tables with their columns (name, type, not null, default, pk) and indexes with their columns."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    result = {}
    for table in tables:
        cols = [tuple(r[1:]) for r in db.execute(f"PRAGMA table_info({table})")]
        indexes = sorted(
            (r[1], r[2], tuple(c[2] for c in db.execute(f"PRAGMA index_info({r[1]!r})")))
            for r in db.execute(f"PRAGMA index_list({table})")
        )
        result[table] = (cols, indexes)
    return result


# -- schema and migrations -----------------------------------------------------------------------


def frozen(path: Path, fixture: Path) -> tuple[sqlite3.Connection, dict, dict]:
    """A database at `path` made from a frozen schema dump: the connection, each table's columns and rows."""
    db = sqlite3.connect(path)
    db.executescript(fixture.read_text())
    columns = {table: [c[0] for c in cols] for table, (cols, _) in shape(db).items()}
    return db, columns, {table: table_rows(db, table, cols) for table, cols in columns.items()}


def test_fresh_database_has_the_current_schema(tmp_path):
    sink = open_sink(tmp_path / "v7.db")
    assert sink.write(make_signal(0))
    assert sink._connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    sink.close()
    db = sqlite3.connect(tmp_path / "v7.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(4,)]
    tables = shape(db)
    assert set(tables) == {"schema_version", "migrations", "runs", "signals", "theory_results"}
    signal_columns = [c[0] for c in tables["signals"][0]]
    for column in ("symbol", "bar_time", "created_at", "direction", "confidence", "price", "synthesizer", "reasoning",
                   "fallback_reason", "attempts", "prompt_tokens", "completion_tokens", "cache_hit_tokens",
                   "cache_miss_tokens", "cost", "timings", "sink_ms", "stored_at", "config_hash", "position", "sizing"):
        assert column in signal_columns
    assert [c[0] for c in tables["theory_results"][0]] == [
        "id", "signal_id", "position", "theory", "version", "status", "bias", "confidence", "label",
        "interpretation", "message", "metrics", "elapsed_ms",
    ]
    assert [c[0] for c in tables["runs"][0]] == ["run_id", "config_hash", "config_path", "v7_version", "plugin_versions", "started_at", "stopped_at"]
    indexes = {name: cols for name, _, cols in tables["signals"][1]}
    assert indexes["signals_bar_time"] == ("bar_time",)
    assert indexes["signals_created_at"] == ("created_at",)
    assert indexes["signals_symbol_time"] == ("symbol", "bar_time")
    assert indexes["signals_direction"] == ("direction",)
    unique = [cols for name, is_unique, cols in tables["signals"][1] if is_unique and name.startswith("sqlite_autoindex")]
    assert unique == [("symbol", "granularity", "bar_time", "config_hash")]
    assert db.execute("SELECT count(*) FROM runs WHERE stopped_at IS NOT NULL").fetchone()[0] == 1


def test_v1_database_is_upgraded_in_place_with_every_row_kept(tmp_path):
    path = tmp_path / "v7.db"
    db, v1, before = frozen(path, FIXTURE_V1)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 1
    assert len(before["signals"]) == 3 and len(before["theory_results"]) == 6
    db.close()

    log = LogCapture()
    sink = open_sink(path, log)
    assert ("info", "sqlite schema upgraded") in [(lvl, event) for lvl, event, _ in log.records]
    # The fixture's ETH-USD bar (same key) is not stored again; a new bar is.
    old = before["signals"][1]
    assert old[2] == "ETH-USD"
    duplicate = make_signal(0, symbol="ETH-USD", config_hash=old[13])
    duplicate = duplicate.model_copy(update={"bar_time": duplicate.bar_time.replace(year=2025, month=1, day=6, hour=8)})
    assert sink.write(duplicate) is False
    assert sink.write(make_signal(1)) is True
    sink.close()

    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
    assert db.execute("SELECT version FROM migrations").fetchall() == [(2,), (3,), (4,)]
    for table, cols in v1.items():
        after = table_rows(db, table, cols)
        if table == "runs":
            assert after[0] == before["runs"][0]
        elif table == "schema_version":
            continue
        else:
            assert after[: len(before[table])] == before[table], table
    assert db.execute("SELECT sink_ms, stored_at, position, sizing FROM signals WHERE id <= 3").fetchall() == [(None, None, 0.0, None)] * 3
    assert db.execute("SELECT count(*) FROM signals").fetchone()[0] == 4
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []

    # An upgraded database and a new one have the same schema.
    fresh = tmp_path / "fresh.db"
    open_sink(fresh).close()
    assert shape(db) == shape(sqlite3.connect(fresh))


def test_v2_database_is_upgraded_to_v3_with_positions_kept_and_read_back(tmp_path):
    """A frozen v2 file: every row kept, the old signals flat and unsized, new ones stored with their position."""
    path = tmp_path / "v7.db"
    db, v2, before = frozen(path, FIXTURE_V2)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 2 and len(before["signals"]) == 4
    db.close()

    log = LogCapture()
    sink = open_sink(path, log)
    assert [fields.get("migrations") for _, event, fields in log.records if event == "sqlite schema upgraded"] == [[3, 4]]
    sized = make_signal(1).model_copy(update={"position": -0.125, "sizing": "0.5 Kelly … → -0.125"})
    assert sink.write(sized) is True
    sink.close()

    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
    assert db.execute("SELECT version FROM migrations").fetchall() == [(2,), (3,), (4,)]
    for table, cols in v2.items():
        if table not in ("schema_version", "migrations"):
            assert table_rows(db, table, cols)[: len(before[table])] == before[table], table
    assert db.execute("SELECT position, sizing FROM signals ORDER BY id").fetchall() == [(0.0, None)] * 4 + [(-0.125, "0.5 Kelly … → -0.125")]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    fresh = tmp_path / "fresh.db"
    open_sink(fresh).close()
    assert shape(db) == shape(sqlite3.connect(fresh))

    reader = SqliteReader(path)
    stored = list(reader.signals())
    reader.close()
    assert [s.position for s in stored] == [0.0] * 4 + [-0.125] and stored[-1].sizing.endswith("-0.125") and stored[0].sizing is None



def test_v3_database_gets_the_summary_indexes_with_every_row_kept_and_the_same_summary(tmp_path):
    """v4 adds only indexes (the covering ones `summary()` reads); the figures are the same before and after."""
    from v7 import SignalQuery
    from v7.core.signal_summary import summarize

    path = tmp_path / "v7.db"
    db, v3, before = frozen(path, FIXTURE_V3)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 3 and len(before["signals"]) == 6
    db.close()
    with SqliteReader(path) as reader:  # read without the indexes: the same SQL, sorted instead of read in order
        old = [reader.summary(q) for q in (SignalQuery(), SignalQuery(symbol="ETH-USD"))]

    log = LogCapture()
    open_sink(path, log).close()
    assert [fields.get("migrations") for _, event, fields in log.records if event == "sqlite schema upgraded"] == [[4]]
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
    assert db.execute("SELECT version FROM migrations").fetchall() == [(2,), (3,), (4,)]
    for table, cols in v3.items():
        if table not in ("schema_version", "migrations", "runs"):
            assert table_rows(db, table, cols) == before[table], table
    indexes = {name: cols for name, _, cols in shape(db)["signals"][1]}
    assert indexes["signals_summary"][:4] == ("symbol", "synthesizer", "direction", "created_at")
    assert indexes["signals_sink_ms"] == ("sink_ms", "created_at")
    assert {f"signals_{stage}_ms" for stage in ("feed", "theories", "formatters", "synthesizer")} <= set(indexes)
    assert {name: cols for name, _, cols in shape(db)["theory_results"][1]}["theory_results_elapsed"] == (
        "theory", "status", "elapsed_ms", "signal_id", "position")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    fresh = tmp_path / "fresh.db"
    open_sink(fresh).close()
    assert shape(db) == shape(sqlite3.connect(fresh))

    with SqliteReader(path) as reader:
        new = [reader.summary(q) for q in (SignalQuery(), SignalQuery(symbol="ETH-USD"))]
        python = [summarize(reader, q) for q in (SignalQuery(), SignalQuery(symbol="ETH-USD"))]
    figures = [{k: v for k, v in summary.items() if k not in ("schema_version", "storage")} for summary in new]
    assert figures == [approx_tree({k: v for k, v in summary.items() if k not in ("schema_version", "storage")}) for summary in old]
    assert new == approx_tree(python)  # what the default `summarize` gives, reading every StoredSignal in Python
    assert new[0]["storage"]["runs"] == old[0]["storage"]["runs"] + 1  # the run that migrated it
    assert new[0]["signals"] == 6 and new[0]["latency_ms"]["feed"]["count"] == 5 and new[0]["latency_ms"]["sink"]["max"] == 2.5
    assert new[0]["theories"][0]["last_error"] == "ValueError: no data"


def test_a_v2_file_reads_without_migrating(tmp_path):
    """Readers never migrate: a v2 file reads with every position 0 and no sizing note."""
    path = tmp_path / "v2.db"
    sqlite3.connect(path).executescript(FIXTURE_V2.read_text())
    reader = SqliteReader(path)
    stored = list(reader.signals())
    assert reader.schema_version() == 2
    reader.close()
    assert len(stored) == 4 and {(s.position, s.sizing) for s in stored} == {(0.0, None)}
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0] == 2


def test_migration_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "v7.db"
    sqlite3.connect(path).executescript(FIXTURE_V1.read_text())
    monkeypatch.setitem(sqlite_sink.MIGRATIONS, 2, [*sqlite_sink.MIGRATIONS[2], "THIS IS NOT SQL"])
    with pytest.raises(SqliteSinkError, match=r"sqlite sink: cannot open .*v7\.db.*syntax error"):
        open_sink(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 1
    assert "sink_ms" not in [r[1] for r in db.execute("PRAGMA table_info(signals)")]


def test_newer_or_foreign_databases_are_refused_clearly(tmp_path):
    newer = tmp_path / "newer.db"
    open_sink(newer).close()
    sqlite3.connect(newer, isolation_level=None).execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SqliteSinkError, match=r"sqlite sink: .*newer\.db: database schema version 99 is newer than this V7 understands \(4\)"):
        open_sink(newer)

    # Found while running (another V7 upgraded the file): the signal is kept in the spool, not dropped.
    sink = open_sink(tmp_path / "later.db")
    sqlite3.connect(tmp_path / "later.db", isolation_level=None).execute("UPDATE schema_version SET version = 5")
    sink._disconnect()
    with pytest.raises(SqliteSinkError, match=r"later\.db: database schema version 5 is newer .* spooled to"):
        sink.write(make_signal(0))
    assert len(sink.spool) == 1
    sink.close()

    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign, isolation_level=None).execute("CREATE TABLE notes (x)")
    with pytest.raises(SqliteSinkError, match="foreign.db: .*not a V7 database"):
        open_sink(foreign)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SqliteSinkError, match=r"sqlite sink: cannot open .*garbage\.db: .*not a database"):
        open_sink(garbage)


# -- transactions and idempotence ------------------------------------------------------------


def test_signal_and_its_theory_results_are_one_transaction(tmp_path):
    path = tmp_path / "v7.db"
    sink = open_sink(path)
    assert sink.write(make_signal(0))
    # A trigger refuses the second theory result: the signal row must go too.
    sink._connection.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON theory_results WHEN NEW.theory = 'monte_carlo' AND NEW.signal_id > 1 "
        "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
    )
    with pytest.raises(SqliteSinkError, match="cannot store BTC-USD 2024-03-01T01:00:00Z in .*refused by test trigger"):
        sink.write(make_signal(1))
    assert not sink.spool.exists()  # a refused signal is not retried forever
    sink.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM signals").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM theory_results").fetchone()[0] == 2


def test_same_bar_same_symbol_same_config_is_stored_once(tmp_path):
    sink = open_sink(tmp_path / "v7.db")
    assert sink.write(make_signal(0)) is True
    assert sink.write(make_signal(0, direction="BUY")) is False  # same key: the first answer stays
    assert sink.write(make_signal(0, symbol="ETH-USD")) is True
    assert sink.write(make_signal(0, config_hash="another0config00")) is True
    sink.close()
    sink = open_sink(tmp_path / "v7.db")  # a re-run
    assert sink.write(make_signal(0)) is False
    sink.close()
    db = sqlite3.connect(tmp_path / "v7.db")
    assert db.execute("SELECT symbol, direction, config_hash FROM signals ORDER BY id").fetchall() == [
        ("BTC-USD", "HOLD", "cafe0000cafe0000"), ("ETH-USD", "HOLD", "cafe0000cafe0000"), ("BTC-USD", "HOLD", "another0config00"),
    ]
    assert db.execute("SELECT count(*) FROM theory_results").fetchone()[0] == 6


def test_each_row_records_its_own_sink_latency(tmp_path):
    sink = open_sink(tmp_path / "v7.db")
    for i in range(3):
        assert sink.write(make_signal(i))
    db = sqlite3.connect(tmp_path / "v7.db")
    # Written with the next signal's transaction; the last one at close.
    assert [r[0] is not None for r in db.execute("SELECT sink_ms FROM signals ORDER BY id")] == [True, True, False]
    sink.close()
    latencies = [r[0] for r in db.execute("SELECT sink_ms FROM signals ORDER BY id")]
    assert all(0 < ms < 5000 for ms in latencies)
    timings = json.loads(db.execute("SELECT timings FROM signals WHERE id = 1").fetchone()[0])
    assert timings == {"feed": 1.0, "theories": 2.0, "formatters": 0.1, "synthesizer": 0.2}


# -- failing storage: clear errors, the spool, recovery ----------------------------------------


def count(path: Path) -> int:
    reader = open_reader(path)
    try:
        return reader.execute("SELECT count(*) FROM signals").fetchone()[0]
    finally:
        reader.close()


def test_locked_database_spools_then_stores_each_signal_once(tmp_path):
    path = tmp_path / "v7.db"
    log = LogCapture()
    sink = open_sink(path, log, busy_timeout_ms=50)
    assert sink.write(make_signal(0))
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    for i in (1, 2, 3):
        with pytest.raises(SqliteSinkError) as failure:
            sink.write(make_signal(i))
        message = str(failure.value)
        assert f"sqlite sink: cannot write {path}: database is locked" in message
        assert f"spooled to {path}.spool.jsonl ({i} waiting)" in message
    spooled = [Signal.model_validate_json(line) for line in Path(f"{path}.spool.jsonl").read_text().splitlines()]
    assert [s.price for s in spooled] == [101.0, 102.0, 103.0]
    assert count(path) == 1  # readers still read while the lock is held (WAL)
    locker.execute("ROLLBACK")
    assert sink.write(make_signal(4)) is True
    assert not Path(f"{path}.spool.jsonl").exists()
    replayed = [fields for _, event, fields in log.records if event == "spooled signals stored"]
    assert [(f["stored"], f["already_stored"]) for f in replayed] == [(3, 0)]
    sink.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT price FROM signals ORDER BY bar_time").fetchall() == [(100.0,), (101.0,), (102.0,), (103.0,), (104.0,)]
    assert db.execute("SELECT count(*) FROM theory_results").fetchone()[0] == 10


def test_full_disk_spools_then_recovers(tmp_path, monkeypatch):
    """A full disk is simulated with PRAGMA max_page_count: SQLite then fails exactly as on ENOSPC (SQLITE_FULL)."""
    path = tmp_path / "v7.db"
    full = {"on": False}
    real_connect = sqlite_sink.schema.connect

    def connect(db_path, busy_timeout_ms=5000):
        connection = real_connect(db_path, busy_timeout_ms)
        if full["on"]:
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {pages}")
        return connection

    monkeypatch.setattr(sqlite_sink.schema, "connect", connect)
    sink = open_sink(path)
    assert sink.write(make_signal(0))
    full["on"] = True
    sink._disconnect()  # the next write reconnects, into the "full" database
    big = "x" * 20_000  # more than the free pages of the file
    for i in (1, 2):
        with pytest.raises(SqliteSinkError, match=r"cannot write .*v7\.db: the disk is full .*SQLITE_FULL.*spooled to"):
            sink.write(make_signal(i, reasoning=big))
    assert len(sink.spool) == 2
    full["on"] = False
    assert sink.write(make_signal(3)) is True
    sink.close()
    assert count(path) == 4
    assert not sink.spool.exists()


def test_spool_is_stored_at_the_next_open_and_never_twice(tmp_path):
    path = tmp_path / "v7.db"
    log = LogCapture()
    sink = open_sink(path, log, busy_timeout_ms=50)
    assert sink.write(make_signal(0))
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    for i in (1, 2):
        with pytest.raises(SqliteSinkError):
            sink.write(make_signal(i))
    sink.close()
    assert "sqlite sink closes with signals not yet in the database; they are stored at the next open" in log.events("error")
    locker.execute("ROLLBACK")
    # A crash between storing the spool and removing it leaves signals that are already stored in
    # it; and an append torn by a crash leaves half a line. Neither may give a duplicate.
    with open(f"{path}.spool.jsonl", "a") as spool:
        spool.write(make_signal(0).model_dump_json() + "\n")
        spool.write(make_signal(9).model_dump_json()[:50])
    log = LogCapture()
    sink = open_sink(path, log)
    replayed = [fields for _, event, fields in log.records if event == "spooled signals stored"]
    assert [(f["stored"], f["already_stored"]) for f in replayed] == [(2, 1)]
    assert not sink.spool.exists()
    sink.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT price FROM signals ORDER BY bar_time").fetchall() == [(100.0,), (101.0,), (102.0,)]
    # stored_at tells a spooled signal from one stored at once
    assert all(r[0] >= r[1] for r in db.execute("SELECT stored_at, created_at FROM signals"))


def test_locked_at_open_is_not_fatal(tmp_path):
    path = tmp_path / "v7.db"
    open_sink(path).close()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    log = LogCapture()
    sink = open_sink(path, log, busy_timeout_ms=50)
    assert "sqlite sink cannot write its database; signals are spooled until it can" in log.events("error")
    with pytest.raises(SqliteSinkError, match="database is locked"):
        sink.write(make_signal(0))
    locker.execute("ROLLBACK")
    assert sink.write(make_signal(1))
    sink.close()
    assert count(path) == 2


def test_unwritable_spool_keeps_signals_in_memory(tmp_path):
    path = tmp_path / "v7.db"
    sink = open_sink(path, busy_timeout_ms=50)
    Path(f"{path}.spool.jsonl").mkdir()  # the spool cannot be created
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(SqliteSinkError, match=r"could not be spooled to .* and is held in memory \(1 waiting\)"):
        sink.write(make_signal(0))
    locker.execute("ROLLBACK")
    assert sink.write(make_signal(1))
    sink.close()
    assert count(path) == 2


def test_nothing_is_lost_when_a_spooled_signal_is_refused(tmp_path):
    path = tmp_path / "v7.db"
    sink = open_sink(path, busy_timeout_ms=50)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    for i in (0, 1):
        with pytest.raises(SqliteSinkError):
            sink.write(make_signal(i))
    locker.execute("ROLLBACK")
    locker.execute("CREATE TRIGGER refuse BEFORE INSERT ON signals WHEN NEW.price = 100.0 BEGIN SELECT RAISE(ABORT, 'refused'); END")
    assert sink.write(make_signal(2))
    sink.close()
    assert count(path) == 2
    rejected = Path(f"{path}.spool.rejected.jsonl").read_text().splitlines()
    assert [Signal.model_validate_json(line).price for line in rejected] == [100.0]


# -- a real read-only file, and readers during a run ---------------------------------------------


def test_read_only_database_file_spools_and_recovers(tmp_path):
    write_config(tmp_path, theories=FAST_THEORIES)
    first = run_v7("run", "--config", "config.toml", "--iterations", "2", "--symbols", "BTC-USD", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    db_path = tmp_path / "v7.db"
    undo = make_read_only(db_path)
    try:
        read_only = run_v7("--log-json", "run", "--config", "config.toml", "--iterations", "4", cwd=tmp_path)
    finally:
        undo()
    assert read_only.returncode == 3, read_only.stderr  # 3: signals wait in the spool, not in the store
    assert "8 signal(s) produced, 0 stored, 0 already stored, 8 spooled, 0 lost." in read_only.stderr
    lines = [json.loads(line) for line in read_only.stderr.splitlines() if line.startswith("{")]
    assert any(line["event"] == "sqlite sink cannot write its database; signals are spooled until it can" for line in lines)
    failures = [line for line in lines if line["event"] == "sink could not store signal; spooled"]
    # 4 iterations × 2 symbols: all wait in the spool (the 2 BTC-USD bars stored before are
    # recognised as such only once the database can be written again).
    assert len(failures) == 8
    assert all(line["plugin"] == "sqlite" for line in failures)
    assert all(f"sqlite sink: cannot write {db_path}: the database is read-only" in line["error"] for line in failures), failures[0]
    assert not [line for line in lines if line["event"] == "signal stored"]
    assert len(Path(f"{db_path}.spool.jsonl").read_text().splitlines()) == 8

    again = run_v7("--log-json", "run", "--config", "config.toml", "--iterations", "1", "--symbols", "BTC-USD", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    replayed = [json.loads(line) for line in again.stderr.splitlines() if '"spooled signals stored"' in line]
    assert [(r["stored"], r["already_stored"]) for r in replayed] == [(6, 2)]
    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT symbol, bar_time, count(*) FROM signals GROUP BY symbol, bar_time").fetchall()
    assert len(rows) == 8 and all(r[2] == 1 for r in rows)  # 4 bars × 2 symbols, each once
    assert not Path(f"{db_path}.spool.jsonl").exists()


def test_readers_read_while_v7_run_writes(tmp_path):
    write_config(tmp_path, theories=FAST_THEORIES)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "v7.core.cli", "--log-json", "run", "--config", "config.toml"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    stored: list[str] = []
    reader_thread = threading.Thread(target=lambda: [stored.append(line) for line in process.stderr if '"signal stored"' in line])
    reader_thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(stored) < 20:
            assert time.monotonic() < deadline and process.poll() is None, "the run stored nothing"
            time.sleep(0.05)
        reader = open_reader(tmp_path / "v7.db", timeout_s=0.1)  # no waiting allowed: a reader never waits for the writer

        def wait_for(condition) -> None:
            deadline = time.monotonic() + 30
            while not condition():
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.02)

        def count() -> int:
            return reader.execute("SELECT count(*) FROM signals").fetchone()[0]

        seen = [count()]
        while len(seen) < 5:  # each read sees the latest commit, and the count only grows
            wait_for(lambda: count() > seen[-1])
            seen.append(count())
        assert seen == sorted(seen)
        # A long read transaction sees one snapshot and does not hold the writer back.
        reader.execute("BEGIN")
        snapshot = reader.execute("SELECT count(*) FROM signals").fetchone()[0]
        logged = len(stored)
        wait_for(lambda: len(stored) > logged + 10)
        assert reader.execute("SELECT count(*) FROM signals").fetchone()[0] == snapshot
        reader.execute("COMMIT")
        whole = reader.execute(
            "SELECT count(*) FROM signals s WHERE NOT EXISTS (SELECT 1 FROM theory_results t WHERE t.signal_id = s.id)"
        ).fetchone()[0]
        assert whole == 0
        reader.close()
        stats = run_v7("stats", "--config", "config.toml", "--json", cwd=tmp_path)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["signals"] >= 20
    finally:
        # SIGKILL, not SIGTERM: the stop is not what this test is about (test_kill.py covers kills).
        process.kill()
        process.wait(timeout=60)
        reader_thread.join(timeout=10)
    db = sqlite3.connect(tmp_path / "v7.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Every logged signal is there; at most one more was committed before its log line got out.
    assert len(stored) <= db.execute("SELECT count(*) FROM signals").fetchone()[0] <= len(stored) + 1


# -- spool lines that cannot be read, and signals held only in memory at close --------------------


def foreign_line(index: int) -> str:
    """A signal as another V7 version writes it: one field this Signal (extra="forbid") does not know."""
    data = json.loads(make_signal(index).model_dump_json())
    data["regime"] = "calm"
    return json.dumps(data)


def test_unreadable_spool_lines_are_moved_aside_and_logged_never_dropped(tmp_path):
    path = tmp_path / "v7.db"
    open_sink(path).close()
    spool = Path(f"{path}.spool.jsonl")
    # Only a last line with no newline after it can be an append torn by a crash; every other line
    # that is not a valid Signal, the complete last one included, is kept for a person to look at.
    unreadable = [foreign_line(1), '{"symbol": "ETH-', foreign_line(3)]
    spool.write_text("\n".join([
        make_signal(0).model_dump_json(), unreadable[0], unreadable[1], make_signal(2).model_dump_json(), unreadable[2],
    ]) + "\n")
    log = LogCapture()
    sink = open_sink(path, log)
    sink.close()
    assert count(path) == 2
    assert not spool.exists()
    rejected = Path(f"{path}.spool.rejected.jsonl")
    assert rejected.read_text().splitlines() == unreadable
    errors = [fields for level, event, fields in log.records if level == "error" and event.startswith("sqlite sink cannot read a spooled signal")]
    assert [f["line"] for f in errors] == [2, 3, 5]
    assert all(f["sink"] == "sqlite" and f["spool"] == str(spool) and f["rejected"] == str(rejected) and f["path"] == str(path) for f in errors)
    assert "regime: Extra inputs are not permitted" in errors[0]["error"]
    assert "Invalid JSON" in errors[1]["error"]
    assert log.events("warning") == []
    replayed = [fields for _, event, fields in log.records if event == "spooled signals stored"]
    assert [(f["stored"], f["already_stored"]) for f in replayed] == [(2, 0)]


def test_only_a_torn_last_spool_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "v7.db"
    open_sink(path).close()
    spool = Path(f"{path}.spool.jsonl")
    spool.write_text(make_signal(0).model_dump_json() + "\n" + make_signal(1).model_dump_json()[:50])
    log = LogCapture()
    open_sink(path, log).close()
    assert count(path) == 1
    assert not spool.exists()
    assert not Path(f"{path}.spool.rejected.jsonl").exists()
    warnings = [(event, fields) for level, event, fields in log.records if level == "warning"]
    assert len(warnings) == 1
    event, fields = warnings[0]
    assert event == "sqlite sink dropped the torn last line of its spool (an append cut short by a crash)"
    assert fields["line"] == 2 and fields["sink"] == "sqlite" and "Invalid JSON" in fields["error"]
    assert [e for e in log.events("error") if "spool" in e] == []


def test_spool_rewritten_after_a_failure_keeps_only_readable_signals(tmp_path):
    spool = sqlite_sink.Spool(tmp_path / "v7.db.spool.jsonl")
    lines = [make_signal(i).model_dump_json() for i in range(3)]
    foreign = foreign_line(5)
    spool.path.write_text(f"{foreign}\n{lines[0]}\n{lines[1]}\n{lines[2][:40]}")
    stored: list[float] = []
    reports: list[tuple] = []

    def store(signal: Signal) -> bool:
        if signal.price == 101.0:
            raise sqlite3.OperationalError("database is locked")
        stored.append(signal.price)
        return True

    def refuse(line, exc):
        raise AssertionError("no signal is refused by the database here")

    with pytest.raises(sqlite3.OperationalError):
        spool.replay(store, refuse, lambda *report: reports.append(report))
    assert stored == [100.0]
    assert [(number, torn) for number, _, _, torn in reports] == [(1, False), (4, True)]
    assert spool.path.read_text() == lines[1] + "\n"  # the torn bytes are gone, not turned into a line
    assert spool.rejected_path.read_text() == foreign + "\n"
    reports.clear()
    stored.clear()
    assert spool.replay(lambda signal: stored.append(signal.price) or True, refuse, lambda *report: reports.append(report)) == (1, 0)
    assert stored == [101.0] and reports == []
    assert not spool.path.exists()
    assert spool.rejected_path.read_text() == foreign + "\n"  # set aside once


def test_spool_is_kept_whole_when_its_unreadable_lines_cannot_be_set_aside(tmp_path):
    path = tmp_path / "v7.db"
    open_sink(path).close()
    spool = Path(f"{path}.spool.jsonl")
    content = f"{foreign_line(1)}\n{make_signal(2).model_dump_json()}\n"
    spool.write_text(content)
    Path(f"{path}.spool.rejected.jsonl").mkdir()  # the rejected file cannot be written
    log = LogCapture()
    open_sink(path, log).close()
    assert spool.read_text() == content
    assert "sqlite sink could not store its spooled signals yet" in log.events("error")
    assert not any(e.startswith("sqlite sink cannot read a spooled signal") for e in log.events("error"))


def fail_spool_append(monkeypatch, times: int) -> None:
    """The spool cannot be written `times` times (e.g. ENOSPC), then it can."""
    real_append = sqlite_sink.Spool.append
    left = {"n": times}

    def append(self, signal):
        if left["n"] > 0:
            left["n"] -= 1
            raise OSError(28, "No space left on device")
        return real_append(self, signal)

    monkeypatch.setattr(sqlite_sink.Spool, "append", append)


def hold_in_memory(sink: SqliteSink, path: Path, monkeypatch, indexes, spool_failures: int) -> sqlite3.Connection:
    """Lock the database, fail the spool: the signals at `indexes` are held in memory only."""
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    fail_spool_append(monkeypatch, spool_failures)
    for n, i in enumerate(indexes, 1):
        with pytest.raises(SqliteSinkError, match=rf"held in memory \({n} waiting\)"):
            sink.write(make_signal(i))
    assert len(sink._unspooled) == len(indexes)
    return locker


def test_signals_held_in_memory_are_stored_in_the_database_at_close(tmp_path, monkeypatch):
    path = tmp_path / "v7.db"
    log = LogCapture()
    sink = open_sink(path, log, busy_timeout_ms=50)
    assert sink.write(make_signal(0))
    locker = hold_in_memory(sink, path, monkeypatch, [1], spool_failures=1)
    locker.execute("ROLLBACK")
    sink.close()
    assert count(path) == 2
    assert not sink.spool.exists()
    assert log.events("error") == []
    replayed = [fields for _, event, fields in log.records if event == "spooled signals stored"]
    assert [(f["stored"], f["already_stored"]) for f in replayed] == [(1, 0)]
    db = sqlite3.connect(path)
    assert db.execute("SELECT stopped_at IS NOT NULL FROM runs").fetchall() == [(1,)]


def test_signals_held_in_memory_are_spooled_at_close_when_the_database_still_fails(tmp_path, monkeypatch):
    path = tmp_path / "v7.db"
    log = LogCapture()
    sink = open_sink(path, log, busy_timeout_ms=50)
    assert sink.write(make_signal(0))
    locker = hold_in_memory(sink, path, monkeypatch, [1, 2], spool_failures=2)
    sink.close()  # the database is still locked; the spool can be written again
    assert [Signal.model_validate_json(line).price for line in sink.spool.path.read_text().splitlines()] == [101.0, 102.0]
    closing = [fields for level, event, fields in log.records
               if level == "error" and event == "sqlite sink closes with signals not yet in the database; they are stored at the next open"]
    assert [f["waiting"] for f in closing] == [2]
    assert not any("without saving" in event for event in log.events("error"))
    locker.execute("ROLLBACK")
    open_sink(path).close()  # and they are stored at the next open, as the log said
    assert count(path) == 3
    assert not sink.spool.exists()


def test_a_signal_that_cannot_be_saved_at_close_is_logged_with_its_key(tmp_path, monkeypatch):
    path = tmp_path / "v7.db"
    log = LogCapture()
    sink = open_sink(path, log, busy_timeout_ms=50)
    locker = hold_in_memory(sink, path, monkeypatch, [1, 2], spool_failures=10**6)
    sink.close()
    locker.execute("ROLLBACK")
    lost = [fields for level, event, fields in log.records if level == "error" and "closes without saving a signal" in event]
    assert [(f["symbol"], f["bar_time"]) for f in lost] == [("BTC-USD", "2024-03-01T01:00:00Z"), ("BTC-USD", "2024-03-01T02:00:00Z")]
    assert all(f["sink"] == "sqlite" and "No space left on device" in f["error"] for f in lost)
    # the log line holds the signal itself: it can be put back into the spool by hand
    kept = [Signal.model_validate_json(f["signal"]) for f in lost]
    assert [(s.price, s.bar_time, s.reasoning) for s in kept] == [(m.price, m.bar_time, m.reasoning) for m in (make_signal(1), make_signal(2))]
    assert count(path) == 0
