"""`v7 run --config config.live.toml` as a real process, with every URL pointed at local fakes.

The shipped config.live.toml is read, its URLs rewritten to the fake Coinbase (REST and
WebSocket), the fake CoinGecko and the fake DeepSeek (OpenAI-compatible) servers, its waits
shortened, and written to tmp_path; nothing else changes. The fakes follow the real clock here,
because the `v7` process does.
"""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fakes._http_server import html_page, server_error
from fakes.coinbase_server import FakeCoinbase
from fakes.coingecko_server import FakeCoinGecko
from helpers import REPO, run_v7
from v7.core.registry import load_registry

LIVE_CONFIG = REPO / "config.live.toml"
SYMBOLS = {"BTC-USD", "ETH-USD"}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for a V7 config: tables of scalars, lists and inline tables, nested tables."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) or (prefix and k == "ids")}
    tables = {k: v for k, v in data.items() if k not in scalars}
    lines = [f"{json.dumps(k) if not k.isidentifier() else k} = {toml_value(v)}" for k, v in scalars.items()]
    out = ("\n".join(lines) + "\n") if lines else ""
    for name, table in tables.items():
        full = f"{prefix}.{name}" if prefix else name
        out += f"\n[{full}]\n" + dump_toml(table, full)
    return out


@pytest.fixture(scope="module")
def installed():
    """The plugins the live config needs, as the `v7` process will find them (entry points)."""
    registry = load_registry()
    missing = [name for kind, name in (("feed", "coinbase"), ("feed", "coingecko"), ("sink", "sqlite"), ("synthesizer", "consensus"))
               if registry.get(kind, name) is None]
    if missing:
        pytest.skip(f"entry points not installed for {missing}: run `pip install -e .`")
    return {"deepseek": registry.get("synthesizer", "deepseek") is not None}


@pytest.fixture(scope="module")
def fakes():
    from fakes.openai_server import FakeOpenAIServer

    with FakeCoinbase(now=None, heartbeat_interval=0.2) as coinbase, FakeCoinGecko() as coingecko, FakeOpenAIServer() as deepseek:
        yield coinbase, coingecko, deepseek


def live_config(tmp_path: Path, fakes, installed, synthesizer: str | None = None, **engine: Any) -> Path:
    coinbase, coingecko, deepseek = fakes
    config = tomllib.loads(LIVE_CONFIG.read_text())
    # A short interval keeps the test short; the deadline stays generous, so the cold first iteration
    # (1,000 candles paged, five theories) is not cut off by it and each iteration serves both symbols.
    # A forming bar's signal is as of the whole second it was fetched in, and iterations are paced
    # start to start, so fetches are `interval - (first fetch - second fetch)` apart: with 1 s the cold
    # first fetch (four pages) often put both in one second and the second signal was "already stored".
    # 2 s keeps them in different seconds unless the cold fetch is a full second slower than the warm one.
    config["engine"].update({"interval_seconds": 2.0, "iteration_timeout_seconds": 60.0, **engine})
    config["feeds"]["coinbase"].update({
        "rest_url": coinbase.url, "ws_url": coinbase.ws_url,
        "max_retries": 1, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05,
    })
    config["feeds"]["coingecko"].update({
        "base_url": coingecko.base_url, "max_retries": 1, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05,
    })
    if synthesizer is not None:
        config["synthesizer"] = {"use": synthesizer, "fallback": synthesizer}
    elif installed["deepseek"]:
        config["synthesizer"]["deepseek"].update({"base_url": deepseek.base_url, "cache_path": str(tmp_path / "llm-cache.db")})
    else:  # the DeepSeek plugin is not installed yet: the live config falls back to its fallback
        config["synthesizer"] = {"use": "consensus", "fallback": "consensus"}
    config["sinks"]["sqlite"]["path"] = str(tmp_path / "v7-live.db")
    path = tmp_path / "config.live.toml"
    path.write_text(dump_toml(config))
    return path


