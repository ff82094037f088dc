"""Backtests through the real pipeline: no lookahead, the lookahead check, LLM cost guard, storage, reports."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

import backtest_plugins
from backtest_plugins import make_registry
from helpers import BTC_CSV
from v7 import CandleSeries
from v7.core.backtest import (
    BacktestError, LlmCapExceeded, check_lookahead, comparison_rows, differing_settings, load_history, load_result, open_results,
    own_copy, range_warning, resolve_settings, run_backtest, signals_for, store_result, write_report,
)
from v7.core.candles import read_candles_csv
from v7.core.config import validate_config
from v7.core.engine import Pipeline

LOOKBACK = 300


@pytest.fixture(scope="module")
def registry():
    return make_registry()


@pytest.fixture(scope="module")
def btc() -> CandleSeries:
    return read_candles_csv(BTC_CSV, "BTC-USD").slice(5000, 5460)


def make_config(registry, tmp_path=None, theories=None, synthesizer=None, feeds=None, backtest=None, **sections):
    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": LOOKBACK},
        "sinks": {"enabled": []},
        "backtest": {"horizon": 12, "step": 20, "workers": 1, **(backtest or {})},
        **sections,
    }
    if theories is not None:
        raw["theories"] = {"enabled": theories}
    if synthesizer is not None:
        raw["synthesizer"] = synthesizer
    if feeds is not None:
        raw["feeds"] = feeds
    return validate_config(raw, registry)


def essence(signal):
    """Everything a signal says, without timings."""
    return (
        signal.index, signal.timestamp, signal.direction, signal.confidence, signal.synthesizer,
        [(o.theory, o.status, o.bias, o.confidence, o.label, o.metrics_digest) for o in signal.theories],
    )


def perturbed_after(series: CandleSeries, t: int, seed: int = 1) -> CandleSeries:
    """The same candles up to bar t; after it, a different random walk (valid OHLC)."""
    rng = np.random.default_rng(seed)
    factor = np.ones(len(series))
    factor[t + 1:] = np.cumprod(1 + rng.normal(0.002, 0.03, len(series) - t - 1))
    return CandleSeries(
        symbol=series.symbol, granularity=series.granularity, timestamp=series.timestamp.copy(),
        open=series.open * factor, high=series.high * factor, low=series.low * factor, close=series.close * factor,
        volume=series.volume[::-1].copy(),
    )


def test_changing_candles_after_t_leaves_every_signal_up_to_t_unchanged(registry, btc):
    config = make_config(registry)
    assert [t for t in config.enabled["theory"]] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
    t = 379
    changed = perturbed_after(btc, t)
    pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter", "synthesizer"))
    indices = list(range(LOOKBACK - 1, len(btc), 20))
    original = signals_for(pipeline, own_copy(btc), indices, LOOKBACK)
    again = signals_for(pipeline, own_copy(changed), indices, LOOKBACK)
    before = [(a, b) for a, b in zip(original, again) if a.index <= t]
    after = [(a, b) for a, b in zip(original, again) if a.index > t]
    assert len(before) == 5 and len(after) == 4
    for a, b in before:
        assert essence(a) == essence(b)
        assert all(o.status == "ok" for o in a.theories), a.theories
    # The perturbation is real: every later bar's theories see it.
    assert all(essence(a)[5] != essence(b)[5] for a, b in after)

    # The same through `run_backtest`, forked workers included.
    settings = resolve_settings(config, workers=2, step=10)
    runs = [run_backtest(config, registry, settings=settings, histories={"BTC-USD": h}) for h in (btc, changed)]
    for a, b in zip(runs[0].signals["BTC-USD"], runs[1].signals["BTC-USD"]):
        if a.index <= t:
            assert essence(a) == essence(b)


def test_parallel_workers_give_exactly_the_serial_signals(registry, btc):
    config = make_config(registry, backtest={"step": 8})
    serial = run_backtest(config, registry, histories={"BTC-USD": btc}, settings=resolve_settings(config, workers=1))
    parallel = run_backtest(config, registry, histories={"BTC-USD": btc}, settings=resolve_settings(config, workers=2))
    assert parallel.result.workers == 2 and serial.result.workers == 1
    assert [essence(s) for s in serial.signals["BTC-USD"]] == [essence(s) for s in parallel.signals["BTC-USD"]]
    assert serial.result.symbols[0].scores == parallel.result.symbols[0].scores
    # Signal bars: from the first bar with a full lookback, every `step` bars, to the end.
    assert [s.index for s in serial.signals["BTC-USD"]] == list(range(LOOKBACK - 1, len(btc), 8))


def test_lookahead_check_finds_nothing_in_the_real_pipeline(registry, btc):
    config = make_config(registry, backtest={"step": 40, "lookahead_sample": 3})
    run = run_backtest(config, registry, histories={"BTC-USD": btc})
    report = check_lookahead(run)
    assert report.error is None
    assert report.checked == 3 and report.differences == [] and report.ok


def test_a_theory_cannot_reach_the_bars_after_its_window(registry, btc):
    # The peeking theory reads the memory behind its arrays (a numpy view's `.base`); the backtest
    # hands out copies, so there is nothing after bar t to find.
    config = make_config(registry, theories=["peeking"], backtest={"step": 5, "horizon": 1, "lookahead_sample": 4})
    run = run_backtest(config, registry, histories={"BTC-USD": btc})
    assert run.result.symbols[0].scores.directions["BUY"].count == 0
    report = check_lookahead(run, registry_factory=make_registry)
    assert report.error is None and report.ok


def test_lookahead_check_catches_a_synthesizer_reading_a_global_future_array(registry, tmp_path):
    backtest_plugins.FUTURE.clear()
    config = make_config(
        registry, theories=["constant"], synthesizer={"use": "foresight"},
        feeds={"enabled": ["future_replay"], "future_replay": {"path": str(BTC_CSV)}},
        backtest={"step": 3, "horizon": 1, "lookahead_sample": 4},
    )
    run = run_backtest(config, registry, bars=60)
    assert "BTC-USD" in backtest_plugins.FUTURE  # the feed left the whole history in a global
    scores = run.result.symbols[0].scores
    assert scores.directions["BUY"].hit_rate == 1.0 and scores.directions["SELL"].hit_rate == 1.0
    report = check_lookahead(run, registry_factory=make_registry)
    assert report.error is None and report.checked == 4
    assert {d.field for d in report.differences} >= {"direction"}
    assert all(d.recomputed == "HOLD" for d in report.differences if d.field == "direction")


def test_llm_backtest_estimates_cost_and_refuses_above_the_cap_before_any_call(registry, btc):
    backtest_plugins.LLM_CALLS.clear()
    backtest_plugins.ESTIMATED.clear()
    config = make_config(
        registry, theories=["constant"], synthesizer={"use": "fake_llm", "fallback": "consensus"},
        backtest={"step": 1, "llm_call_cap": 25},
    )
    seen = []
    with pytest.raises(LlmCapExceeded) as caught:
        run_backtest(config, registry, histories={"BTC-USD": btc}, bars=30, on_estimate=seen.append)
    assert backtest_plugins.LLM_CALLS == []
    estimate = caught.value.estimate
    assert seen == [estimate]
    assert estimate.calls == 30 and estimate.cap == 25
    assert "llm_call_cap = 25" in str(caught.value) and "--yes" in str(caught.value)
    # Tokens from the first prompt's length; prices from the synthesizer's config (USD per million tokens).
    pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter"))
    window = btc.slice(len(btc) - 30 - LOOKBACK + 1, len(btc) - 30 + 1)
    from v7.core.models import PromptRequest

    prompt = pipeline.build_prompt(PromptRequest(
        symbol="BTC-USD", granularity="1h", bar_time=window.last_time, price=window.last_price, results=pipeline.analyze(window),
    ))
    # The synthesizer's own estimate_cost was asked, with the first bar's prompt and every call.
    assert backtest_plugins.ESTIMATED == [(prompt, 30)]
    assert estimate.prompt_tokens_per_call == math.ceil(len(prompt) * 0.3)
    assert estimate.completion_tokens_per_call == 100
    assert estimate.estimated_cost == pytest.approx(30 * (estimate.prompt_tokens_per_call * 0.27 + 100 * 1.10) / 1e6, rel=1e-5)
    assert estimate.max_cost == pytest.approx(30 * (estimate.prompt_tokens_per_call * 0.27 + 300 * 1.10) / 1e6, rel=1e-5)

    # Confirmed (--yes), it runs: one call per bar, usage summed.
    run = run_backtest(config, registry, histories={"BTC-USD": btc}, bars=30, confirm_llm=True)
    assert len(backtest_plugins.LLM_CALLS) == 30
    usage = run.result.llm_usage
    assert usage.requests == 30 and usage.cost == pytest.approx(30 * 0.0002) and usage.prompt_tokens == 30 * 500
    assert run.result.symbols[0].scores.directions["BUY"].count == 30
    # Under the cap, no confirmation is needed.
    backtest_plugins.LLM_CALLS.clear()
    run_backtest(config, registry, histories={"BTC-USD": btc}, bars=20)
    assert len(backtest_plugins.LLM_CALLS) == 20


def test_an_llm_that_cannot_estimate_its_cost_is_still_capped(registry, btc):
    backtest_plugins.LLM_CALLS.clear()
    config = make_config(registry, theories=["constant"], synthesizer={"use": "priceless_llm"}, backtest={"step": 1, "llm_call_cap": 5})
    with pytest.raises(LlmCapExceeded) as caught:
        run_backtest(config, registry, histories={"BTC-USD": btc}, bars=12)
    assert backtest_plugins.LLM_CALLS == []
    estimate = caught.value.estimate
    assert (estimate.synthesizer, estimate.calls, estimate.cap) == ("priceless_llm", 12, 5)
    assert estimate.estimated_cost is None and estimate.prompt_tokens_per_call is None
    assert "cost unknown" in str(caught.value) and "does not estimate its cost" in estimate.describe()


def test_deepseek_pointed_at_nothing_is_refused_before_any_request(registry, btc, tmp_path):
    cache = tmp_path / "llm-cache.db"
    config = make_config(
        registry, theories=["constant"],
        synthesizer={"use": "deepseek", "deepseek": {"base_url": "http://127.0.0.1:9", "cache_path": str(cache), "price_output": 2.0}},
        backtest={"step": 1, "llm_call_cap": 5},
    )
    with pytest.raises(LlmCapExceeded) as caught:
        run_backtest(config, registry, histories={"BTC-USD": btc}, bars=12)
    estimate = caught.value.estimate
    assert estimate.synthesizer == "deepseek" and estimate.calls == 12
    assert estimate.price_input_per_million == 0.27 and estimate.price_output_per_million == 2.0
    assert estimate.max_completion_tokens == 300
    assert not cache.exists()  # the synthesizer was never asked anything


def test_history_from_coinbase_is_paged_through_the_feed(registry):
    from fakes.coinbase_server import FakeCoinbase

    with FakeCoinbase() as server:
        config = make_config(
            registry, feeds={"enabled": ["coinbase"], "coinbase": {"rest_url": server.url, "live": False, "requests_per_second": 1000, "burst": 100}},
        )
        hour = 3600
        now = int(time.time())
        start = (now // hour - 400) * hour
        from datetime import datetime, timezone

        history = load_history(config, registry, "BTC-USD", datetime.fromtimestamp(start, timezone.utc), None)
        requests = len(server.requests_to("/products/BTC-USD/candles"))
    # A full lookback before the start, up to the last closed bar; no forming bar.
    assert history.timestamp[0] == start - (LOOKBACK - 1) * hour
    assert history.timestamp[-1] == (now // hour - 1) * hour
    assert np.all(np.diff(history.timestamp) == hour)
    assert requests == math.ceil(len(history) / 300)


def test_a_feed_without_history_is_a_clear_error(registry):
    config = make_config(registry, theories=["constant"], feeds={"enabled": ["candles_only"]})
    with pytest.raises(BacktestError, match="feed 'candles_only' cannot provide history"):
        run_backtest(config, registry)


def test_results_are_stored_loaded_and_compared(registry, btc, tmp_path):
    db = tmp_path / "v7.db"
    config = make_config(registry, backtest={"step": 40}, sinks={"enabled": ["sqlite"], "sqlite": {"path": str(db)}})
    a = run_backtest(config, registry, histories={"BTC-USD": btc}).result
    b_config = make_config(registry, backtest={"step": 40}, synthesizer={"consensus": {"buy_threshold": 0.02, "sell_threshold": 0.02}})
    b = run_backtest(b_config, registry, histories={"BTC-USD": btc}).result
    assert a.config_hash != b.config_hash
    # Through the sink's reader: the configured store, and the same store opened by location (--db).
    with open_results(config, registry) as reader:
        assert (store_result(reader, a), store_result(reader, b)) == (1, 2)
    with open_results(config, registry, location=str(db)) as reader:
        assert load_result(reader, "1") == a
        assert load_result(reader, b.config_hash[:8]).id == 2
        with pytest.raises(BacktestError, match="no backtest with id or config hash 'ffff'"):
            load_result(reader, "ffff")
    rows = {label: (x, y) for label, x, y in comparison_rows(a, b)}
    assert rows["config hash"] == (a.config_hash, b.config_hash)
    assert rows["BTC-USD signals"] == (str(a.bars), str(b.bars))
    # Same history and settings: only the config hash differs (the thresholds are inside it), same dates.
    assert differing_settings(a, b) == [("config hash", a.config_hash, b.config_hash)]
    assert differing_settings(a, a) == [] and range_warning(a, b) is None
    import sqlite3

    connection = sqlite3.connect(db)
    stored = connection.execute("SELECT config_hash, symbols, bars, settings, summary FROM backtests ORDER BY id").fetchall()
    assert stored[0][0] == a.config_hash and json.loads(stored[0][1]) == ["BTC-USD"] and stored[0][2] == a.bars
    assert json.loads(stored[0][3])["horizon"] == 12
    assert json.loads(stored[1][4])["symbols"][0]["scores"]["signals"] == b.bars
    # A database a backtest created is a V7 database: the sqlite sink reads its signals (none yet).
    with registry.get("sink", "sqlite").cls.reader_at(str(db)) as reader:
        assert list(reader.signals()) == []


def test_compare_names_the_differing_settings_and_warns_of_different_ranges(registry, btc):
    a = run_backtest(make_config(registry, backtest={"step": 40}), registry, histories={"BTC-USD": btc}).result
    later = make_config(registry, theories=["hurst_exponent", "kalman_filter"], backtest={"step": 20, "horizon": 6})
    b = run_backtest(later, registry, histories={"BTC-USD": btc}, bars=60).result
    differ = {name: (x, y) for name, x, y in differing_settings(a, b)}
    assert differ["theories"] == (", ".join(a.theories), "hurst_exponent, kalman_filter")
    assert differ["settings.step"] == ("40", "20") and differ["settings.horizon"] == ("12", "6")
    assert "config hash" in differ and "synthesizer" not in differ and "lookback" not in differ and "granularity" not in differ
    warning = range_warning(a, b)
    assert warning is not None and "different date ranges" in warning
    sa, sb = a.symbols[0].scores, b.symbols[0].scores
    assert sa.start != sb.start
    assert f"BTC-USD A {sa.start:%Y-%m-%dT%H:%M:%SZ} → {sa.end:%Y-%m-%dT%H:%M:%SZ}" in warning
    assert f"B {sb.start:%Y-%m-%dT%H:%M:%SZ}" in warning


def test_backtest_settings_do_not_change_the_config_hash(registry):
    plain = make_config(registry)
    other = make_config(registry, backtest={"horizon": 48, "fees_bps": 0, "short_on_sell": True, "folds": 5})
    assert plain.config_hash() == other.config_hash()
    assert other.effective()["backtest"]["horizon"] == 48


def test_report_writes_summary_signals_and_chart(registry, btc, tmp_path):
    config = make_config(registry, backtest={"step": 30, "folds": 2})
    run = run_backtest(config, registry, histories={"BTC-USD": btc})
    written = write_report(tmp_path / "report", run)
    names = sorted(p.name for p in written)
    assert names == ["chart-BTC-USD.png", "signals-BTC-USD.csv", "summary.json"]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["symbols"][0]["scores"]["signals"] == len(run.signals["BTC-USD"]) and len(summary["symbols"][0]["folds"]) == 2
    png = (tmp_path / "report" / "chart-BTC-USD.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    lines = (tmp_path / "report" / "signals-BTC-USD.csv").read_text().splitlines()
    assert lines[0].startswith("bar_time,price,direction,confidence,synthesizer,fallback_reason,hurst_exponent_bias")
    assert len(lines) == 1 + len(run.signals["BTC-USD"])


def test_an_empty_range_is_a_clear_error(registry, btc):
    config = make_config(registry, backtest={"start": "2030-01-01T00:00:00Z"})
    with pytest.raises(BacktestError, match="no bars to backtest"):
        run_backtest(config, registry, histories={"BTC-USD": btc})
