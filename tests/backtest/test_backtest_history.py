"""Where the history comes from: the candle feed's fetch_history, a full lookback before the start, clear errors."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from backtest_setup import LOOKBACK, make_config
from v7.core.backtest import BacktestError, load_history, run_backtest


def test_history_from_coinbase_is_paged_through_the_feed(registry):
    from fakes.coinbase_server import FakeCoinbase

    with FakeCoinbase() as server:
        config = make_config(
            registry, feeds={"enabled": ["coinbase"], "coinbase": {"rest_url": server.url, "live": False, "requests_per_second": 1000, "burst": 100}},
        )
        hour = 3600
        now = int(time.time())
        start = (now // hour - 400) * hour
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


def test_an_empty_range_is_a_clear_error(registry, btc):
    config = make_config(registry, backtest={"start": "2030-01-01T00:00:00Z"})
    with pytest.raises(BacktestError, match="no bars to backtest"):
        run_backtest(config, registry, histories={"BTC-USD": btc})


def test_a_start_after_the_end_of_the_data_says_so(tmp_path):
    import shutil

    from helpers import REPO, run_v7

    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    done = run_v7("backtest", "--config", "config.toml", "--start", "2030-01-01", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "--start 2030-01-01T00:00:00Z is after the end of the data (last bar 2019-10-17T09:00:00Z)" in done.stderr
