"""The replay's candle cache: a CSV validated once, then memory-mapped read-only arrays, re-validated when it changes."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import structlog

from helpers import BTC_CSV
from v7.plugins.feeds import replay_cache
from v7.plugins.feeds.replay import ReplayConfig, ReplayFeed

LOOKBACK = 200


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "candles"
    folder.mkdir()
    lines = BTC_CSV.read_text().splitlines()
    (folder / "BTC-USD.csv").write_text("\n".join(lines[:600]) + "\n")
    return folder


def feed(data, cache) -> ReplayFeed:
    return ReplayFeed(ReplayConfig(path=data, cache=str(cache)))


def count_parses(monkeypatch) -> list[str]:
    parsed: list[str] = []
    real = replay_cache.read_candles_csv
    monkeypatch.setattr(replay_cache, "read_candles_csv", lambda path, *a: parsed.append(str(path)) or real(path, *a))
    return parsed


def test_a_second_replay_maps_the_cache_instead_of_parsing(data, tmp_path, monkeypatch):
    parsed = count_parses(monkeypatch)
    first = feed(data, tmp_path / "cache").fetch_candles("BTC-USD", "1h", LOOKBACK)
    second_feed = feed(data, tmp_path / "cache")
    second = second_feed.fetch_candles("BTC-USD", "1h", LOOKBACK)
    assert len(parsed) == 1
    for name in ("timestamp", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    history = second_feed._history["BTC-USD"]
    assert isinstance(history.close.base, np.memmap) or isinstance(history.close, np.memmap)
    with pytest.raises(ValueError):
        history.close[0] = 1.0  # read-only: no theory can change what another bar will read
    files = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "cache").iterdir())
    assert files == ["json", "ohlcv.npy", "timestamp.npy"]
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in (tmp_path / "cache").iterdir())


def test_an_edited_csv_is_validated_again(data, tmp_path, monkeypatch):
    parsed = count_parses(monkeypatch)
    feed(data, tmp_path / "cache").fetch_candles("BTC-USD", "1h", LOOKBACK)
    path = data / "BTC-USD.csv"
    lines = path.read_text().splitlines()
    time.sleep(0.01)
    path.write_text("\n".join(lines[:-50]) + "\n")
    again = feed(data, tmp_path / "cache")
    again.fetch_candles("BTC-USD", "1h", LOOKBACK)
    assert len(parsed) == 2 and len(again._history["BTC-USD"]) == len(lines) - 51


def test_a_damaged_entry_is_logged_and_rebuilt(data, tmp_path, monkeypatch):
    feed(data, tmp_path / "cache").fetch_candles("BTC-USD", "1h", LOOKBACK)
    [prices] = (tmp_path / "cache").glob("*.ohlcv.npy")
    prices.write_bytes(b"not numpy")
    parsed = count_parses(monkeypatch)
    with structlog.testing.capture_logs() as events:
        series = feed(data, tmp_path / "cache").fetch_candles("BTC-USD", "1h", LOOKBACK)
    assert any(e["event"] == "replay cache entry unreadable" for e in events) and len(parsed) == 1
    assert len(series) == LOOKBACK


def test_an_unwritable_cache_falls_back_to_memory(data, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")
    with structlog.testing.capture_logs() as events:
        series = feed(data, blocker).fetch_candles("BTC-USD", "1h", LOOKBACK)
    assert len(series) == LOOKBACK and any(e["event"] == "replay cache unwritable" for e in events)


def test_dropped_rows_are_reported_from_the_cache_too(data, tmp_path):
    path = data / "BTC-USD.csv"
    lines = path.read_text().splitlines()
    lines.insert(5, "1499000000,-1,1,1,1,1")  # a non-positive price
    path.write_text("\n".join(lines) + "\n")
    for _ in range(2):
        with structlog.testing.capture_logs() as events:
            feed(data, tmp_path / "cache").fetch_candles("BTC-USD", "1h", LOOKBACK)
        assert any(e["event"] == "dropped invalid candles" and e["dropped"] == {"non-positive price": 1} for e in events)


def test_an_empty_cache_setting_keeps_everything_in_memory(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    replay = ReplayFeed(ReplayConfig(path=data, cache=""))
    replay.fetch_candles("BTC-USD", "1h", LOOKBACK)
    assert not isinstance(replay._history["BTC-USD"].close.base, np.memmap)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candles"]
