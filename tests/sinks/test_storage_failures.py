"""Storage failures a run must not swallow (#11 points 1-3 and 10): a database deleted while written,
a stale WAL, read-only media, a full disk until the stop, and the exit status that says so."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from factory import FAST_THEORIES, LogCapture, make_read_only, make_signal, run_info, write_config
from helpers import run_v7
from v7 import Signal, SignalHeld, SignalSpooled
from v7.core.cli import cli
from v7.plugins.sinks import sqlite as sqlite_sink
from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink, SqliteSinkError


def open_sink(path: Path, log: LogCapture | None = None, **config) -> SqliteSink:
    sink = SqliteSink(SqliteConfig(path=path, **config))
    sink.open(run_info(), log or LogCapture())
    return sink


def prices(path: Path) -> list[float]:
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT price FROM signals ORDER BY bar_time")]
    finally:
        db.close()


# -- 1. the database file deleted or replaced while the sink writes ------------------------------


def test_a_database_deleted_while_open_is_noticed_spooled_saved_and_recreated(tmp_path):
    path = tmp_path / "v7.db"
    log = LogCapture()
    sink = open_sink(path, log)
    assert sink.write(make_signal(0)) and sink.write(make_signal(1))
    os.unlink(path)  # SQLite would go on committing into the unlinked file
    with pytest.raises(SignalSpooled, match=r"the database file .*v7\.db was deleted while open; what it held is saved in"):
        sink.write(make_signal(2))
    assert [Signal.model_validate_json(line).price for line in sink.spool.path.read_text().splitlines()] == [102.0]
    saved = list(tmp_path.glob("v7.db.deleted-*.db"))
    assert len(saved) == 1 and prices(saved[0]) == [100.0, 101.0]  # the deleted file's signals are not gone with it
    assert oct(saved[0].stat().st_mode & 0o777) == "0o600"
    assert sink.write(make_signal(3))  # the database is recreated at the path; the spooled signal goes in first
    sink.close()
    assert prices(path) == [102.0, 103.0]
    assert not sink.spool.exists()
    changed = [fields for level, event, fields in log.records if event == "sqlite database file changed under the sink; it is recreated at the next write"]
    assert [f["problem"] for f in changed] == ["was deleted while open"] and changed[0]["saved"] == str(saved[0])


def test_a_database_replaced_while_open_is_not_written_through_the_old_file(tmp_path):
    path = tmp_path / "v7.db"
    sink = open_sink(path)
    assert sink.write(make_signal(0))
    os.replace(path, tmp_path / "moved.db")
    other = open_sink(path)  # someone else creates a new database at the path
    other.close()
    with pytest.raises(SignalSpooled, match="was replaced by another file while open"):
        sink.write(make_signal(1))
    assert sink.write(make_signal(2))
    sink.close()
    assert prices(path) == [101.0, 102.0]
    # moved without its -wal: the WAL left at the path held its last commit and was set aside, not discarded
    assert len(list(tmp_path.glob("v7.db-wal.stale-*"))) == 1


def test_every_signal_logged_as_stored_is_in_the_file_at_the_path_when_it_is_deleted_mid_run(tmp_path, capsys):
    """A real pipeline: the database is deleted after the third signal; each 'signal stored' line names a
    bar found at the configured path at the end (or in the copy saved from the deleted file)."""
    from v7.core.config import validate_config
    from v7.core.engine import Pipeline
    from v7.core.logs import configure_logging
    from v7.testing import registry_with

    configure_logging("info", json_lines=True)
    path = tmp_path / "v7.db"
    seen = []

    def delete_after_third(signal: Signal) -> None:
        seen.append(signal)
        if len(seen) == 3:
            os.unlink(path)

    registry = registry_with(installed=True)
    raw = {"engine": {"symbols": ["BTC-USD"]}, "theories": {"enabled": FAST_THEORIES},
           "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(path)}}}
    outcome = Pipeline.build(validate_config(raw, registry), registry).run(iterations=6, on_signal=delete_after_third)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    logged = [line["bar_time"] for line in lines if line["event"] == "signal stored"]
    saved = list(tmp_path.glob("v7.db.deleted-*.db"))
    assert len(saved) == 1

    def bars(db_path: Path) -> set[str]:
        db = sqlite3.connect(db_path)
        return {row[0] for row in db.execute("SELECT bar_time FROM signals")}

    at_path = bars(path)
    assert len(at_path) == 3 and len(bars(saved[0])) == 3
    stored_after = [bar for bar in logged[3:]]
    assert len(stored_after) == 2 and all(bar.replace("+00:00", "Z") in at_path for bar in stored_after)
    # The fourth signal was spooled, then stored by the next write into the recreated database:
    # the closing count says stored, not "waits in a spool".
    assert (outcome.produced, outcome.stored, outcome.spooled, outcome.lost) == (6, 6, 0, 0)
    assert not (tmp_path / "v7.db.spool.jsonl").exists() or not (tmp_path / "v7.db.spool.jsonl").read_text().strip()


def test_a_stale_wal_of_a_deleted_database_is_moved_aside_never_discarded(tmp_path):
    path = tmp_path / "v7.db"
    wal = tmp_path / "v7.db-wal"
    wal.write_bytes(b"WAL frames of a database that was deleted")
    (tmp_path / "v7.db-shm").write_bytes(b"\0" * 32)
    log = LogCapture()
    sink = open_sink(path, log)
    assert sink.write(make_signal(0))
    sink.close()
    moved = list(tmp_path.glob("v7.db-wal.stale-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"WAL frames of a database that was deleted"
    errors = [fields for level, event, fields in log.records if level == "error" and event.startswith("sqlite database missing but its WAL")]
    assert [f["moved_to"] for f in errors] == [str(moved[0])]
    assert prices(path) == [100.0]


# -- 2. read-only media ------------------------------------------------------------------------


def test_a_read_only_database_and_spool_stop_the_run_at_startup(tmp_path):
    write_config(tmp_path, theories=FAST_THEORIES, sinks='[sinks]\nenabled = ["sqlite"]\n[sinks.sqlite]\npath = "data/v7.db"\n')
    first = run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "data"
    undo = make_read_only(folder / "v7.db", folder)
    try:
        result = run_v7("run", "--config", "config.toml", "--iterations", "2", cwd=tmp_path)
        stats = run_v7("stats", "--config", "config.toml", cwd=tmp_path)  # reads a WAL database on read-only media
        export = run_v7("export", "--config", "config.toml", "--format", "jsonl", "--out", str(tmp_path / "out.jsonl"), cwd=tmp_path)
    finally:
        undo()
    assert result.returncode == 2, result.stderr
    assert "cannot write its spool" in result.stderr and str(folder / "v7.db.spool.jsonl") in result.stderr
    assert "spool_dir" in result.stderr and "signal(s) produced" not in result.stderr
    assert stats.returncode == 0, stats.stderr
    assert "2 signal" in stats.stdout or "2 signals" in stats.stdout, stats.stdout
    assert export.returncode == 0, export.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_a_configured_spool_dir_keeps_signals_when_the_database_media_is_read_only(tmp_path):
    write_config(tmp_path, theories=FAST_THEORIES,
                 sinks='[sinks]\nenabled = ["sqlite"]\n[sinks.sqlite]\npath = "data/v7.db"\nspool_dir = "elsewhere"\n')
    first = run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "data"
    undo = make_read_only(folder / "v7.db", folder)
    try:
        result = run_v7("run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path)
    finally:
        undo()
    assert result.returncode == 3, result.stderr  # spooled, not stored
    assert "6 signal(s) produced, 0 stored, 0 already stored, 6 spooled, 0 lost." in result.stderr
    spools = list((tmp_path / "elsewhere").glob("v7.db-*.spool.jsonl"))
    assert len(spools) == 1 and len(spools[0].read_text().splitlines()) == 6
    again = run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    db = sqlite3.connect(folder / "v7.db")
    assert db.execute("SELECT count(*), count(DISTINCT symbol || bar_time) FROM signals").fetchone() == (6, 6)
    assert not spools[0].exists()


# -- 3. disk full until the stop, and 10. the exit status ----------------------------------------


def fail_spools(monkeypatch, only: str | None = None) -> None:
    """Every spool append fails with ENOSPC (or only appends to paths containing `only`)."""
    real_append = sqlite_sink.Spool.append

    def append(self, signal):
        if only is None or only in str(self.path):
            raise OSError(28, "No space left on device")
        return real_append(self, signal)

    monkeypatch.setattr(sqlite_sink.Spool, "append", append)


def locked(path: Path) -> sqlite3.Connection:
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


def run_cli(tmp_path: Path, *args: str):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner().invoke(cli, ["--log-json", "run", "--config", "config.toml", *args])
    finally:
        os.chdir(cwd)


def test_a_full_disk_until_the_stop_puts_the_signals_on_stdout_and_exits_4(tmp_path, monkeypatch):
    write_config(tmp_path, theories=FAST_THEORIES, sinks='[sinks]\nenabled = ["sqlite"]\n[sinks.sqlite]\npath = "v7.db"\nbusy_timeout_ms = 20\n')
    open_sink(tmp_path / "v7.db").close()
    locker = locked(tmp_path / "v7.db")  # the database cannot take them, and no spool can be written
    fail_spools(monkeypatch)
    try:
        result = run_cli(tmp_path, "--iterations", "2")
    finally:
        locker.execute("ROLLBACK")
    assert result.exit_code == 4, result.stderr
    assert "4 signal(s) produced, 0 stored, 0 already stored, 0 spooled, 4 lost." in result.stderr
    kept = [Signal.model_validate_json(line) for line in result.stdout.splitlines()]
    assert sorted((s.symbol, s.bar_time.isoformat()) for s in kept) == sorted(
        (line["symbol"], line["bar_time"]) for line in map(json.loads, filter(lambda l: l.startswith("{"), result.stderr.splitlines()))
        if line["event"] == "signal lost: no sink stored or spooled it; its JSON is written to stdout"
    )
    assert len(kept) == 4


def test_a_full_disk_with_a_second_spool_location_spools_there_and_exits_3(tmp_path, monkeypatch):
    write_config(tmp_path, theories=FAST_THEORIES,
                 sinks='[sinks]\nenabled = ["sqlite"]\n[sinks.sqlite]\npath = "v7.db"\nbusy_timeout_ms = 20\nspool_dir = "second"\n')
    open_sink(tmp_path / "v7.db").close()
    locker = locked(tmp_path / "v7.db")
    fail_spools(monkeypatch, only="v7.db.spool.jsonl")  # the spool beside the database: full
    try:
        result = run_cli(tmp_path, "--iterations", "2")
    finally:
        locker.execute("ROLLBACK")
    assert result.exit_code == 3, result.stderr
    assert "4 signal(s) produced, 0 stored, 0 already stored, 4 spooled, 0 lost." in result.stderr
    assert result.stdout == ""
    (spool,) = (tmp_path / "second").glob("*.spool.jsonl")
    assert len(spool.read_text().splitlines()) == 4


def test_signals_held_in_memory_and_saved_at_close_are_not_counted_lost(tmp_path, monkeypatch):
    """The spool fails only while the run writes; at close it can be written again: spooled, exit 3."""
    write_config(tmp_path, theories=FAST_THEORIES, sinks='[sinks]\nenabled = ["sqlite"]\n[sinks.sqlite]\npath = "v7.db"\nbusy_timeout_ms = 20\n')
    open_sink(tmp_path / "v7.db").close()
    locker = locked(tmp_path / "v7.db")
    real_append = sqlite_sink.Spool.append
    real_close = SqliteSink.close

    def append(self, signal):
        raise OSError(28, "No space left on device")

    def close(self):
        monkeypatch.setattr(sqlite_sink.Spool, "append", real_append)  # space is back at the stop
        return real_close(self)

    monkeypatch.setattr(sqlite_sink.Spool, "append", append)
    monkeypatch.setattr(SqliteSink, "close", close)
    try:
        result = run_cli(tmp_path, "--iterations", "1")
    finally:
        locker.execute("ROLLBACK")
    assert result.exit_code == 3, result.stderr
    assert "2 signal(s) produced, 0 stored, 0 already stored, 2 spooled, 0 lost." in result.stderr
    assert result.stdout == ""
    assert len((tmp_path / "v7.db.spool.jsonl").read_text().splitlines()) == 2


def test_the_write_errors_say_spooled_or_held(tmp_path, monkeypatch):
    path = tmp_path / "v7.db"
    sink = open_sink(path, busy_timeout_ms=20)
    locker = locked(path)
    with pytest.raises(SignalSpooled):
        sink.write(make_signal(0))
    fail_spools(monkeypatch)
    with pytest.raises(SignalHeld) as held:
        sink.write(make_signal(1))
    assert isinstance(held.value, SqliteSinkError)
    locker.execute("ROLLBACK")
    sink.close()
    assert sink.unsaved() == []  # the database could be written at close
    assert prices(path) == [100.0, 101.0]


def test_runs_starting_together_never_find_a_writable_spool_unwritable(tmp_path):
    """Several `v7 run`s probe the same spool at start-up: one creating or removing it must not make another's probe fail."""
    import threading

    from v7.plugins.sinks.sqlite.identity import probe_writable

    spool = tmp_path / "v7.db.spool.jsonl"
    answers: list[str | None] = []

    def probe() -> None:
        for _ in range(300):
            answers.append(probe_writable(spool))

    def churn() -> None:  # another run's spool appearing and being emptied away
        for _ in range(300):
            spool.write_text("")
            spool.unlink(missing_ok=True)

    threads = [threading.Thread(target=probe) for _ in range(4)] + [threading.Thread(target=churn)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 1200 and set(answers) == {None}
    assert not list(tmp_path.glob(".*probe*"))  # no probe file left behind
