"""`v7 export`: one flat row per signal, read back with pandas in every format."""

from __future__ import annotations

import io
import json
import sqlite3

import pandas as pd
import pytest
from click.testing import CliRunner

from helpers import run_v7
from v7.core.cli import cli

THEORIES = ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]


def test_csv_of_a_real_run_reads_back_with_pandas(default_run):
    result = run_v7("export", "--config", "config.toml", "--format", "csv", "--out", "signals.csv", cwd=default_run)
    assert result.returncode == 0, result.stderr
    assert "exported 6 signal(s)" in result.stderr
    frame = pd.read_csv(default_run / "signals.csv")
    assert len(frame) == 6
    for theory in THEORIES:
        for field in ("status", "label", "bias", "confidence", "elapsed_ms", "message"):
            assert f"{theory}.{field}" in frame.columns
    assert "hurst_exponent.hurst" in frame.columns
    assert (frame["hurst_exponent.status"] == "ok").all()
    for stage in ("feed", "theories", "formatters", "synthesizer", "sink"):
        assert frame[f"timings.{stage}"].notna().all()
    # The values are the database's, row for row.
    db = sqlite3.connect(default_run / "v7.db")
    rows = db.execute(
        """SELECT s.symbol, s.direction, s.confidence, t.label, t.metrics FROM signals s
           JOIN theory_results t ON t.signal_id = s.id AND t.theory = 'hurst_exponent' ORDER BY s.id"""
    ).fetchall()
    assert list(frame["symbol"]) == [r[0] for r in rows]
    assert list(frame["direction"]) == [r[1] for r in rows]
    assert list(frame["confidence"]) == pytest.approx([r[2] for r in rows])
    assert list(frame["hurst_exponent.label"]) == [r[3] for r in rows]
    # Every signal of the run was sized, and the export says how.
    stored = db.execute("SELECT position, sizing FROM signals ORDER BY id").fetchall()
    assert list(frame["position"]) == pytest.approx([r[0] for r in stored]) and list(frame["sizing"]) == [r[1] for r in stored]
    assert frame["sizing"].notna().all() and ((frame["direction"] != "HOLD") | (frame["position"] == 0)).all()
    assert list(frame["hurst_exponent.hurst"]) == pytest.approx([json.loads(r[4])["hurst"] for r in rows])
    metrics = json.loads(db.execute("SELECT metrics FROM theory_results WHERE theory = 'monte_carlo' LIMIT 1").fetchone()[0])
    assert all(f"monte_carlo.{m}" in frame.columns or f"monte_carlo.metric.{m}" in frame.columns for m in metrics)
    # Theories come in config order, each with its fields then its metrics.
    theory_columns = [c for c in frame.columns if c.split(".")[0] in THEORIES]
    assert [c.split(".")[0] for c in theory_columns] == sorted((c.split(".")[0] for c in theory_columns), key=THEORIES.index)
    assert pd.to_datetime(frame["bar_time"]).dt.tz is not None


def test_parquet_and_jsonl_hold_the_same_table(crafted_db, tmp_path):
    runner = CliRunner()
    out = tmp_path / "signals.parquet"
    result = runner.invoke(cli, ["export", "--db", str(crafted_db), "--format", "parquet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    parquet = pd.read_parquet(out)
    result = runner.invoke(cli, ["export", "--db", str(crafted_db), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(parquet) == len(lines) == 10
    assert list(parquet.columns) == list(lines[0])
    assert str(parquet["bar_time"].dtype) == "datetime64[ms, UTC]" or "UTC" in str(parquet["bar_time"].dtype)
    assert list(parquet["monte_carlo.status"]) == [line["monte_carlo.status"] for line in lines]
    assert list(parquet["monte_carlo.status"]).count("error") == 2
    assert parquet["hurst_exponent.hurst"].tolist() == pytest.approx([0.6, 0.601, 0.602, 0.603, 0.604, 0.605, 0.6, 0.601, 0.602, 0.603])
    assert parquet["cost"].sum() == pytest.approx(0.01)
    assert set(parquet["fallback_reason"].dropna()) == {"deepseek: timed out after 3 attempts", "deepseek: HTTP 401"}

    result = runner.invoke(cli, ["export", "--db", str(crafted_db), "--hours", "24", "--symbol", "BTC-USD"])
    assert result.exit_code == 0
    assert len(pd.read_csv(io.StringIO(result.stdout))) == 5


def test_export_errors_are_clear(crafted_db, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "--db", str(crafted_db), "--format", "parquet"])
    assert result.exit_code == 2 and "--format parquet writes a binary file: give --out FILE" in result.stderr
    result = runner.invoke(cli, ["export", "--db", str(tmp_path / "missing.db")])
    assert result.exit_code == 2 and "no database at" in result.stderr


def test_a_metric_named_like_a_field_keeps_both(tmp_path):
    from sinks.factory import LogCapture, make_signal, run_info
    from v7 import TheoryResult
    from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

    signal = make_signal(0)
    signal.theory_results.append(
        TheoryResult(theory="odd", version="1", status="ok", bias=0.1, confidence=0.4, label="x", metrics={"confidence": 0.9, "z": 1.0})
    )
    sink = SqliteSink(SqliteConfig(path=tmp_path / "v7.db"))
    sink.open(run_info(), LogCapture())
    sink.write(signal)
    sink.close()
    result = CliRunner().invoke(cli, ["export", "--db", str(tmp_path / "v7.db")])
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert frame.loc[0, "odd.confidence"] == 0.4 and frame.loc[0, "odd.metric.confidence"] == 0.9 and frame.loc[0, "odd.z"] == 1.0


def test_the_position_is_exported_from_sqlite_and_jsonl_stores(tmp_path):
    from sinks.factory import LogCapture, make_signal, run_info
    from v7.plugins.sinks.jsonl import JsonlConfig, JsonlSink
    from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

    signals = [
        make_signal(0, direction="BUY", position=0.25, sizing="0.5 Kelly … → +0.250"),
        make_signal(1, direction="SELL", position=-0.5, sizing="0.5 Kelly … → -0.500"),
        make_signal(2, direction="HOLD", sizing="HOLD: no position"),
    ]
    for sink in (SqliteSink(SqliteConfig(path=tmp_path / "v7.db")), JsonlSink(JsonlConfig(path=str(tmp_path / "signals.jsonl")))):
        sink.open(run_info(), LogCapture())
        for signal in signals:
            assert sink.write(signal)
        sink.close()
    runner = CliRunner()
    for args in (["--db", str(tmp_path / "v7.db")], ["--sink", "jsonl", "--db", str(tmp_path / "signals.jsonl")]):
        result = runner.invoke(cli, ["export", *args, "--format", "csv"])
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(io.StringIO(result.stdout))
        assert list(frame.columns[7:11]) == ["direction", "confidence", "position", "sizing"]
        assert list(frame["position"]) == [0.25, -0.5, 0.0]
        assert list(frame["sizing"]) == ["0.5 Kelly … → +0.250", "0.5 Kelly … → -0.500", "HOLD: no position"]
