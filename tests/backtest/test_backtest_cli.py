"""`v7 backtest` as a user runs it: JSON output, report files, storage, `compare`, the lookahead check, the LLM cap."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from helpers import BTC_CSV, REPO, make_distribution, run_v7

CONFIG = """
[engine]
symbols = ["BTC-USD"]
lookback = 300

[feeds]
enabled = ["replay"]
[feeds.replay]
path = "{csv}"

[synthesizer]
use = "consensus"
{synthesizer}

[sinks]
enabled = ["sqlite"]
[sinks.sqlite]
path = "results.db"

[backtest]
horizon = 6
step = 4
fees_bps = 10
slippage_bps = 5
workers = 2
lookahead_sample = 2
"""


def write_config(path, synthesizer="", extra=""):
    path.write_text(CONFIG.format(csv=BTC_CSV.as_posix(), synthesizer=synthesizer) + extra)
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One real backtest: 24 bars of the bundled BTC history, JSON, report, lookahead check, stored."""
    folder = tmp_path_factory.mktemp("backtest-cli")
    write_config(folder / "a.toml")
    result = run_v7(
        "backtest", "--config", "a.toml", "--bars", "24", "--folds", "2", "--json", "--report", "report", "--check-lookahead",
        cwd=folder,
    )
    return folder, result


def test_json_output_report_and_lookahead_check(first_run):
    folder, result = first_run
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["id"] == 1 and data["bars"] == 6 and data["symbols"][0]["symbol"] == "BTC-USD"
    assert data["settings"]["horizon"] == 6 and data["settings"]["step"] == 4 and data["lookback"] == 300
    scores = data["symbols"][0]["scores"]
    assert scores["signals"] == 6 and set(scores["directions"]) == {"BUY", "SELL", "HOLD"}
    assert {"total_return", "sharpe", "max_drawdown", "trades"} <= set(scores["strategy"])
    assert [t["theory"] for t in scores["theories"]] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
    assert len(data["symbols"][0]["folds"]) == 2 and "strategy_return" in data["symbols"][0]["fold_spread"]
    assert data["lookahead"] == {"checked": 2, "differences": [], "error": None}
    assert "Backtesting BTC-USD (6 signal bars)" in result.stderr
    stored = next(line for line in result.stderr.splitlines() if line.startswith("Stored as backtest 1 in "))
    assert stored.endswith("results.db."), stored
    summary = json.loads((folder / "report" / "summary.json").read_text())
    assert summary["config_hash"] == data["config_hash"]
    assert (folder / "report" / "chart-BTC-USD.png").stat().st_size > 10_000
    assert (folder / "report" / "signals-BTC-USD.csv").read_text().count("\n") == 7
    row = sqlite3.connect(folder / "results.db").execute("SELECT id, config_hash, bars, range_start, range_end FROM backtests").fetchone()
    assert row[:3] == (1, data["config_hash"], 6) and row[3] < row[4]


def test_compare_two_configurations_side_by_side(first_run):
    folder, first = first_run
    assert first.returncode == 0, first.stderr
    # Another configuration (two theories, a lower threshold): a different config hash.
    write_config(
        folder / "b.toml", synthesizer="[synthesizer.consensus]\nbuy_threshold = 0.03\nsell_threshold = 0.03",
        extra='\n[theories]\nenabled = ["hurst_exponent", "kalman_filter"]\n',
    )
    second = run_v7("backtest", "--config", "b.toml", "--bars", "24", cwd=folder)
    assert second.returncode == 0, second.stderr
    assert "BTC-USD" in second.stdout and "strategy vs buy-and-hold" in second.stdout and "Stored as backtest 2" in second.stderr
    hash_a = json.loads(first.stdout)["config_hash"]
    compared = run_v7("backtest", "compare", hash_a, "2", "--config", "a.toml", cwd=folder)
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    assert lines[0].split() == ["A", f"({hash_a})", "B", "(2)"]
    hash_line = next(line for line in lines if line.startswith("config hash"))
    assert hash_a in hash_line and hash_line.split()[-1] != hash_a
    assert any(line.startswith("BTC-USD BUY hit rate") for line in lines)
    # Which settings differ: the theories and the hash; the same bars, so no date-range warning.
    differ = lines[lines.index("Settings that differ:") + 1:]
    assert differ[0].split() == ["setting", "A", "B"]
    assert any(line.startswith("theories") and line.rstrip().endswith("hurst_exponent, kalman_filter") for line in differ)
    assert any(line.startswith("config hash") for line in differ)
    assert not any(line.startswith(("synthesizer", "lookback", "granularity")) for line in differ)
    assert any(line.startswith("settings.folds") for line in differ)  # run A had --folds 2
    assert "different date ranges" not in compared.stdout
    as_json = run_v7("backtest", "compare", "1", "2", "--db", "results.db", "--json", cwd=folder)
    assert as_json.returncode == 0, as_json.stderr
    pair = json.loads(as_json.stdout)
    assert (pair["a"]["id"], pair["b"]["id"]) == (1, 2)
    assert {d["setting"] for d in pair["differences"]} >= {"config hash", "theories", "settings.folds"} and pair["warning"] is None
    missing = run_v7("backtest", "compare", "1", "99", "--db", "results.db", cwd=folder)
    assert missing.returncode == 2 and "no backtest with id or config hash '99'" in missing.stderr
    # The old flag is gone: compare is a subcommand.
    old = run_v7("backtest", "--config", "a.toml", "--compare", "1", "2", cwd=folder)
    assert old.returncode == 2 and "--compare" in old.stderr


