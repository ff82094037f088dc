"""The candle CSV format and validation at the feed boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from v7.core.candles import read_candles_csv, series_from_frame


def test_csv_in_any_order_with_iso_or_unix_timestamps(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01T02:00:00Z,3,4,2,3.5,1\n"
        "1704067200,1,2,0.5,1.5,1\n"
        "2024-01-01T01:00:00+00:00,2,3,1,2.5,1\n"
    )
    series = read_candles_csv(path, "BTC-USD")
    assert series.timestamp.tolist() == [1704067200, 1704070800, 1704074400]
    assert series.close.tolist() == [1.5, 2.5, 3.5]
    assert series.gaps == 0 and series.dropped == {}


def test_bad_rows_are_dropped_and_counted():
    frame = pd.DataFrame(
        {
            "timestamp": [0, 3600, 7200, 10800, 14400, 18000, 18000, 28800, "garbage"],
            "open": [1, 1, 1, np.nan, -1, 1, 1, 1, 1],
            "high": [2, 0.5, 2, 2, 2, 2, 2, 2, 2],
            "low": [0.5, 0.5, 1.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
            "close": [1.5, 1, 1, 1, 1, 1.2, 1.3, 1, 1],
            "volume": [1, 1, 1, 1, 1, 1, 1, 1, 1],
        }
    )
    series = series_from_frame(frame, "BTC-USD", "1h")
    assert series.dropped == {
        "unreadable timestamp": 1,
        "non-finite price": 1,
        "non-positive price": 1,
        "high below open/close": 1,
        "low above open/close": 1,
        "duplicate timestamp": 1,
    }
    assert series.timestamp.tolist() == [0, 18000, 28800]
    assert series.close.tolist() == [1.5, 1.3, 1.0]  # the later duplicate wins
    assert series.gaps == 4 + 2  # missing hours between 0→18000 and 18000→28800


def test_millisecond_timestamps_are_normalised():
    frame = pd.DataFrame({"timestamp": [1704067200000, 1704070800000], "open": [1, 1], "high": [1, 1], "low": [1, 1], "close": [1, 1]})
    assert series_from_frame(frame).timestamp.tolist() == [1704067200, 1704070800]


def test_a_slice_says_nothing_about_later_bars():
    frame = pd.DataFrame({"timestamp": [0, 3600, 7200, 36000], "open": [1] * 4, "high": [1] * 4, "low": [1] * 4, "close": [1] * 4})
    series = series_from_frame(frame, "BTC-USD", "1h")
    assert series.gaps == 7  # 03:00 … 09:00 missing
    assert series.slice(0, 3).gaps == 0  # the gap after bar 2 is in the future of the slice
    assert series.tail(2).gaps == 7
    assert series.slice(0, 3).dropped == {}


def test_a_forming_bar_dates_the_signal_by_its_data():
    from datetime import datetime, timezone

    frame = pd.DataFrame({"timestamp": [0, 3600], "open": [1, 1], "high": [1, 1], "low": [1, 1], "close": [1, 1]})
    closed = series_from_frame(frame, "BTC-USD", "1h")
    assert closed.signal_time == datetime.fromtimestamp(3600, timezone.utc)
    from dataclasses import replace

    forming = replace(closed, as_of=3600 + 900)
    assert forming.signal_time == datetime.fromtimestamp(4500, timezone.utc)
    assert forming.tail(1).as_of == 4500 and forming.slice(0, 1).as_of is None


def test_the_all_numeric_fast_path_equals_the_column_by_column_path():
    rng = np.random.default_rng(3)
    close = 100 + np.cumsum(rng.normal(0, 1, 200))
    frame = pd.DataFrame({
        "timestamp": 3600 * np.arange(200), "open": close, "high": close + 1, "low": close - 1, "close": close, "volume": rng.uniform(1, 5, 200),
    })
    fast = series_from_frame(frame, "BTC-USD", "1h")
    slow = series_from_frame(frame.assign(note="text"), "BTC-USD", "1h")  # a text column: the column-by-column path
    for name in ("timestamp", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert (fast.gaps, fast.dropped) == (slow.gaps, slow.dropped) == (0, {})
    frame.loc[0, "close"] = -1.0  # the series owns its arrays: editing the frame afterwards changes nothing
    assert fast.close[0] == close[0]


def test_unsorted_or_invalid_numeric_frames_still_go_through_every_check():
    frame = pd.DataFrame({
        "timestamp": [7200, 0, 3600, 3600], "open": [1.0, 1.0, 1.0, 1.0], "high": [1.0, 1.0, 0.5, 1.0],
        "low": [1.0, 1.0, 1.0, 1.0], "close": [1.0, 1.0, 1.0, 1.0], "volume": [1.0, 1.0, 1.0, 1.0],
    })
    series = series_from_frame(frame, "BTC-USD", "1h")
    assert series.timestamp.tolist() == [0, 3600, 7200]
    assert series.dropped == {"high below open/close": 1}


def test_gap_counts_answer_every_slice_as_a_recount_would():
    stamps = [0, 3600, 7200, 18000, 21600, 36000, 39600]
    frame = pd.DataFrame({"timestamp": stamps, "open": [1.0] * 7, "high": [1.0] * 7, "low": [1.0] * 7, "close": [1.0] * 7, "volume": [1.0] * 7})
    series = series_from_frame(frame, "BTC-USD", "1h")
    counts = series.gap_counts()
    for a in range(len(series)):
        for b in range(a + 1, len(series) + 1):
            assert series.slice(a, b, int(counts[b - 1] - counts[a])).gaps == series.slice(a, b).gaps


def test_datetimes_in_a_column_or_the_index_are_unix_seconds():
    times = pd.date_range("2024-01-01", periods=3, freq="h")
    prices = {"open": [1.0, 2.0, 3.0], "high": [2.0, 3.0, 4.0], "low": [0.5, 1.5, 2.5], "close": [1.5, 2.5, 3.5], "volume": [1.0, 1.0, 1.0]}
    expected = [1704067200, 1704070800, 1704074400]
    for stamps in (times, times.tz_localize("UTC"), times.tz_localize("UTC").tz_convert("Asia/Tokyo")):
        assert series_from_frame(pd.DataFrame({"timestamp": stamps, **prices})).timestamp.tolist() == expected
        assert series_from_frame(pd.DataFrame(prices, index=stamps)).timestamp.tolist() == expected  # an unnamed datetime index
        assert series_from_frame(pd.DataFrame(prices, index=stamps.rename("Date"))).timestamp.tolist() == expected


def test_columns_in_another_order_and_an_infinite_high_are_handled_on_the_fast_path():
    frame = pd.DataFrame({
        "Close": [1.5, 2.5, 3.5], "Volume": [1.0, 2.0, 3.0], "Timestamp": [0, 3600, 7200],
        "High": [2.0, np.inf, 4.0], "Low": [0.5, 1.5, 2.5], "Open": [1.0, 2.0, 3.0],
    })
    series = series_from_frame(frame, "BTC-USD", "1h")
    assert series.timestamp.tolist() == [0, 7200] and series.close.tolist() == [1.5, 3.5] and series.volume.tolist() == [1.0, 3.0]
    assert series.dropped == {"non-finite price": 1}


def test_the_column_by_column_path_owns_its_arrays_too():
    close = np.array([1.0, 2.0, 3.0])
    frame = pd.DataFrame({"timestamp": [0, 3600, 7200], "open": close, "high": close, "low": close, "close": close, "volume": close, "note": "x"})
    series = series_from_frame(frame, "BTC-USD", "1h")
    frame.loc[0, "close"] = -1.0
    assert series.close.tolist() == [1.0, 2.0, 3.0]
