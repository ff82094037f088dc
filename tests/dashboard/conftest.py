"""Fixtures of the dashboard tests: a store written through the sqlite sink, and the app over it."""

from __future__ import annotations

import pytest

from dash_setup import sample, write


@pytest.fixture(scope="session")
def backtest_json() -> str:
    """A real (small) BacktestResult: the Kalman filter over a slice of the bundled BTC candles, three folds."""
    from helpers import BTC_CSV
    from v7.core.backtest import run_backtest
    from v7.core.candles import read_candles_csv
    from v7.core.config import validate_config
    from v7.core.registry import load_registry

    registry = load_registry()
    config = validate_config({
        "engine": {"symbols": ["BTC-USD"], "lookback": 300}, "theories": {"enabled": ["kalman_filter"]}, "sinks": {"enabled": []},
        "backtest": {"horizon": 12, "step": 4, "folds": 3, "workers": 1, "feature_cache": ""},
    }, registry)
    btc = read_candles_csv(BTC_CSV, "BTC-USD").slice(5000, 5700)
    return run_backtest(config, registry, histories={"BTC-USD": btc}).result.model_dump_json()


@pytest.fixture
def db(tmp_path):
    """24 signals of a stopped run and 2 of a run left without a stop."""
    path = tmp_path / "v7.db"
    write(path, sample())
    write(path, sample(2, start=24, run_id="run1"), run_id="run1", stop=False)
    return path
