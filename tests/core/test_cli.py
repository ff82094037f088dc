"""The `v7` command as a user runs it: the offline default run, analyze, stopping cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd

import v7
from helpers import BTC_CSV, REPO, run_v7

THEORIES = ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]


def test_default_config_run_stores_six_signals(tmp_path):
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    result = run_v7("run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(tmp_path / "v7.db")
    rows = db.execute(
        "SELECT id, symbol, bar_time, created_at, direction, confidence, price, synthesizer, reasoning FROM signals ORDER BY id"
    ).fetchall()
    assert len(rows) == 6
    assert sorted({r[1] for r in rows}) == ["BTC-USD", "ETH-USD"]
    assert all(r[4] in ("BUY", "SELL", "HOLD") and 0 <= r[5] <= 1 and r[6] > 0 and r[7] == "consensus" for r in rows)
    results = db.execute("SELECT signal_id, theory, status, bias, confidence, label, metrics, elapsed_ms FROM theory_results ORDER BY signal_id, position").fetchall()
    assert len(results) == 30
    assert [r[1] for r in results[:5]] == THEORIES
    assert all(r[2] == "ok" for r in results), [r for r in results if r[2] != "ok"]
    assert "hurst" in json.loads(results[0][6])
    # The log shows each theory result (its first metric as `value`) and the time each stage took.
    assert "theory result" in result.stderr and "theory=hurst_exponent" in result.stderr and "timings_ms=" in result.stderr
    assert "6 signal(s) produced, 6 stored, 0 already stored, 0 spooled, 0 lost." in result.stderr

    # The same config over the same bars stores nothing twice, and the closing line says so.
    again = run_v7("run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "6 signal(s) produced, 0 stored, 6 already stored, 0 spooled, 0 lost." in again.stderr
    assert "Note: every signal of this run was already stored for this config" in again.stderr


def test_json_logs_are_bound_to_symbol_and_plugin(tmp_path):
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    result = run_v7("--log-json", "run", "--config", "config.toml", "--iterations", "1", "--symbols", "ETH-USD", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    theory_lines = [line for line in lines if line.get("plugin") in THEORIES and "status" in line]
    assert [line["plugin"] for line in theory_lines] == THEORIES
    assert all(line["symbol"] == "ETH-USD" for line in theory_lines)
    signal_line = next(line for line in lines if line["event"] == "signal")
    assert set(signal_line["timings_ms"]) >= {"feed", "theories", "formatters", "synthesizer"}
    # Constant event names, values as fields: logs aggregate per theory.
    assert {line["event"] for line in theory_lines} == {"theory result"}
    entropy = next(line for line in theory_lines if line["theory"] == "shannon_entropy")
    assert isinstance(entropy["value"], float) and entropy["label"] and entropy["status"] == "ok"


def test_json_tracebacks_carry_no_local_variables(capsys):
    """A local variable can hold a key: the JSON renderer prints the traceback, never the locals."""
    from v7.core.logs import configure_logging, get_logger

    configure_logging("info", json_lines=True)
    api_key = "sk-local-secret-0123456789"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger().exception("failed")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["exception"][0]["exc_type"] == "RuntimeError"
    assert api_key not in json.dumps(line)
    del api_key


def test_sigterm_stops_cleanly_and_every_logged_signal_is_stored(tmp_path):
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "v7.core.cli", "--log-json", "run", "--config", "config.toml"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    stored_lines = []
    deadline = time.monotonic() + 240
    for line in process.stderr:
        if '"signal stored"' in line:
            stored_lines.append(json.loads(line))
            if len(stored_lines) == 4:
                process.send_signal(signal.SIGTERM)
                break
        assert time.monotonic() < deadline
    rest, _ = process.communicate(timeout=240)[::-1]
    stored_lines += [json.loads(line) for line in rest.splitlines() if '"signal stored"' in line]
    assert process.returncode == 0, rest
    assert "stop requested" in rest
    db = sqlite3.connect(tmp_path / "v7.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {(r[0], r[1]) for r in db.execute("SELECT symbol, bar_time FROM signals")}
    assert len(stored) == len(stored_lines) >= 4
    # Each signal is whole: five theory results each.
    counts = db.execute("SELECT count(*) FROM theory_results GROUP BY signal_id").fetchall()
    assert {c[0] for c in counts} == {5}


def test_analyze_prints_results_and_json(tmp_path):
    frame = pd.read_csv(BTC_CSV).tail(1200)
    frame.sample(frac=1, random_state=1).to_csv(tmp_path / "candles.csv", index=False)  # any row order
    result = run_v7("analyze", "--candles", "candles.csv", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    assert [r["theory"] for r in results] == THEORIES
    for r in results:
        assert {"theory", "version", "status", "bias", "confidence", "label", "interpretation", "metrics", "elapsed_ms"} <= set(r)
        assert r["status"] == "ok"
    table = run_v7("analyze", "--candles", "candles.csv", cwd=tmp_path)
    assert table.returncode == 0 and "hurst_exponent" in table.stdout and "monte_carlo" in table.stdout

    # The same from Python, on the same candles, gives the same numbers.
    from_python = v7.analyze(frame.reset_index(drop=True))
    assert [r.model_dump(exclude={"elapsed_ms"}) for r in from_python] == [
        {k: v for k, v in r.items() if k != "elapsed_ms"} for r in results
    ]


def test_analyze_with_a_config_runs_its_theories_in_its_order(tmp_path):
    (tmp_path / "c.toml").write_text('[theories]\nenabled = ["monte_carlo", "kalman_filter"]\n')
    pd.read_csv(BTC_CSV).tail(600).to_csv(tmp_path / "candles.csv", index=False)
    results = json.loads(run_v7("analyze", "--candles", "candles.csv", "--config", "c.toml", "--json", cwd=tmp_path).stdout)
    assert [r["theory"] for r in results] == ["monte_carlo", "kalman_filter"]
    assert [r.theory for r in v7.analyze(pd.read_csv(tmp_path / "candles.csv"), config=tmp_path / "c.toml")] == ["monte_carlo", "kalman_filter"]


def test_analyze_reports_unusable_csv(tmp_path):
    (tmp_path / "bad.csv").write_text("time,price\n1,2\n")
    result = run_v7("analyze", "--candles", "bad.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert "missing column(s) timestamp, open, high, low, close" in result.stderr and "Traceback" not in result.stderr


def test_symbols_option_overrides_config(tmp_path):
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    result = run_v7("run", "--config", "config.toml", "--iterations", "2", "--symbols", "ETH-USD", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = sqlite3.connect(tmp_path / "v7.db").execute("SELECT DISTINCT symbol FROM signals").fetchall()
    assert rows == [("ETH-USD",)]
    bad = run_v7("run", "--config", "config.toml", "--symbols", "btc", cwd=tmp_path)
    assert bad.returncode == 2 and "--symbols: got 'btc'" in bad.stderr


def test_max_threads_caps_the_numeric_thread_pools(tmp_path):
    (tmp_path / "c.toml").write_text("[engine]\nmax_threads = 1\n")
    code = (
        "import sys, json; from v7.core.registry import load_registry; from v7.core.config import load_config; "
        "from v7.core.engine import limit_threads; import os; "
        "cfg = load_config(sys.argv[1], load_registry()); limit_threads(cfg.engine.max_threads); "
        "import numpy, scipy.linalg; from threadpoolctl import threadpool_info; "
        "print(json.dumps({'env': os.environ['OPENBLAS_NUM_THREADS'], 'pools': [p['num_threads'] for p in threadpool_info()]}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.toml")], capture_output=True, text=True, env=env, check=True)
    report = json.loads(out.stdout)
    assert report["env"] == "1"
    assert report["pools"] and all(n == 1 for n in report["pools"])


def test_a_symbol_that_never_produced_a_signal_is_a_non_zero_exit(tmp_path):
    (tmp_path / "empty.csv").write_text("timestamp,open,high,low,close,volume\n")
    (tmp_path / "config.toml").write_text(
        '[engine]\nsymbols = ["BTC-USD"]\n[feeds.replay]\npath = "empty.csv"\n[sinks.sqlite]\npath = "v7.db"\n'
    )
    done = run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "empty.csv: no valid candles" in done.stderr  # the cause, with the file's name
    assert "0 signal(s) produced" in done.stderr and "Error: no signal for BTC-USD" in done.stderr


def test_empty_symbols_option_is_an_error(tmp_path):
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    done = run_v7("run", "--config", "config.toml", "--symbols", "", "--iterations", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "--symbols: got ''" in done.stderr
    assert not (tmp_path / "v7.db").exists()


def test_analyze_and_stats_fit_an_80_column_terminal(tmp_path):
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    assert run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path).returncode == 0
    narrow = {"COLUMNS": "80"}
    analyzed = run_v7("analyze", "--candles", str(BTC_CSV), cwd=tmp_path, env=narrow)
    stats = run_v7("stats", "--config", "config.toml", cwd=tmp_path, env=narrow)
    for done in (analyzed, stats):
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, max(lines, key=len)
        assert "…" not in done.stdout  # folded or moved below, never cut off
    assert "hurst_exponent: H = " in analyzed.stdout  # the interpretation follows the table


def test_analyze_refuses_candles_spaced_unlike_the_granularity(tmp_path):
    (tmp_path / "daily.toml").write_text('[engine]\ngranularity = "1d"\n')
    done = run_v7("analyze", "--candles", str(BTC_CSV), "--config", "daily.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert "candles are 3600 s apart, but engine.granularity is '1d'" in done.stderr and "BTC-USD.csv" in done.stderr
