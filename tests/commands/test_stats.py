"""`v7 stats` on a real run and on a database whose every figure is known."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import run_v7
from v7.core.cli import cli

FIXTURE_V1 = Path(__file__).parents[1] / "sinks" / "schema_v1.sql"


def stats_json(*args: str, cwd: Path) -> dict:
    result = run_v7("stats", *args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def in_process(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_stats_of_a_real_default_run_agree_with_sql(default_run):
    data = stats_json("--config", "config.toml", cwd=default_run)
    db = sqlite3.connect(default_run / "v7.db")
    assert data["database"] == str((default_run / "v7.db").resolve())
    assert data["schema_version"] == 2
    assert data["signals"] == 6
    directions = data["directions"]
    assert sum(d["count"] for d in directions.values()) == 6
    assert sum(d["share"] for d in directions.values()) == pytest.approx(1.0)
    for direction, row in directions.items():
        count, mean = db.execute("SELECT count(*), avg(confidence) FROM signals WHERE direction = ?", (direction,)).fetchone()
        assert row["count"] == count and row["share"] == pytest.approx(count / 6)
        assert row["mean_confidence"] == (pytest.approx(mean) if count else None)
    hold_sql = db.execute("SELECT avg(direction = 'HOLD') FROM signals").fetchone()[0]
    assert data["hold"]["share"] == pytest.approx(hold_sql)
    assert (data["hold"]["target_min"], data["hold"]["target_max"]) == (0.4, 0.7)
    assert data["hold"]["status"] == ("below" if hold_sql < 0.4 else "above" if hold_sql > 0.7 else "within")
    assert [(s["symbol"], s["signals"]) for s in data["symbols"]] == [("BTC-USD", 3), ("ETH-USD", 3)]
    assert [(s["synthesizer"], s["signals"], s["fallbacks"]) for s in data["synthesizers"]] == [("consensus", 6, 0)]
    assert [t["theory"] for t in data["theories"]] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
    for theory in data["theories"]:
        ok, insufficient, error = db.execute(
            "SELECT sum(status = 'ok'), sum(status = 'insufficient_data'), sum(status = 'error') FROM theory_results WHERE theory = ?",
            (theory["theory"],),
        ).fetchone()
        assert (theory["results"], theory["ok"], theory["insufficient_data"], theory["error"]) == (6, ok, insufficient, error)
        assert theory["error_rate"] == pytest.approx(error / 6)
    assert list(data["latency_ms"]) == ["feed", "theories", "formatters", "synthesizer", "sink"]
    for stage, row in data["latency_ms"].items():
        assert row["count"] == 6, stage  # the sink's own time too: the last one is written at close
        assert 0 <= row["p50"] <= row["p90"] <= row["p99"] <= row["max"]
    theories_ms = sorted(json.loads(r[0])["theories"] for r in db.execute("SELECT timings FROM signals"))
    assert data["latency_ms"]["theories"]["max"] == theories_ms[-1]
    assert data["llm"]["signals_with_usage"] == 0 and data["llm"]["cost"] == 0
    assert data["storage"] == {"spool_waiting": 0, "stored_late": 0, "runs": 1, "runs_without_stop": 0}

    text = run_v7("stats", "--config", "config.toml", cwd=default_run)
    assert text.returncode == 0, text.stderr
    for heading in ("Directions", "Symbols", "Synthesizers", "Theories", "Latency per stage (ms)", "HOLD share", "LLM:", "Runs:", "Spool:"):
        assert heading in text.stdout
    assert "6 signals" in text.stdout and "markov_regime" in text.stdout


EXPECTED_DIRECTIONS = {
    "BUY": {"count": 3, "share": 0.3, "mean_confidence": 0.7},
    "SELL": {"count": 2, "share": 0.2, "mean_confidence": 0.7},
    "HOLD": {"count": 5, "share": 0.5, "mean_confidence": 0.3},
}


def test_every_figure_on_a_known_database(crafted_db):
    code, out, err = in_process("stats", "--db", str(crafted_db), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["signals"] == 10
    assert data["directions"] == {d: {k: pytest.approx(v) for k, v in row.items()} for d, row in EXPECTED_DIRECTIONS.items()}
    assert data["hold"] == {"share": 0.5, "target_min": 0.4, "target_max": 0.7, "status": "within"}
    btc, eth = data["symbols"]
    assert (btc["symbol"], btc["signals"], btc["BUY"], btc["SELL"], btc["HOLD"]) == ("BTC-USD", 6, 2, 1, 3)
    assert (eth["symbol"], eth["signals"], eth["BUY"], eth["SELL"], eth["HOLD"]) == ("ETH-USD", 4, 1, 1, 2)
    assert (btc["last_bar_time"], btc["last_direction"]) == ("2024-03-01T05:00:00Z", "HOLD")
    deepseek, consensus = data["synthesizers"]
    assert (deepseek["synthesizer"], deepseek["signals"], deepseek["fallbacks"], deepseek["fallback_reasons"]) == ("deepseek", 7, 0, [])
    assert (consensus["synthesizer"], consensus["signals"], consensus["fallbacks"], consensus["mean_attempts"]) == ("consensus", 3, 3, 3.0)
    assert consensus["fallback_reasons"] == [
        {"reason": "deepseek: timed out after 3 attempts", "count": 2}, {"reason": "deepseek: HTTP 401", "count": 1},
    ]
    assert data["fallbacks"] == {"signals": 3, "share": pytest.approx(0.3)}
    hurst, monte_carlo = data["theories"]
    assert (hurst["theory"], hurst["ok"], hurst["error_rate"], hurst["insufficient_data_rate"]) == ("hurst_exponent", 10, 0, 0)
    assert (monte_carlo["ok"], monte_carlo["error"], monte_carlo["insufficient_data"]) == (7, 2, 1)
    assert monte_carlo["error_rate"] == pytest.approx(0.2) and monte_carlo["insufficient_data_rate"] == pytest.approx(0.1)
    assert monte_carlo["last_error"] == "ValueError: diverged"
    # feed ms are 1 + bar index: BTC 1..6, ETH 1..4
    assert data["latency_ms"]["feed"] == {"count": 10, "p50": 3.0, "p90": pytest.approx(5.1), "p99": pytest.approx(5.91), "max": 6.0}
    assert data["latency_ms"]["sink"]["count"] == 10
    assert data["llm"] == {
        "signals_with_usage": 10, "prompt_tokens": 10_000, "completion_tokens": 700, "cache_hit_tokens": 6000,
        "cache_miss_tokens": 4000, "cache_hit_ratio": pytest.approx(0.6), "cost": pytest.approx(0.01), "cost_per_signal": pytest.approx(0.001),
    }


def test_hours_and_symbol_filters(crafted_db):
    code, out, err = in_process("stats", "--db", str(crafted_db), "--hours", "24", "--json")
    assert code == 0, err
    recent = json.loads(out)
    assert recent["signals"] == 8  # two were created three days ago
    assert recent["directions"]["HOLD"]["count"] == 3
    assert recent["filter"]["hours"] == 24 and recent["filter"]["created_since"].endswith("Z")
    code, out, err = in_process("stats", "--db", str(crafted_db), "--symbol", "ETH-USD", "--hours", "24", "--json")
    only_eth = json.loads(out)
    assert only_eth["signals"] == 3 and [s["symbol"] for s in only_eth["symbols"]] == ["ETH-USD"]
    assert sum(t["results"] for t in only_eth["theories"]) == 6
    code, out, err = in_process("stats", "--db", str(crafted_db), "--symbol", "XRP-USD")
    assert code == 0 and "No signals stored in this window." in out


def test_hold_target_comes_from_the_stats_section(crafted_db, tmp_path):
    (tmp_path / "c.toml").write_text(f'[stats]\nhold_target_min = 0.6\nhold_target_max = 0.8\n[sinks.sqlite]\npath = "{crafted_db}"\n')
    code, out, err = in_process("stats", "--config", str(tmp_path / "c.toml"), "--json")
    assert code == 0, err
    assert json.loads(out)["hold"] == {"share": 0.5, "target_min": 0.6, "target_max": 0.8, "status": "below"}
    code, out, _ = in_process("stats", "--config", str(tmp_path / "c.toml"))
    assert "HOLD share 50.0%, target 60.0%–80.0%: below" in out

    (tmp_path / "bad.toml").write_text("[stats]\nhold_target_min = 0.9\nhold_target_max = 0.8\n")
    result = run_v7("stats", "--config", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "hold_target_min (0.9) must not exceed hold_target_max (0.8)" in result.stderr


def test_clear_errors_without_a_database(tmp_path):
    # The first enabled sink that can read back is the one read, and its error names it.
    (tmp_path / "c.toml").write_text(f'[sinks]\nenabled = ["jsonl"]\n[sinks.jsonl]\npath = "{tmp_path / "none.jsonl"}"\n')
    code, _, err = in_process("stats", "--config", str(tmp_path / "c.toml"))
    assert code == 2 and "sink 'jsonl'" in err and f"no signals file at {tmp_path / 'none.jsonl'}" in err
    (tmp_path / "stdout.toml").write_text('[sinks]\nenabled = ["jsonl"]\n[sinks.jsonl]\npath = "-"\n')
    code, _, err = in_process("stats", "--config", str(tmp_path / "stdout.toml"))
    assert code == 2 and "sink 'jsonl' writes to stdout" in err
    code, _, err = in_process("stats", "--sink", "nosuch", "--db", str(tmp_path / "nothing.db"))
    assert code == 2 and "--sink nosuch: no sink of that name is installed" in err and "sqlite" in err
    code, _, err = in_process("stats", "--db", str(tmp_path / "nothing.db"))
    assert code == 2 and f"no database at {tmp_path / 'nothing.db'}" in err
    code, _, err = in_process("stats")
    assert code == 2 and "give --config" in err


def test_a_v1_database_is_read_without_upgrading_it(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).executescript(FIXTURE_V1.read_text())
    code, out, err = in_process("stats", "--db", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["schema_version"] == 1 and data["signals"] == 3
    assert data["latency_ms"]["sink"]["count"] == 0 and data["latency_ms"]["synthesizer"]["max"] == 30012.0
    assert data["llm"]["prompt_tokens"] == 3550 and data["llm"]["cost"] == pytest.approx(0.00073)
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0] == 1
