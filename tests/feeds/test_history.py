"""`fetch_history`: Coinbase paged against the fake Exchange (real HTTP on 127.0.0.1), replay on the bundled data."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from feedtools import CURRENT, HOUR
from v7 import read_candles_csv
from v7.plugins.feeds.coinbase import CoinbaseCandleFeed, CoinbaseConfig
from v7.plugins.feeds.replay import ReplayConfig, ReplayFeed, bundled_candles_dir

CANDLES = "/products/BTC-USD/candles"


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def buckets_asked(server) -> list[float]:
    sizes = []
    for request in server.requests_to(CANDLES):
        start = datetime.fromisoformat(request.query["start"].replace("Z", "+00:00")).timestamp()
        end = datetime.fromisoformat(request.query["end"].replace("Z", "+00:00")).timestamp()
        sizes.append((end - start) / int(request.query["granularity"]))
    return sizes


# -- coinbase ---------------------------------------------------------------------------------


def test_coinbase_declares_fetch_history_and_history_bars_is_transport():
    assert CoinbaseCandleFeed.supports("fetch_history")
    assert CoinbaseConfig().history_bars == 2000
    assert "history_bars" in CoinbaseConfig.transport_fields


def test_a_range_of_700_hours_is_paged_in_3_requests_oldest_first(coinbase_server, make_coinbase):
    feed = make_coinbase()
    start = CURRENT - 700 * HOUR
    series = feed.fetch_history("BTC-USD", "1h", utc(start), None)

    assert len(coinbase_server.requests_to(CANDLES)) == 3
    assert all(size < 300 for size in buckets_asked(coinbase_server))
    assert coinbase_server.statuses() == [200] * 3
    assert len(series) == 700 and series.gaps == 0 and series.dropped == {}
    assert series.timestamp[0] == start and series.timestamp[-1] == CURRENT - HOUR  # the forming bucket is not history
    assert np.all(np.diff(series.timestamp) == HOUR)  # oldest first, no duplicates across pages
    assert series.as_of is None
    t, low, high, open_, close, volume = coinbase_server.bar("BTC-USD", HOUR, int(series.timestamp[350]))
    assert (series.low[350], series.high[350], series.open[350], series.close[350], series.volume[350]) == (low, high, open_, close, volume)


def test_pages_follow_candles_per_request_and_the_cache_is_left_alone(coinbase_server, make_coinbase):
    feed = make_coinbase(candles_per_request=100)
    series = feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 250 * HOUR), utc(CURRENT - 11 * HOUR))
    assert len(series) == 240
    assert len(coinbase_server.requests_to(CANDLES)) == math.ceil(240 / 100)
    assert all(size < 100 for size in buckets_asked(coinbase_server))
    assert feed.stats["rest_requests"] == 3
    feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 250 * HOUR), utc(CURRENT - 11 * HOUR))
    assert len(coinbase_server.requests_to(CANDLES)) == 6  # a history is fetched whole each time, not cached


def test_range_bounds_are_inclusive_bucket_starts(coinbase_server, make_coinbase):
    feed = make_coinbase()
    # Aligned bounds: both end buckets are in.
    series = feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 10 * HOUR), utc(CURRENT - 3 * HOUR))
    assert series.timestamp.tolist() == list(range(CURRENT - 10 * HOUR, CURRENT - 3 * HOUR + 1, HOUR))
    # Unaligned: the first bucket starting at or after `start`, the last starting at or before `end`.
    series = feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 10 * HOUR + 1), utc(CURRENT - 3 * HOUR + 3599))
    assert series.timestamp[0] == CURRENT - 9 * HOUR and series.timestamp[-1] == CURRENT - 3 * HOUR
    # A naive datetime is UTC.
    naive = utc(CURRENT - 5 * HOUR).replace(tzinfo=None)
    assert feed.fetch_history("BTC-USD", "1h", naive, naive).timestamp.tolist() == [CURRENT - 5 * HOUR]


def test_end_is_capped_at_the_last_closed_bucket_by_the_feeds_clock(coinbase_server, make_coinbase):
    feed = make_coinbase()
    later = feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 5 * HOUR), utc(CURRENT + 10 * HOUR))
    open_ = feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 5 * HOUR), None)
    assert later.timestamp.tolist() == open_.timestamp.tolist() == list(range(CURRENT - 5 * HOUR, CURRENT, HOUR))
    coinbase_server.advance(2 * HOUR)  # the clock moves on: two more buckets have closed
    assert feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 5 * HOUR), None).timestamp[-1] == CURRENT + HOUR


def test_no_start_means_the_last_history_bars_closed_buckets(coinbase_server, make_coinbase):
    feed = make_coinbase(history_bars=450)
    series = feed.fetch_history("BTC-USD", "1h", None, None)
    assert len(series) == 450 and series.timestamp[-1] == CURRENT - HOUR and series.timestamp[0] == CURRENT - 450 * HOUR
    assert len(coinbase_server.requests_to(CANDLES)) == 2
    ended = feed.fetch_history("BTC-USD", "1h", None, utc(CURRENT - 100 * HOUR))
    assert len(ended) == 450 and ended.timestamp[-1] == CURRENT - 100 * HOUR


def test_an_empty_range_asks_nothing(coinbase_server, make_coinbase):
    feed = make_coinbase()
    series = feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 3 * HOUR), utc(CURRENT - 5 * HOUR))
    assert len(series) == 0 and coinbase_server.requests == []
    assert len(feed.fetch_history("BTC-USD", "1h", utc(CURRENT), None)) == 0  # only the forming bucket is after start


def test_history_rows_are_validated_and_rows_outside_the_range_left_out(coinbase_server, make_coinbase, captured_logs):
    start = CURRENT - 20 * HOUR
    rows = [[t, 100.0, 110.0, 101.0, 109.0, 5.0] for t in range(start - 5 * HOUR, CURRENT + HOUR, HOUR)]
    by_time = {row[0]: row for row in rows}
    by_time[start + 2 * HOUR][4] = None  # missing close
    by_time[start + 5 * HOUR][2] = 90.0  # high below open/close
    by_time[start + 7 * HOUR][1] = by_time[start + 7 * HOUR][3] = 0.0  # zero price
    by_time[start + 9 * HOUR][5] = -1.0  # negative volume
    rows.append("not a row")
    # Rows the fake serves whatever the range (a string time): one before `start`, and the forming bucket.
    rows += [[str(start - 3 * HOUR), 1.0, 2.0, 1.0, 2.0, 1.0], [str(CURRENT), 1.0, 2.0, 1.0, 2.0, 1.0]]
    coinbase_server.set_rows("BTC-USD", HOUR, rows)
    feed = make_coinbase()

    series = feed.fetch_history("BTC-USD", "1h", utc(start), utc(CURRENT - 1))

    assert len(coinbase_server.requests_to(CANDLES)) == 1
    assert series.timestamp[0] == start and series.timestamp[-1] == CURRENT - HOUR
    assert len(series) == 16
    assert series.dropped == {
        "non-finite price": 1, "high below open/close": 1, "non-positive price": 1, "invalid volume": 1, "malformed row": 1,
    }
    assert series.gaps == 4  # the dropped rows leave holes; nothing is filled in
    assert any(e["event"] == "dropped invalid candles" for e in captured_logs)
    assert any(e["event"].startswith("gaps in candles") for e in captured_logs)


def test_history_gaps_are_reported_never_invented(coinbase_server, make_coinbase):
    missing = [CURRENT - 10 * HOUR, CURRENT - 11 * HOUR, CURRENT - 350 * HOUR]
    coinbase_server.omit("BTC-USD", missing)
    feed = make_coinbase()
    series = feed.fetch_history("BTC-USD", "1h", utc(CURRENT - 400 * HOUR), None)
    assert len(series) == 397 and series.gaps == 3
    assert not set(missing) & set(series.timestamp.tolist())


def test_history_granularity_errors_name_the_plugin(make_coinbase):
    feed = make_coinbase()
    with pytest.raises(ValueError, match="coinbase: unsupported granularity '2h'; expected one of 1m"):
        feed.fetch_history("BTC-USD", "2h", None, None)


# -- replay -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc():
    return read_candles_csv(bundled_candles_dir() / "BTC-USD.csv", "BTC-USD", "1h")


def test_replay_history_without_bounds_is_the_whole_file(btc):
    feed = ReplayFeed()
    assert ReplayFeed.supports("fetch_history")
    series = feed.fetch_history("BTC-USD", "1h", None, None)
    assert len(series) == len(btc)
    assert np.array_equal(series.timestamp, btc.timestamp) and np.array_equal(series.close, btc.close)


def test_replay_history_is_cut_to_the_inclusive_range(btc):
    feed = ReplayFeed()
    start, end = int(btc.timestamp[1000]), int(btc.timestamp[1999])
    series = feed.fetch_history("BTC-USD", "1h", utc(start), utc(end))
    assert series.timestamp[0] == start and series.timestamp[-1] == end
    assert np.array_equal(series.timestamp, btc.timestamp[1000:2000])
    # Between bars: the first at or after start, the last at or before end; naive times are UTC.
    inner = feed.fetch_history("BTC-USD", "1h", utc(start + 1).replace(tzinfo=None), utc(end - 1))
    assert inner.timestamp[0] == btc.timestamp[1001] and inner.timestamp[-1] == btc.timestamp[1998]
    assert len(feed.fetch_history("BTC-USD", "1h", utc(end), utc(start))) == 0
    tail = feed.fetch_history("BTC-USD", "1h", utc(int(btc.timestamp[-10])), None)
    assert len(tail) == 10 and tail.timestamp[-1] == btc.timestamp[-1]
    before = feed.fetch_history("BTC-USD", "1h", None, utc(int(btc.timestamp[9])))
    assert len(before) == 10 and before.timestamp[0] == btc.timestamp[0]


def test_replay_history_ignores_the_replays_own_start(btc):
    feed = ReplayFeed(ReplayConfig(start=utc(int(btc.timestamp[5000]))))
    assert len(feed.fetch_history("BTC-USD", "1h", None, None)) == len(btc)
    # ... which still says where `v7 run` begins.
    assert feed.fetch_candles("BTC-USD", "1h", 10).timestamp[-1] == btc.timestamp[5000]
    after = feed.fetch_history("BTC-USD", "1h", utc(int(btc.timestamp[0])), utc(int(btc.timestamp[0]) + timedelta(hours=2).total_seconds()))
    assert after.timestamp.tolist() == btc.timestamp[:3].tolist()


def test_replay_history_refuses_a_mismatched_granularity():
    with pytest.raises(ValueError, match="candles are 3600 s apart, but engine.granularity is '1d'"):
        ReplayFeed().fetch_history("ETH-USD", "1d", None, None)


# -- issue #11: replay data that cannot be right is refused with a clear message ------------------------------


def test_one_csv_file_for_several_symbols_is_refused_before_anything_runs(tmp_path):
    import shutil

    from helpers import BTC_CSV, run_v7

    shutil.copy(BTC_CSV, tmp_path / "btc.csv")
    (tmp_path / "config.toml").write_text(
        '[engine]\nsymbols = ["BTC-USD", "ETH-USD", "DOGE-USD"]\n[feeds.replay]\npath = "btc.csv"\n[sinks.sqlite]\npath = "v7.db"\n'
    )
    for command in (["run", "--config", "config.toml", "--iterations", "1"], ["config", "check", "--config", "config.toml"]):
        done = run_v7(*command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "path btc.csv is one file" in done.stderr and "BTC-USD, ETH-USD, DOGE-USD" in done.stderr
    assert not (tmp_path / "v7.db").exists()  # nothing stored at BTC's prices for ETH and DOGE
    (tmp_path / "one.toml").write_text('[engine]\nsymbols = ["BTC-USD"]\n[feeds.replay]\npath = "btc.csv"\n[sinks.sqlite]\npath = "v7.db"\n')
    assert run_v7("config", "check", "--config", "one.toml", cwd=tmp_path).returncode == 0


def test_a_symbol_missing_from_the_replay_data_fails_config_check(tmp_path):
    from helpers import run_v7

    (tmp_path / "config.toml").write_text('[engine]\nsymbols = ["BTC-USD", "DOGE-USD"]\n')
    done = run_v7("config", "check", "--config", "config.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert "no candles for DOGE-USD" in done.stderr and "available: BTC-USD, ETH-USD" in done.stderr


def test_a_header_only_csv_names_the_file_instead_of_an_index_error(tmp_path):
    from v7 import CandleDataError
    from v7.plugins.feeds.replay import ReplayConfig, ReplayFeed

    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,open,high,low,close,volume\n")
    feed = ReplayFeed(ReplayConfig(path=empty))
    with pytest.raises(CandleDataError, match=r"empty\.csv: no valid candles"):
        feed.fetch_candles("BTC-USD", "1h", 100)
