"""Results kept through a sink's reader, loaded back, and compared (differing settings, the date-range warning)."""

from __future__ import annotations

import json

import pytest

from backtest_setup import make_config
from v7.core.backtest import (
    BacktestError, comparison_rows, differing_settings, load_result, open_results, range_warning, run_backtest, store_result,
)


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


def test_results_go_to_the_first_enabled_sink_that_keeps_them(tmp_path):
    """A jsonl sink listed before sqlite can read signals but keeps no backtests: results go to sqlite."""
    from v7.core.backtest.store import keeps_backtests, open_results
    from v7.core.config import validate_config
    from v7.core.registry import load_registry

    registry = load_registry()
    raw = {"sinks": {"enabled": ["jsonl", "sqlite"], "jsonl": {"path": str(tmp_path / "s.jsonl")},
                     "sqlite": {"path": str(tmp_path / "v7.db")}}}
    reader = open_results(validate_config(raw, registry), registry)
    try:
        assert keeps_backtests(reader)
        assert reader.location.endswith("v7.db")
    finally:
        reader.close()
