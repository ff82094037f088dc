"""`resume = true`: a re-run of the replay starts after the last bar stored for this config."""

from __future__ import annotations

import sqlite3

from helpers import BTC_CSV, run_v7

CONFIG = """
[engine]
symbols = ["BTC-USD"]
lookback = 200
[theories]
enabled = ["hurst_exponent", "kalman_filter"]
[feeds.replay]
path = "candles"
{resume}
[sinks.sqlite]
path = "v7.db"
"""


def _setup(tmp_path, bars: int) -> None:
    (tmp_path / "candles").mkdir()
    lines = BTC_CSV.read_text().splitlines()
    (tmp_path / "candles" / "BTC-USD.csv").write_text("\n".join(lines[: bars + 1]) + "\n")
    (tmp_path / "plain.toml").write_text(CONFIG.format(resume=""))
    (tmp_path / "resume.toml").write_text(CONFIG.format(resume="resume = true"))


def _bar_times(tmp_path) -> list[str]:
    with sqlite3.connect(tmp_path / "v7.db") as db:
        return [row[0] for row in db.execute("SELECT bar_time FROM signals ORDER BY bar_time")]


def test_resume_starts_after_the_last_stored_bar(tmp_path):
    _setup(tmp_path, 400)
    first = run_v7("run", "--config", "plain.toml", "--iterations", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    stored = _bar_times(tmp_path)
    assert len(stored) == 3

    # Without resume, the same bars again: nothing new (already stored).
    again = run_v7("run", "--config", "plain.toml", "--iterations", "2", cwd=tmp_path)
    assert "2 signal(s) produced, 0 stored, 2 already stored" in again.stderr
    # With resume: the next two bars, and the same config hash (resume does not shape a signal).
    resumed = run_v7("run", "--config", "resume.toml", "--iterations", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 signal(s) produced, 2 stored, 0 already stored" in resumed.stderr
    after = _bar_times(tmp_path)
    assert after[:3] == stored and len(after) == 5 and after[3] > stored[-1]
    with sqlite3.connect(tmp_path / "v7.db") as db:
        assert db.execute("SELECT count(DISTINCT config_hash) FROM signals").fetchone()[0] == 1
    assert "resume" in resumed.stderr and stored[-1][:13] in resumed.stderr  # the log names where it resumed


def test_resume_with_every_bar_stored_says_so(tmp_path):
    _setup(tmp_path, 202)  # lookback 200: bars 200, 201, 202 can be signalled
    first = run_v7("run", "--config", "resume.toml", cwd=tmp_path)  # no earlier signals: from the start, to the end
    assert "3 signal(s) produced, 3 stored" in first.stderr, first.stderr
    again = run_v7("run", "--config", "resume.toml", cwd=tmp_path)
    assert "resume: every bar of BTC-USD up to" in again.stderr and "is already stored for this config" in again.stderr
    assert "0 signal(s) produced" in again.stderr
    # Nothing to do is not a failure: exit 0, and the closing note says why nothing was stored.
    assert again.returncode == 0, again.stderr
    assert "Note: resume: every bar of BTC-USD is already stored for this config" in again.stderr
    assert len(_bar_times(tmp_path)) == 3


def test_every_reader_finds_the_same_last_bars(tmp_path):
    """The SQL answer of the sqlite reader and the default (read every signal) of the jsonl reader agree."""
    from v7.plugins.sinks.jsonl import JsonlConfig, JsonlSink
    from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

    _setup(tmp_path, 400)
    text = (tmp_path / "plain.toml").read_text().replace('[sinks.sqlite]', '[sinks]\nenabled = ["sqlite", "jsonl"]\n[sinks.jsonl]\npath = "s.jsonl"\n[sinks.sqlite]')
    (tmp_path / "both.toml").write_text(text)
    done = run_v7("run", "--config", "both.toml", "--iterations", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "v7.db") as db:
        (config_hash,) = db.execute("SELECT DISTINCT config_hash FROM signals").fetchone()
    with SqliteSink(SqliteConfig(path=str(tmp_path / "v7.db"))).reader() as reader:
        from_sql = reader.last_bar_times(config_hash, "1h")
    with JsonlSink(JsonlConfig(path=str(tmp_path / "s.jsonl"))).reader() as reader:
        from_lines = reader.last_bar_times(config_hash, "1h")
    assert from_sql == from_lines and list(from_sql) == ["BTC-USD"]
    assert from_sql["BTC-USD"].isoformat().startswith(max(_bar_times(tmp_path))[:19].replace(" ", "T"))
    with SqliteSink(SqliteConfig(path=str(tmp_path / "v7.db"))).reader() as reader:
        assert reader.last_bar_times("another-hash", "1h") == {} and reader.last_bar_times(config_hash, "1d") == {}
