"""The jsonl sink, and several sinks at once: one failing sink never stops the others."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from factory import FAST_THEORIES, LogCapture, make_signal, run_info, write_config
from helpers import run_v7
from v7 import Signal
from v7.plugins.sinks.jsonl import JsonlConfig, JsonlSink, JsonlSinkError

BOTH_SINKS = """[sinks]
enabled = ["sqlite", "jsonl"]
[sinks.sqlite]
path = "v7.db"
busy_timeout_ms = 100
[sinks.jsonl]
path = "{jsonl}"
"""


def log_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_one_json_object_per_signal_flushed_per_line(tmp_path):
    path = tmp_path / "out" / "signals.jsonl"
    sink = JsonlSink(JsonlConfig(path=str(path)))
    log = LogCapture()
    sink.open(run_info(), log)
    assert sink.write(make_signal(0, prompt="the prompt"))
    assert sink.write(make_signal(1, direction="BUY"))
    lines = path.read_text().splitlines()  # before close: each line is already in the file
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["symbol"] == "BTC-USD" and first["direction"] == "HOLD" and first["bar_time"] == "2024-03-01T00:00:00Z"
    assert [r["theory"] for r in first["theory_results"]] == ["hurst_exponent", "monte_carlo"]
    assert first["theory_results"][0]["metrics"] == {"hurst": 0.6, "band_low": 0.44}
    assert "prompt" not in first  # unless include_prompt = true
    assert Signal.model_validate_json(lines[1]) == make_signal(1, direction="BUY").model_copy(update={"created_at": Signal.model_validate_json(lines[1]).created_at})
    assert sink.write(make_signal(0)) is False  # same key: not written twice
    sink.close()

    # A line torn by a crash is cut when the file is opened again; known signals stay known.
    with path.open("a") as handle:
        handle.write('{"symbol": "BTC-USD", "granul')
    sink = JsonlSink(JsonlConfig(path=str(path), include_prompt=True))
    log = LogCapture()
    sink.open(run_info(), log)
    assert "jsonl sink dropped a torn last line (a crash while writing it)" in log.events("warning")
    assert sink.write(make_signal(1)) is False
    assert sink.write(make_signal(2, prompt="p2")) is True
    sink.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["prompt"] == "p2"


def test_a_write_error_names_the_file_and_cause():
    sink = JsonlSink(JsonlConfig(path="/dev/full"))
    sink.open(run_info(), LogCapture())
    with pytest.raises(JsonlSinkError, match="jsonl sink: cannot write /dev/full: No space left on device"):
        sink.write(make_signal(0))
    sink.close()


def test_stdout_carries_only_signals(tmp_path):
    write_config(tmp_path, theories=FAST_THEORIES, sinks='[sinks]\nenabled = ["jsonl"]\n[sinks.jsonl]\npath = "-"\n')
    result = run_v7("run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    signals = [Signal.model_validate_json(line) for line in result.stdout.splitlines()]
    assert len(signals) == 6
    assert {s.symbol for s in signals} == {"BTC-USD", "ETH-USD"}
    assert all(len(s.theory_results) == 1 and s.theory_results[0].theory == "kalman_filter" for s in signals)


def test_a_full_jsonl_sink_does_not_stop_sqlite(tmp_path):
    write_config(tmp_path, theories=FAST_THEORIES, sinks=BOTH_SINKS.format(jsonl="/dev/full"))
    result = run_v7("--log-json", "run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = log_lines(result.stderr)
    failed = [line for line in lines if line["event"] == "sink failed to store signal"]
    assert len(failed) == 6
    assert all(line["plugin"] == "jsonl" and "cannot write /dev/full: No space left on device" in line["error"] for line in failed)
    stored = [line for line in lines if line["event"] == "signal stored"]
    assert len(stored) == 6 and {line["plugin"] for line in stored} == {"sqlite"}
    assert sqlite3.connect(tmp_path / "v7.db").execute("SELECT count(*) FROM signals").fetchone()[0] == 6


def test_a_locked_sqlite_sink_does_not_stop_jsonl_and_catches_up_later(tmp_path):
    write_config(tmp_path, theories=FAST_THEORIES, sinks=BOTH_SINKS.format(jsonl="signals.jsonl"))
    first = run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    locker = sqlite3.connect(tmp_path / "v7.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        locked = run_v7("--log-json", "run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert locked.returncode == 0, locked.stderr
    lines = log_lines(locked.stderr)
    failed = [line for line in lines if line["event"] == "sink could not store signal; spooled"]
    assert len(failed) == 6 and {line["plugin"] for line in failed} == {"sqlite"}
    assert all(f"cannot write {tmp_path / 'v7.db'}: database is locked" in line["error"] for line in failed)
    assert all("spooled to" in line["error"] for line in failed)
    jsonl_stored = [line for line in lines if line["event"] == "signal stored" and line["plugin"] == "jsonl"]
    assert len(jsonl_stored) == 4  # the first bar of each symbol was written by the first run
    assert len(Path(tmp_path / "signals.jsonl").read_text().splitlines()) == 6

    recovered = run_v7("--log-json", "run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    replay = [line for line in log_lines(recovered.stderr) if line["event"] == "spooled signals stored"]
    assert [(r["stored"], r["already_stored"]) for r in replay] == [(4, 2)]
    db = sqlite3.connect(tmp_path / "v7.db")
    assert db.execute("SELECT count(*), count(DISTINCT symbol || bar_time) FROM signals").fetchone() == (6, 6)
    assert not (tmp_path / "v7.db.spool.jsonl").exists()
    in_file = [json.loads(line) for line in (tmp_path / "signals.jsonl").read_text().splitlines()]
    assert len({(s["symbol"], s["bar_time"]) for s in in_file}) == len(in_file) == 6


def test_the_position_is_written_and_read_back_and_older_lines_read_flat(tmp_path):
    path = tmp_path / "signals.jsonl"
    sink = JsonlSink(JsonlConfig(path=str(path)))
    sink.open(run_info(), LogCapture())
    assert sink.write(make_signal(0, direction="SELL", position=-0.25, sizing="0.5 Kelly … → -0.250"))
    sink.close()
    line = json.loads(path.read_text().splitlines()[0])
    assert line["position"] == -0.25 and line["sizing"] == "0.5 Kelly … → -0.250"
    # A line written before signals carried a position: it reads back flat and unsized.
    older = {k: v for k, v in json.loads(make_signal(1).model_dump_json()).items() if k not in ("position", "sizing")}
    with path.open("a") as handle:
        handle.write(json.dumps(older) + "\n")
    stored = list(JsonlSink.reader_at(str(path)).signals())
    assert [(s.position, s.sizing) for s in stored] == [(-0.25, "0.5 Kelly … → -0.250"), (0.0, None)]
