"""`v7 stats` on a real run and on a database whose every figure is known."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import approx_tree, run_v7
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
    assert data["schema_version"] == 4
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



@pytest.mark.parametrize("query", [{}, {"symbol": "BTC-USD"}, {"hours": 24}, {"hours": 24, "symbol": "ETH-USD"}, {"symbol": "XRP-USD"}])
def test_the_sql_summary_equals_summarize_over_the_same_signals(crafted_db, default_run, tmp_path, query):
    """The sqlite reader aggregates in SQL; the default `summarize` reads every StoredSignal: same dict."""
    from v7.core.commands.stats import signal_query
    from v7.core.signal_summary import summarize
    from v7.plugins.sinks.sqlite import SqliteReader

    v1 = tmp_path / "old.db"
    sqlite3.connect(v1).executescript(FIXTURE_V1.read_text())
    for path in (crafted_db, default_run / "v7.db", v1):
        with SqliteReader(path) as reader:
            wanted = signal_query(query.get("hours"), query.get("symbol"))
            sql = reader.summary(wanted, (0.4, 0.7))
            python = summarize(reader, wanted, (0.4, 0.7))
        assert list(sql) == list(python)
        assert sql == approx_tree(python), path
        assert python["signals"] == sql["signals"]


def run_and_read(tmp_path, sinks: str, extra_path=None):
    """A short real run into `sinks`, then `v7 stats --json` and `v7 export --format jsonl` on its config."""
    from sinks.factory import FAST_THEORIES, write_config

    write_config(tmp_path, theories=FAST_THEORIES, sinks=sinks)
    result = run_v7("run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path, extra_path=extra_path)
    assert result.returncode == 0, result.stderr
    return [
        run_v7(*command, "--config", "config.toml", cwd=tmp_path, extra_path=extra_path)
        for command in (("stats", "--json"), ("export", "--format", "jsonl"))
    ]


def test_stats_and_export_read_a_jsonl_sink(tmp_path):
    stats, export = run_and_read(tmp_path, '[sinks]\nenabled = ["jsonl"]\n[sinks.jsonl]\npath = "signals.jsonl"\n')
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["sink"] == "jsonl" and data["database"] == str((tmp_path / "signals.jsonl").resolve())
    assert data["signals"] == 6 and data["schema_version"] is None
    assert [(s["symbol"], s["signals"]) for s in data["symbols"]] == [("BTC-USD", 3), ("ETH-USD", 3)]
    assert [t["theory"] for t in data["theories"]] == ["kalman_filter"] and data["theories"][0]["results"] == 6
    assert data["latency_ms"]["feed"]["count"] == 6 and data["latency_ms"]["sink"]["count"] == 0
    assert data["storage"] == {"spool_waiting": 0, "stored_late": 0, "runs": 0, "runs_without_stop": 0}
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    assert len(lines) == 6 and lines[0]["kalman_filter.status"] == "ok" and "kalman_filter.elapsed_ms" in lines[0]
    # --db with --sink: reader_at of that sink; the text form names the sink.
    text = run_v7("stats", "--sink", "jsonl", "--db", "signals.jsonl", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "sink jsonl" in text.stdout and "6 signals" in text.stdout
    csv = run_v7("export", "--sink", "jsonl", "--db", "signals.jsonl", "--symbol", "ETH-USD", cwd=tmp_path)
    assert csv.returncode == 0 and len(csv.stdout.strip().splitlines()) == 1 + 3


MEMORY_SINK = '''
    """A sink that is not sqlite: signals as one JSON file, read back through the reader capability only."""
    import json
    from pathlib import Path

    from v7 import PluginConfig, Signal, SignalReader, Sink, StoredSignal, hookimpl


    class BoxConfig(PluginConfig):
        path: str = "box.json"


    class BoxReader(SignalReader):
        def __init__(self, path):
            self.path = Path(path)
            self.location = str(self.path.resolve())

        def signals(self, query=None, *, with_prompt=False):
            for number, data in enumerate(json.loads(self.path.read_text()), 1):
                signal = Signal.model_validate(data)
                if query is None or query.matches(signal):
                    yield StoredSignal.model_validate({**signal.model_dump(), "id": number, "sink_ms": 1.5})

        def waiting(self):
            return 7


    class BoxSink(Sink):
        name = "box"
        version = "0.1"
        Config = BoxConfig

        def open(self, run, log):
            self.kept = []

        def write(self, signal):
            self.kept.append(signal.model_dump(mode="json"))
            return True

        def close(self):
            Path(self.config.path).write_text(json.dumps(self.kept))

        def reader(self):
            return BoxReader(self.config.path)

        @classmethod
        def reader_at(cls, location):
            return BoxReader(location)


    @hookimpl
    def register_sinks(register):
        register(BoxSink)
'''


def test_stats_and_export_read_a_third_party_sink(tmp_path):
    from helpers import make_distribution

    site = make_distribution(tmp_path / "site", "v7-box-sink", "0.1", {"box": "v7_box_sink"}, {"v7_box_sink": MEMORY_SINK})
    work = tmp_path / "work"
    work.mkdir()
    stats, export = run_and_read(work, '[sinks]\nenabled = ["box"]\n', extra_path=site)
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["sink"] == "box" and data["signals"] == 6 and data["storage"]["spool_waiting"] == 7
    assert data["latency_ms"]["sink"] == {"count": 6, "p50": 1.5, "p90": 1.5, "p99": 1.5, "max": 1.5}
    assert sum(d["count"] for d in data["directions"].values()) == 6
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    assert [line["id"] for line in lines] == [1, 2, 3, 4, 5, 6] and all(line["timings.sink"] == 1.5 for line in lines)
    by_db = run_v7("stats", "--sink", "box", "--db", str(work / "box.json"), "--json", "--hours", "1", cwd=tmp_path, extra_path=site)
    assert by_db.returncode == 0, by_db.stderr
    assert json.loads(by_db.stdout)["signals"] == 6
    # The sqlite sink is not involved: no database was made.
    assert not (work / "v7.db").exists()