def v7_run(config: Path, tmp_path: Path, iterations: int):
    result = run_v7(
        "--log-json", "run", "--config", str(config), "--iterations", str(iterations),
        cwd=tmp_path, env={"DEEPSEEK_API_KEY": "sk-test-live-run", "COINGECKO_API_KEY": ""}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    events = []
    for line in result.stderr.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


def rows(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(sql, args).fetchall()


def test_shipped_live_config_is_valid():
    registry = load_registry()
    from v7.core.config import load_config

    if registry.get("feed", "coinbase") is None or registry.get("synthesizer", "deepseek") is None:
        pytest.skip("coinbase/deepseek entry points not installed: run `pip install -e .`")
    config = load_config(LIVE_CONFIG, registry)
    assert config.candle_feed == "coinbase" and config.context_feeds == ["coingecko"]
    assert config.synthesizer == "deepseek" and config.fallback == "consensus"
    assert config.engine.lookback == 1000 and config.engine.interval_seconds == 900


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory, fakes, installed):
    """Two iterations of the live config with every service healthy; what the fakes saw, right after."""
    coinbase, coingecko, _ = fakes
    folder = tmp_path_factory.mktemp("live")
    events = v7_run(live_config(folder, fakes, installed), folder, iterations=2)
    seen = {
        "btc_candle_requests": len(coinbase.requests_to("/products/BTC-USD/candles")),
        "coinbase_statuses": coinbase.statuses(),
        "ws_connections": coinbase.ws_connections,
        "subscribed": [products for _, products, _ in coinbase.subscribe_messages],
        "markets_requests": len(coingecko.requests_to("/api/v3/coins/markets")),
    }
    return folder, events, seen


def test_live_run_stores_signals_with_market_context(healthy_run, installed):
    folder, events, seen = healthy_run
    db = folder / "v7-live.db"

    signals = rows(db, "SELECT * FROM signals ORDER BY id")
    assert {s["symbol"] for s in signals} == SYMBOLS
    for signal in signals:
        assert signal["direction"] in ("BUY", "SELL", "HOLD") and signal["context_error"] is None
        context = json.loads(signal["context"])
        assert context["source"] == "coingecko" and context["btc_dominance_pct"] == 60.70858347681936
    assert {s["synthesizer"] for s in signals} == {"deepseek" if installed["deepseek"] else "consensus"}
    btc = next(s for s in signals if s["symbol"] == "BTC-USD")
    assert json.loads(btc["context"])["price"] == 70187
    results = rows(db, "SELECT theory, status FROM theory_results WHERE signal_id = ?", btc["id"])
    assert [r["theory"] for r in results] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
    assert any(r["status"] == "ok" for r in results)

    assert seen["btc_candle_requests"] >= 4  # 1000 hourly candles = 4 pages, then only new bars
    assert 400 not in seen["coinbase_statuses"]
    assert seen["ws_connections"] >= 1 and any("BTC-USD" in products for products in seen["subscribed"])
    assert seen["markets_requests"] == 1  # one snapshot, cached across symbols and iterations
    assert sum(1 for e in events if e.get("event") == "signal") == 4  # 2 symbols × 2 iterations
    # Each iteration analysed the forming hour afresh: two stored signals per symbol, as of the data's time.
    assert len(signals) == 4
    for symbol in SYMBOLS:
        times = [s["bar_time"] for s in signals if s["symbol"] == symbol]
        assert len(set(times)) == 2, times


def test_live_run_through_outages_keeps_going_and_loses_nothing(healthy_run, fakes, installed):
    """CoinGecko down for the whole run, Coinbase failing in iteration 1: signals still come, context recorded missing."""
    coinbase, coingecko, _ = fakes
    folder, _, _ = healthy_run
    db = folder / "v7-live.db"
    before = [tuple(r) for r in rows(db, "SELECT id, run_id, symbol, bar_time FROM signals ORDER BY id")]

    coingecko.fail_always(html_page(503))
    # Both symbols' first requests fail (1 try + 1 retry each) in iteration 1; iteration 2 finds the server well.
    coinbase.inject(server_error(500, path_prefix="/products/"), times=4)
    try:
        # Another config (lookback 999), so its signals are new rows next to the first run's; the
        # offline consensus synthesizes, as this test is about the feeds.
        events = v7_run(live_config(folder, fakes, installed, synthesizer="consensus", lookback=999), folder, iterations=2)
    finally:
        coingecko.recover()
        coinbase.recover()

    skipped = [e for e in events if e.get("event") == "feed failed; symbol skipped this iteration"]
    assert {e["symbol"] for e in skipped} == SYMBOLS and all("HTTP 500" in e["error"] for e in skipped)
    after = rows(db, "SELECT id, run_id, symbol, bar_time, context, context_error FROM signals ORDER BY id")
    assert [tuple(r)[:4] for r in after[: len(before)]] == before  # nothing already stored is lost
    new = after[len(before):]
    assert {s["symbol"] for s in new} == SYMBOLS and len({s["run_id"] for s in new}) == 1
    for signal in new:
        assert signal["context"] is None
        assert signal["context_error"].startswith("coingecko: FeedUnavailableError")
        assert "HTTP 503: an HTML page ('503 Service Temporarily Unavailable')" in signal["context_error"]