def test_compare_warns_when_the_runs_cover_different_date_ranges(first_run):
    folder, first = first_run
    assert first.returncode == 0, first.stderr
    longer = run_v7("backtest", "--config", "a.toml", "--bars", "40", "--json", cwd=folder)
    assert longer.returncode == 0, longer.stderr
    key = str(json.loads(longer.stdout)["id"])
    compared = run_v7("backtest", "compare", "1", key, "--config", "a.toml", cwd=folder)
    assert compared.returncode == 0, compared.stderr
    warning = [line for line in compared.stdout.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and "the two backtests cover different date ranges (BTC-USD A " in warning[0]
    assert "not directly comparable" in warning[0]
    # Same config: the hash does not differ, the folds do.
    assert "config hash " not in compared.stdout.split("Settings that differ:")[1]


LEAKY = '''
from v7 import Synthesis, Synthesizer, hookimpl
from v7.plugins.feeds.replay import ReplayFeed

FUTURE = {}


class HoardingReplay(ReplayFeed):
    """The replay feed, keeping every history it loads in a module global (a careless plugin)."""
    name = "hoarding_replay"

    def fetch_history(self, symbol, granularity, start, end):
        series = super().fetch_history(symbol, granularity, start, end)
        FUTURE[symbol] = series
        return series


class Foresight(Synthesizer):
    """Reads the next close from that global."""
    name = "foresight"

    def synthesize(self, request):
        import numpy as np
        history = FUTURE.get(request.symbol)
        if history is None:
            return Synthesis(direction="HOLD", confidence=0.0, reasoning="no future to read")
        i = int(np.searchsorted(history.timestamp, int(request.bar_time.timestamp())))
        if i + 1 >= len(history):
            return Synthesis(direction="HOLD", confidence=0.0, reasoning="end of history")
        up = history.close[i + 1] > history.close[i]
        return Synthesis(direction="BUY" if up else "SELL", confidence=1.0, reasoning="read the next close")


@hookimpl
def register_feeds(register):
    register(HoardingReplay)


@hookimpl
def register_synthesizers(register):
    register(Foresight)
'''


def test_check_lookahead_exits_1_and_names_the_leak(tmp_path):
    site = make_distribution(tmp_path / "site", "v7-leaky", "1.0", {"leaky": "v7_leaky"}, {"v7_leaky": LEAKY})
    config = write_config(tmp_path / "leaky.toml").read_text().replace("[feeds.replay]", "[feeds.hoarding_replay]")
    config = config.replace('enabled = ["replay"]', 'enabled = ["hoarding_replay"]')
    (tmp_path / "leaky.toml").write_text(config + '\n[synthesizer]\nuse = "foresight"\n' if "[synthesizer]" not in config else config.replace('use = "consensus"', 'use = "foresight"'))
    result = run_v7("backtest", "--config", "leaky.toml", "--bars", "40", "--check-lookahead", "--no-store", cwd=tmp_path, extra_path=site)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Lookahead check:" in result.stdout and "difference(s) in 2 recomputed signal(s)" in result.stdout
    assert "direction: backtest" in result.stdout and "recomputed HOLD" in result.stdout


def test_llm_cap_refuses_before_any_call(tmp_path):
    synthesizer = '[synthesizer.deepseek]\nbase_url = "http://127.0.0.1:9"\ncache_path = "cache.db"'
    config = write_config(tmp_path / "llm.toml", synthesizer=synthesizer, extra='llm_call_cap = 10\n[theories]\nenabled = ["kalman_filter"]\n')
    config.write_text(config.read_text().replace('use = "consensus"', 'use = "deepseek"\nfallback = "consensus"'))
    result = run_v7("backtest", "--config", "llm.toml", "--bars", "200", "--no-store", cwd=tmp_path)
    assert result.returncode == 2
    assert "LLM synthesizer 'deepseek': up to 50 calls" in result.stderr
    assert "Error: refused: this backtest would make up to 50 LLM calls" in result.stderr and "--yes" in result.stderr
    assert not (tmp_path / "cache.db").exists()


def test_bad_options_are_clear_errors(tmp_path):
    write_config(tmp_path / "c.toml")
    result = run_v7("backtest", "--config", "c.toml", "--start", "yesterday", cwd=tmp_path)
    assert result.returncode == 2 and "--start" in result.stderr and "ISO date" in result.stderr
    result = run_v7("backtest", cwd=tmp_path)
    assert result.returncode == 2 and "give --config" in result.stderr


def test_the_command_module_stays_light():
    code = "import sys, v7.core.cli; print(sorted(m for m in ('numpy', 'pandas', 'pydantic', 'v7.core.backtest') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"
