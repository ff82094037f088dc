"""`v7 signals`: the latest signals of a real run and of stores whose every signal is known."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import run_v7
from sinks.factory import LogCapture, make_signal, run_info
from v7 import SignalQuery, SignalReader
from v7.core.cli import cli
from v7.plugins.sinks.jsonl import JsonlConfig, JsonlReader, JsonlSink
from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink


def in_process(*args: str, columns: int = 80) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, ["signals", *args])
    return result.exit_code, result.stdout, result.stderr


def stored(folder: Path, signals: list, name: str = "v7.db") -> Path:
    sink = SqliteSink(SqliteConfig(path=folder / name))
    sink.open(run_info(), LogCapture())
    for signal in signals:
        assert sink.write(signal)
    sink.close()
    return folder / name


def test_the_latest_signals_of_a_real_run_newest_first(default_run):
    result = run_v7("signals", "--config", "config.toml", "--json", cwd=default_run)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    db = sqlite3.connect(default_run / "v7.db")
    expected = db.execute("SELECT id, symbol, direction, confidence, price, synthesizer, reasoning FROM signals ORDER BY id DESC").fetchall()
    assert [(s["id"], s["symbol"], s["direction"], s["confidence"], s["price"], s["synthesizer"], s["reasoning"]) for s in shown] == expected
    assert [t["theory"] for t in shown[0]["theories"]] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]

    text = run_v7("signals", "--config", "config.toml", "--last", "2", cwd=default_run, env={"COLUMNS": "80"})
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "2 latest signal(s)" in lines[0]
    heads = [line for line in lines if line[:2] == "20"]
    assert len(heads) == 2 and expected[0][1] in heads[0] and expected[1][1] in heads[1]
    assert all(len(line) <= 80 for line in lines)


def test_filters_last_and_json(crafted_db):
    code, out, err = in_process("--db", str(crafted_db), "--symbol", "BTC-USD", "--direction", "buy", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert [(s["symbol"], s["direction"], s["confidence"]) for s in shown] == [("BTC-USD", "BUY", 0.9), ("BTC-USD", "BUY", 0.7)]
    code, out, _ = in_process("--db", str(crafted_db), "--last", "3", "--json")
    assert [(s["symbol"], s["direction"]) for s in json.loads(out)] == [("ETH-USD", "HOLD"), ("ETH-USD", "SELL"), ("ETH-USD", "BUY")]
    code, out, _ = in_process("--db", str(crafted_db), "--direction", "SELL")
    assert code == 0
    heads = [line for line in out.splitlines() if line.startswith("20")]
    assert len(heads) == 2 and all(" SELL " in line for line in heads)
    assert "ETH-USD" in heads[0] and "consensus (fallback)" in heads[0]


def test_verbose_shows_theory_labels_and_the_fallback_reason(crafted_db):
    code, out, err = in_process("--db", str(crafted_db), "--last", "2", "--verbose")
    assert code == 0, err
    assert "theories: hurst_exponent trending; monte_carlo (ok)" in out
    assert "fallback: deepseek: HTTP 401" in out
    code, out, _ = in_process("--db", str(crafted_db), "--last", "2")
    assert "theories:" not in out and "fallback:" not in out


def test_long_reasoning_is_wrapped_to_80_columns_and_cut_and_markup_is_text(tmp_path):
    words = " ".join(f"word{i}" for i in range(200))
    db = stored(tmp_path, [
        make_signal(0, direction="BUY", reasoning=words, symbol="SUPERLONGCOIN-USDC", price=0.000123456),
        make_signal(1, direction="SELL", reasoning="[bold red]not markup[/] <script>alert(1)</script>"),
    ])
    code, out, err = in_process("--db", str(db))
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "[bold red]not markup[/] <script>alert(1)</script>" in out
    reasoning = [line for line in lines if line.startswith("    word")]
    assert len(reasoning) == 3 and reasoning[-1].endswith("…") and "word199" not in out
    assert "0.000123456" in out and "SUPERLONGCOIN-USDC" in out

    code, out, _ = in_process("--db", str(db), "--verbose")
    assert "word199" in out and all(len(line) <= 80 for line in out.splitlines())


def test_empty_missing_and_bad_input(tmp_path):
    empty = stored(tmp_path, [], "empty.db")
    code, out, _ = in_process("--db", str(empty))
    assert code == 0 and "no signals stored yet" in out
    code, out, _ = in_process("--db", str(empty), "--symbol", "BTC-USD", "--direction", "SELL")
    assert code == 0 and "no signals match (symbol BTC-USD, direction SELL)" in out
    code, _, err = in_process("--db", str(tmp_path / "nothing.db"))
    assert code == 2 and f"no database at {tmp_path / 'nothing.db'}" in err
    code, _, err = in_process("--db", str(empty), "--direction", "SIDEWAYS")
    assert code == 2 and "--direction" in err and "expected one of BUY, SELL, HOLD" in err
    code, _, err = in_process("--db", str(empty), "--last", "0")
    assert code == 2 and "--last" in err
    code, _, err = in_process()
    assert code == 2 and "give --config" in err


def test_a_jsonl_store_through_the_default_latest(tmp_path):
    sink = JsonlSink(JsonlConfig(path=str(tmp_path / "signals.jsonl")))
    sink.open(run_info(), LogCapture())
    for index, direction in enumerate(["BUY", "SELL", "HOLD", "BUY", "SELL"]):
        sink.write(make_signal(index, direction=direction, symbol="BTC-USD" if index % 2 else "ETH-USD"))
    sink.close()
    assert "latest" not in vars(JsonlReader)  # the base class's default answers
    code, out, err = in_process("--sink", "jsonl", "--db", str(tmp_path / "signals.jsonl"), "--direction", "SELL", "--json")
    assert code == 0, err
    assert [(s["id"], s["symbol"]) for s in json.loads(out)] == [(5, "ETH-USD"), (2, "BTC-USD")]


class Unfiltered(SignalReader):
    """A reader that knows no direction filter: the default `latest` still keeps only matching signals."""

    def __init__(self, signals):
        self.stored = signals

    def signals(self, query=None, *, with_prompt=False):
        return iter(self.stored)


def test_the_default_latest_rechecks_filters_and_keeps_only_the_last():
    from v7 import StoredSignal

    rows = [StoredSignal(**make_signal(i, direction="BUY" if i % 3 == 0 else "HOLD").model_dump(), id=i + 1) for i in range(10)]
    latest = Unfiltered(rows).latest(SignalQuery(direction="BUY"), 2)
    assert [s.id for s in latest] == [10, 7]
    assert Unfiltered(rows).latest(SignalQuery(), 0) == []


@pytest.fixture(scope="module")
def big_db(tmp_path_factory):
    """100,000 signals: two written by the sink, the rest cloned from them in SQL (writing them one by one takes minutes)."""
    folder = tmp_path_factory.mktemp("big")
    db = stored(folder, [make_signal(0, direction="BUY", reasoning="seed"), make_signal(1, symbol="RARE-USD", direction="SELL")])
    connection = sqlite3.connect(db)
    connection.execute(
        """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 99998)
           INSERT INTO signals (run_id, symbol, granularity, bar_time, created_at, direction, confidence, price, synthesizer,
                                attempts, reasoning, config_hash, timings)
           SELECT s.run_id, CASE i % 2 WHEN 0 THEN 'BTC-USD' ELSE 'ETH-USD' END, s.granularity,
                  strftime('%Y-%m-%dT%H:%M:%SZ', '2000-01-01', '+' || i || ' hours'), s.created_at,
                  CASE i % 3 WHEN 0 THEN 'BUY' WHEN 1 THEN 'SELL' ELSE 'HOLD' END, 0.5, 100 + i, s.synthesizer, 1,
                  'clone ' || i, s.config_hash, s.timings
           FROM n, signals s WHERE s.id = 1"""
    )
    connection.execute(
        """INSERT INTO theory_results (signal_id, position, theory, version, status, bias, confidence, label, interpretation,
                                       message, metrics, elapsed_ms)
           SELECT s.id, t.position, t.theory, t.version, t.status, t.bias, t.confidence, t.label, t.interpretation, t.message,
                  t.metrics, t.elapsed_ms FROM signals s, theory_results t WHERE t.signal_id = 1 AND s.id > 2"""
    )
    connection.commit()
    connection.close()
    return db


@pytest.mark.parametrize("query, expected_first", [
    (SignalQuery(), "clone 99998"),
    (SignalQuery(symbol="BTC-USD"), "clone 99998"),
    (SignalQuery(symbol="RARE-USD"), "signal 1"),  # the oldest but one: the whole store lies above it
    (SignalQuery(direction="HOLD"), "clone 99998"),
    (SignalQuery(symbol="ETH-USD", direction="BUY"), "clone 99993"),
])
def test_100000_signals_answer_fast_and_right(big_db, query, expected_first):
    reader = SqliteSink.reader_at(str(big_db))
    started = time.perf_counter()
    latest = reader.latest(query, 20)
    elapsed = time.perf_counter() - started
    assert latest[0].reasoning == expected_first
    assert elapsed < 1.0, f"{elapsed:.3f} s for {query}"  # ~20 ms here; a full read of 100,000 signals takes seconds
    assert [s.id for s in latest] == sorted((s.id for s in latest), reverse=True)
    assert all(query.matches(s) for s in latest) and all(len(s.theory_results) == 2 for s in latest)
    assert len(latest) == (1 if query.symbol == "RARE-USD" else 20)
    reader.close()


def test_100000_signals_through_the_cli(big_db):
    started = time.perf_counter()
    code, out, err = in_process("--db", str(big_db), "--last", "5", "--symbol", "ETH-USD")
    assert code == 0, err
    assert time.perf_counter() - started < 5.0
    assert [line.split()[2] for line in out.splitlines() if line.startswith("20")] == ["ETH-USD"] * 5


def test_the_position_is_shown_in_80_columns_in_json_and_with_its_rule(tmp_path):
    db = stored(tmp_path, [
        make_signal(0, direction="HOLD", sizing="HOLD: no position"),
        make_signal(1, direction="SELL", position=-0.125, sizing="0.5 Kelly (p 0.600, b 1.00, f* 0.200) = 0.100 → -0.125",
                    fallback_reason="deepseek: HTTP 401", price=101234.5),
        make_signal(2, direction="BUY", position=0.047, sizing="uncalibrated confidence: fixed 0.1 × vol scale 0.47 → +0.047"),
    ])
    code, out, err = in_process("--db", str(db))
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    heads = [line for line in lines if line.startswith("20")]
    assert " BUY  0.50  +4.7% " in heads[0] and " SELL 0.50 -12.5% " in heads[1] and " HOLD 0.50     0% " in heads[2]
    assert "101,234.50  consensus (fallback)" in heads[1] and "positions in % of capital" in " ".join(out.split())
    code, out, _ = in_process("--db", str(db), "--verbose")
    assert "sizing: uncalibrated confidence: fixed 0.1 × vol scale 0.47 → +0.047" in out
    code, out, _ = in_process("--db", str(db), "--json")
    assert [(s["position"], s["sizing"][:4]) for s in json.loads(out)] == [(0.047, "unca"), (-0.125, "0.5 "), (0.0, "HOLD")]
