"""CoinbaseCandleFeed against the fake Exchange (real HTTP and WebSocket on 127.0.0.1, no mocks)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fakes._http_server import html_page, malformed_json, non_json, rate_limited, server_error, slow
from fakes.coinbase_server import WS_CAPTURE
from feedtools import CURRENT, HOUR, NOW
from v7.core.registry import PluginSource, Registry
from v7.plugins.feeds import coinbase
from v7.http import FeedRateLimitedError, FeedRequestError, FeedResponseError, FeedUnavailableError

CANDLES = "/products/BTC-USD/candles"


def page_sizes(server, path=CANDLES):
    """Buckets each request asked for, as the server counts them."""
    from datetime import datetime

    sizes = []
    for request in server.requests_to(path):
        start = datetime.fromisoformat(request.query["start"].replace("Z", "+00:00")).timestamp()
        end = datetime.fromisoformat(request.query["end"].replace("Z", "+00:00")).timestamp()
        sizes.append((end - start) / int(request.query["granularity"]))
    return sizes


# -- REST history ------------------------------------------------------------------------------


def test_1000_hourly_candles_take_4_pages_oldest_first_forming_bucket_dropped(coinbase_server, make_coinbase):
    feed = make_coinbase()
    series = feed.fetch_candles("BTC-USD", "1h", 1000)

    assert len(coinbase_server.requests_to(CANDLES)) == 4
    assert all(size < 300 for size in page_sizes(coinbase_server))
    assert coinbase_server.statuses() == [200] * 4  # the client never asks for more than 300
    assert len(series) == 1000 and series.gaps == 0 and series.dropped == {}
    assert np.all(np.diff(series.timestamp) == HOUR)  # oldest first, no duplicates across pages
    # The server did serve the forming bucket; the feed keeps only closed ones.
    assert coinbase_server.bar("BTC-USD", HOUR, CURRENT) is not None
    assert series.timestamp[-1] == CURRENT - HOUR
    assert series.timestamp[0] == CURRENT - 1000 * HOUR
    # Columns mapped from [time, low, high, open, close, volume].
    t, low, high, open_, close, volume = coinbase_server.bar("BTC-USD", HOUR, int(series.timestamp[500]))
    assert (series.low[500], series.high[500], series.open[500], series.close[500], series.volume[500]) == (low, high, open_, close, volume)


def test_later_fetches_ask_only_for_new_bars(coinbase_server, make_coinbase):
    feed = make_coinbase()
    feed.fetch_candles("BTC-USD", "1h", 1000)
    assert len(coinbase_server.requests_to(CANDLES)) == 4

    same = feed.fetch_candles("BTC-USD", "1h", 1000)  # nothing closed since: no request at all
    assert len(coinbase_server.requests_to(CANDLES)) == 4 and same.timestamp[-1] == CURRENT - HOUR

    coinbase_server.advance(2 * HOUR)
    later = feed.fetch_candles("BTC-USD", "1h", 1000)
    requests = coinbase_server.requests_to(CANDLES)
    assert len(requests) == 5
    assert requests[-1].query["start"] == "2026-01-01T12:00:00Z"  # from the first bucket not yet fetched
    assert later.timestamp[-1] == CURRENT + HOUR and len(later) == 1000
    assert np.all(np.diff(later.timestamp) == HOUR)

    feed.fetch_candles("BTC-USD", "1h", 1200)  # a longer lookback fetches only the older part
    requests = coinbase_server.requests_to(CANDLES)
    assert len(requests) == 6 and requests[-1].query["end"] == "2025-11-20T21:59:59Z"  # just before the cached bars
    assert len(feed.fetch_candles("BTC-USD", "1h", 1200)) == 1200
    assert len(coinbase_server.requests_to(CANDLES)) == 6


def test_a_bucket_that_just_closed_is_asked_for_again_until_it_settles(coinbase_server, make_coinbase):
    coinbase_server.set_now(CURRENT + 10)  # the previous bucket closed 10 s ago
    feed = make_coinbase(settle_seconds=60)
    feed.fetch_candles("BTC-USD", "1h", 50)
    feed.fetch_candles("BTC-USD", "1h", 50)
    requests = coinbase_server.requests_to(CANDLES)
    assert len(requests) == 2 and requests[1].query["start"] == "2026-01-01T11:00:00Z"
    coinbase_server.advance(60)
    feed.fetch_candles("BTC-USD", "1h", 50)  # settled now: asked once more, then cached
    feed.fetch_candles("BTC-USD", "1h", 50)
    assert len(coinbase_server.requests_to(CANDLES)) == 3


def test_over_range_request_is_the_servers_400_as_a_clear_error(coinbase_server, make_coinbase):
    feed = make_coinbase()
    with pytest.raises(FeedRequestError) as caught:
        feed.fetch_range("BTC-USD", "1h", NOW - 1000 * HOUR, NOW)
    assert "HTTP 400" in str(caught.value)
    assert "Count of aggregations requested exceeds 300" in str(caught.value)
    assert coinbase_server.statuses() == [400]  # a 400 is not retried


def test_unsupported_granularity_and_unknown_product(coinbase_server, make_coinbase):
    feed = make_coinbase()
    with pytest.raises(ValueError, match="unsupported granularity '2h'"):
        feed.fetch_candles("BTC-USD", "2h", 10)
    assert coinbase_server.requests == []
    with pytest.raises(FeedRequestError, match="Unsupported granularity"):
        feed.fetch_range("BTC-USD", 7200, NOW - 10 * 7200, NOW)
    with pytest.raises(FeedRequestError, match="HTTP 404: NotFound"):
        feed.fetch_candles("NOPE-USD", "1h", 10)


def test_429_honours_retry_after_then_succeeds(coinbase_server, make_coinbase):
    feed = make_coinbase()
    coinbase_server.inject(rate_limited(retry_after=0.3))
    series = feed.fetch_candles("BTC-USD", "1h", 100)
    first, second = coinbase_server.requests_to(CANDLES)
    assert len(series) == 100
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.29  # waited as told, not the 10 ms backoff


def test_429_asking_too_long_a_wait_fails_at_once(coinbase_server, make_coinbase):
    feed = make_coinbase(max_retry_after_seconds=1)
    coinbase_server.inject(rate_limited(retry_after=120))
    with pytest.raises(FeedRateLimitedError, match="asks to wait 120 s"):
        feed.fetch_candles("BTC-USD", "1h", 100)
    assert len(coinbase_server.requests) == 1


def test_500s_are_retried_then_recover(coinbase_server, make_coinbase):
    feed = make_coinbase(max_retries=3)
    coinbase_server.inject(server_error(500), times=2)
    assert len(feed.fetch_candles("BTC-USD", "1h", 100)) == 100
    assert coinbase_server.statuses() == [500, 500, 200]

    coinbase_server.reset_log()
    coinbase_server.fail_always(server_error(502))
    with pytest.raises(FeedUnavailableError, match=r"HTTP 502.*gave up after 4 attempts"):
        feed.fetch_candles("ETH-USD", "1h", 100)
    assert coinbase_server.statuses() == [502] * 4  # bounded: 1 + max_retries
    coinbase_server.recover()
    assert len(feed.fetch_candles("ETH-USD", "1h", 100)) == 100


def test_timeouts_are_retried_and_bounded(coinbase_server, make_coinbase):
    feed = make_coinbase(read_timeout_seconds=0.2, max_retries=1)
    coinbase_server.inject(slow(1.0))
    assert len(feed.fetch_candles("BTC-USD", "1h", 50)) == 50
    assert len(coinbase_server.requests) == 2

    coinbase_server.inject(slow(1.0), times=2)
    with pytest.raises(FeedUnavailableError, match="timed out"):
        feed.fetch_candles("ETH-USD", "1h", 50)


@pytest.mark.parametrize(
    "fault, expected",
    [
        (malformed_json(), "malformed response: a non-JSON body"),
        (html_page(200), "an HTML page ('503 Service Temporarily Unavailable') instead of JSON"),
        (non_json(), "a non-JSON body starting 'upstream connect error"),
    ],
)
def test_malformed_and_html_bodies_are_clear_errors_and_the_next_call_works(coinbase_server, make_coinbase, fault, expected):
    feed = make_coinbase()
    coinbase_server.inject(fault)
    with pytest.raises(FeedResponseError) as caught:
        feed.fetch_candles("BTC-USD", "1h", 100)
    assert expected in str(caught.value)
    assert len(feed.fetch_candles("BTC-USD", "1h", 100)) == 100


def test_html_error_page_is_retried_then_reported(coinbase_server, make_coinbase):
    feed = make_coinbase(max_retries=1)
    coinbase_server.fail_always(html_page(503))
    with pytest.raises(FeedUnavailableError, match=r"HTTP 503: an HTML page \('503 Service Temporarily Unavailable'\)"):
        feed.fetch_candles("BTC-USD", "1h", 100)
    coinbase_server.recover()
    assert len(feed.fetch_candles("BTC-USD", "1h", 100)) == 100


def test_a_json_object_instead_of_rows_is_a_clear_error(coinbase_server, make_coinbase):
    from fakes._http_server import Fault

    feed = make_coinbase()
    coinbase_server.inject(Fault("object", 200, json.dumps({"message": "maintenance"})))
    with pytest.raises(FeedResponseError, match="expected a JSON array of candles, got an object"):
        feed.fetch_candles("BTC-USD", "1h", 10)


def test_invalid_rows_are_dropped_and_counted(coinbase_server, make_coinbase, captured_logs):
    start = CURRENT - 20 * HOUR
    rows = [[t, 100.0, 110.0, 101.0, 109.0, 5.0] for t in range(start, CURRENT, HOUR)]
    rows[2] = [rows[2][0], 100.0, 110.0, 101.0, None, 5.0]  # missing close
    rows[5] = [rows[5][0], 100.0, 90.0, 101.0, 109.0, 5.0]  # high below open/close
    rows[7] = [rows[7][0], 0.0, 110.0, 0.0, 109.0, 5.0]  # zero price
    rows[9] = [rows[9][0], 100.0, 110.0, 101.0, 109.0, -1.0]  # negative volume
    rows.append("not a row")
    coinbase_server.set_rows("BTC-USD", HOUR, rows)
    feed = make_coinbase()

    series = feed.fetch_candles("BTC-USD", "1h", 20)

    assert len(series) == 16
    assert series.dropped == {
        "non-finite price": 1, "high below open/close": 1, "non-positive price": 1, "invalid volume": 1, "malformed row": 1,
    }
    assert series.gaps == 4  # the dropped rows leave holes; nothing is filled in
    assert any(e["event"] == "dropped invalid candles" for e in captured_logs)


def test_gaps_are_reported_never_invented(coinbase_server, make_coinbase, captured_logs):
    missing = [CURRENT - 10 * HOUR, CURRENT - 11 * HOUR, CURRENT - 50 * HOUR]
    coinbase_server.omit("BTC-USD", missing)
    feed = make_coinbase()
    series = feed.fetch_candles("BTC-USD", "1h", 100)
    assert len(series) == 97 and series.gaps == 3
    assert not set(missing) & set(series.timestamp.tolist())
    gap_logs = [e for e in captured_logs if e["event"].startswith("gaps in candles")]
    assert gap_logs and gap_logs[0]["missing"] == 3 and gap_logs[0]["symbol"] == "BTC-USD"
    assert gap_logs[0]["first_missing"][0] == "2025-12-30T10:00:00Z"


# -- rate limit and concurrency ---------------------------------------------------------------


def test_50_symbols_run_concurrently_within_the_rate_limit(coinbase_server, make_coinbase):
    symbols = [f"C{i:02d}-USD" for i in range(50)]
    for symbol in symbols:
        coinbase_server.add_product(symbol)
    feed = make_coinbase(requests_per_second=100, burst=1)
    feed.fetch_candles("BTC-USD", "1h", 10)  # warm up: imports and the HTTP client are not what is measured
    coinbase_server.reset_log()
    coinbase_server.latency = 0.1  # serial fetching would take 50 × 0.1 s = 5 s

    started = time.monotonic()  # the fake stamps arrivals with time.monotonic() too
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda s: feed.fetch_candles(s, "1h", 100), symbols))
    elapsed = time.monotonic() - started

    assert all(len(r) == 100 for r in results)
    assert len(coinbase_server.requests) == 50
    assert coinbase_server.max_in_flight >= 3  # requests for different symbols overlapped
    assert elapsed < 2.5, f"{elapsed:.2f} s: symbols were not fetched concurrently (serial ≥ 5 s)"
    assert max(r.at for r in coinbase_server.requests) - started >= 49 / 100 - 0.01  # and never faster than 100/s


def test_rate_of_10_per_second_is_respected_across_threads(coinbase_server, make_coinbase):
    symbols = [f"R{i:02d}-USD" for i in range(12)]
    for symbol in symbols:
        coinbase_server.add_product(symbol)
    feed = make_coinbase(requests_per_second=10, burst=1)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda s: feed.fetch_candles(s, "1h", 24), symbols))
    arrivals = sorted(r.at for r in coinbase_server.requests)
    assert len(arrivals) == 12
    assert arrivals[-1] - started >= 11 / 10 - 0.01  # the 12th request's slot is 1.1 s after the first
    for i in range(len(arrivals)):
        for j in range(i + 1, len(arrivals)):
            # rate 10/s, burst 1: at most 1 + 10·Δt requests in any Δt. Arrival times are taken at the
            # server, so allow one late-woken thread and 0.1 s of scheduling jitter on a loaded machine.
            assert j - i + 1 <= 1 + 10 * (arrivals[j] - arrivals[i] + 0.1) + 1


# -- live WebSocket -------------------------------------------------------------------------


def live_feed(make_coinbase, server, symbol="BTC-USD", lookback=100, **overrides):
    """A live feed that has fetched once, connected, subscribed and re-seeded its forming bar."""
    feed = make_coinbase(live=True, **overrides)
    feed.fetch_candles(symbol, "1h", lookback)
    assert feed.wait_until(lambda: symbol in feed.subscribed_products, 5)
    assert server.wait_until(lambda: server.subscribed(symbol), 5)
    feed.fetch_candles(symbol, "1h", lookback)  # seeds the forming bar after the socket is up
    return feed


def test_live_price_and_forming_candle_from_ticks(coinbase_server, make_coinbase):
    feed = make_coinbase(live=True)
    first = feed.fetch_candles("BTC-USD", "1h", 100)
    assert first.timestamp[-1] == CURRENT  # live: ends with the forming bucket, seeded from REST
    assert feed.wait_until(lambda: "BTC-USD" in feed.subscribed_products, 5)
    seeded = feed.fetch_candles("BTC-USD", "1h", 100)
    requests = len(coinbase_server.requests_to(CANDLES))

    base = float(seeded.close[-1])
    coinbase_server.push_ticker("BTC-USD", base * 1.25, size=2.0)
    assert feed.wait_until(lambda: feed.latest_price("BTC-USD") == round(base * 1.25, 2), 5)
    fresh = feed.fetch_candles("BTC-USD", "1h", 100)

    assert len(coinbase_server.requests_to(CANDLES)) == requests  # the ticks are the fresh data: no request
    assert len(fresh) == 100 and fresh.timestamp[-1] == CURRENT
    assert fresh.close[-1] == round(base * 1.25, 2) and fresh.high[-1] == fresh.close[-1]
    assert fresh.open[-1] == seeded.open[-1]  # the true open comes from REST
    assert fresh.volume[-1] == pytest.approx(seeded.volume[-1] + 2.0)
    assert np.array_equal(fresh.timestamp[:-1], seeded.timestamp[:-1])

    # The bucket closes: the closed bar comes from REST, the new forming bar starts from ticks.
    coinbase_server.advance(HOUR)
    coinbase_server.push_ticker("BTC-USD", base * 1.2, size=1.0)
    assert feed.wait_until(lambda: feed.latest_price("BTC-USD") == round(base * 1.2, 2), 5)
    rolled = feed.fetch_candles("BTC-USD", "1h", 100)
    assert len(coinbase_server.requests_to(CANDLES)) == requests + 1
    assert rolled.timestamp[-1] == CURRENT + HOUR and rolled.close[-1] == round(base * 1.2, 2)
    closed = coinbase_server.bar("BTC-USD", HOUR, CURRENT)
    assert rolled.timestamp[-2] == CURRENT and rolled.close[-2] == closed[4] and rolled.high[-2] == closed[2]


def test_out_of_order_and_duplicate_ticks_are_ignored(coinbase_server, make_coinbase):
    feed = live_feed(make_coinbase, coinbase_server)
    bar = feed.fetch_candles("BTC-USD", "1h", 100)
    base = float(bar.close[-1])
    requests = len(coinbase_server.requests_to(CANDLES))

    coinbase_server.push_ticker("BTC-USD", base + 1, sequence=5_000)
    coinbase_server.push_ticker("BTC-USD", base * 3, sequence=4_999)  # out of order
    coinbase_server.push_ticker("BTC-USD", base * 3, sequence=5_000)  # duplicate
    coinbase_server.push_ticker("BTC-USD", base + 2, sequence=5_042)  # a gap: normal on ticker
    assert feed.wait_until(lambda: feed.latest_price("BTC-USD") == round(base + 2, 2), 5)

    assert feed.stats["ignored_messages"] == 2 and feed.stats["ticks"] == 2
    after = feed.fetch_candles("BTC-USD", "1h", 100)
    assert len(coinbase_server.requests_to(CANDLES)) == requests
    assert after.high[-1] < base * 2 and after.close[-1] == round(base + 2, 2)


def test_dropped_socket_reconnects_resubscribes_and_backfills(coinbase_server, make_coinbase, captured_logs):
    feed = live_feed(make_coinbase, coinbase_server)
    before = len(coinbase_server.requests_to(CANDLES))
    coinbase_server.advance(2 * HOUR)  # two buckets close while the socket is down

    assert coinbase_server.drop_connections() == 1
    assert feed.wait_until(lambda: feed.stats["backfills"] >= 1, 5)

    assert feed.stats["reconnects"] == 1
    assert "no close frame" in (feed.last_disconnect or "")
    assert coinbase_server.ws_connections == 2
    assert [m[:2] for m in coinbase_server.subscribe_messages] == [(1, ["BTC-USD"]), (2, ["BTC-USD"])]
    backfill = coinbase_server.requests_to(CANDLES)[before:]
    assert len(backfill) == 1 and backfill[0].query["start"] == "2026-01-01T12:00:00Z"

    series = feed.fetch_candles("BTC-USD", "1h", 100)  # the backfill already fetched what was missed
    assert len(coinbase_server.requests_to(CANDLES)) == before + 1
    assert series.timestamp[-3:].tolist() == [CURRENT, CURRENT + HOUR, CURRENT + 2 * HOUR]
    assert any(e["event"] == "websocket disconnected; reconnecting" for e in captured_logs)


def test_heartbeat_silence_forces_a_reconnect(coinbase_server, make_coinbase):
    feed = live_feed(make_coinbase, coinbase_server)
    coinbase_server.silence()
    assert feed.wait_until(lambda: feed.stats["reconnects"] >= 1 and feed.connected, 5)
    assert "no heartbeat for 1 s" in feed.last_disconnect
    assert coinbase_server.wait_until(lambda: len(coinbase_server.subscribe_messages) >= 2, 5)
    assert coinbase_server.subscribe_messages[-1][1] == ["BTC-USD"]


def test_new_symbols_are_subscribed_on_the_open_socket(coinbase_server, make_coinbase):
    feed = live_feed(make_coinbase, coinbase_server)
    feed.fetch_candles("ETH-USD", "1h", 50)
    assert feed.wait_until(lambda: feed.subscribed_products == {"BTC-USD", "ETH-USD"}, 5)
    assert coinbase_server.ws_connections == 1
    assert coinbase_server.subscribe_messages[-1][1] == ["ETH-USD"]


def test_a_product_the_socket_refuses_is_dropped_and_the_rest_resubscribed(coinbase_server, make_coinbase):
    feed = live_feed(make_coinbase, coinbase_server)
    with pytest.raises(FeedRequestError, match="HTTP 404"):
        feed.fetch_candles("NOPE-USD", "1h", 10)  # REST refuses it too: the engine skips the symbol
    assert feed.wait_until(lambda: "NOPE-USD" in feed.invalid_products and feed.stats["reconnects"] == 1 and feed.connected, 5)
    assert coinbase_server.wait_until(lambda: coinbase_server.subscribe_messages[-1][1] == ["BTC-USD"], 5)
    with pytest.raises(FeedRequestError):
        feed.fetch_candles("NOPE-USD", "1h", 10)
    assert feed.stats["reconnects"] == 1  # not subscribed again


def test_real_captured_ticker_messages_are_understood(coinbase_server, make_coinbase):
    feed = live_feed(make_coinbase, coinbase_server)
    tickers = [json.loads(line)["msg"] for line in WS_CAPTURE.read_text().splitlines()]
    tickers = [m for m in tickers if m["type"] == "ticker"]
    last_seen: dict[str, int] = {}
    expected_ignored = 0
    for message in tickers:
        if message["sequence"] <= last_seen.get(message["product_id"], -1):
            expected_ignored += 1
        else:
            last_seen[message["product_id"]] = message["sequence"]
        coinbase_server.broadcast(message)
    assert feed.wait_until(lambda: feed.stats["ticks"] + feed.stats["ignored_messages"] == len(tickers), 5)
    assert feed.stats["malformed_messages"] == 0 and feed.stats["ignored_messages"] == expected_ignored
    last = {m["product_id"]: m for m in tickers}
    assert feed.latest_price("SKL-USD") == float(last["SKL-USD"]["price"])


def test_malformed_socket_messages_do_not_break_the_stream(coinbase_server, make_coinbase):
    feed = live_feed(make_coinbase, coinbase_server)
    coinbase_server.broadcast("{not json")
    coinbase_server.broadcast({"type": "ticker", "product_id": "BTC-USD", "price": "abc", "sequence": 1})
    coinbase_server.broadcast({"type": "something-new", "product_id": "BTC-USD"})
    price = round(float(feed.fetch_candles("BTC-USD", "1h", 10).close[-1]) * 1.01, 2)
    coinbase_server.push_ticker("BTC-USD", price)
    assert feed.wait_until(lambda: feed.latest_price("BTC-USD") == price, 5)
    assert feed.stats["malformed_messages"] == 2 and feed.stats["reconnects"] == 0


def test_close_stops_the_socket_thread(coinbase_server, make_coinbase):
    feed = live_feed(make_coinbase, coinbase_server)
    thread = feed._ws_thread
    feed.close()
    assert not thread.is_alive()
    assert coinbase_server.wait_until(lambda: not coinbase_server.live_sessions(), 5)


# -- absurd ticks (#11.8) and refused products (#11.7) -------------------------------------------


def test_absurd_ticks_are_rejected_counted_and_logged_once(coinbase_server, make_coinbase, captured_logs):
    feed = live_feed(make_coinbase, coinbase_server)
    seeded = feed.fetch_candles("BTC-USD", "1h", 100)
    base = float(seeded.close[-1])
    requests = len(coinbase_server.requests_to(CANDLES))

    coinbase_server.push_ticker("BTC-USD", 1e308)  # finite, absurd
    coinbase_server.push_ticker("BTC-USD", base * 0.0001)
    coinbase_server.push_ticker("BTC-USD", base * 1.4)  # within ±50% of the REST close: accepted
    coinbase_server.push_ticker("BTC-USD", base * 1.4 * 1.4)  # within ±50% of the last accepted tick
    coinbase_server.push_ticker("BTC-USD", base * 1.4 * 1.4 * 3)
    assert feed.wait_until(lambda: feed.stats["ticks"] + feed.stats["rejected_ticks"] == 5, 5)

    assert feed.stats["rejected_ticks"] == 3 and feed.stats["ticks"] == 2
    assert feed.latest_price("BTC-USD") == round(base * 1.4 * 1.4, 2)
    series = feed.fetch_candles("BTC-USD", "1h", 100)
    assert len(coinbase_server.requests_to(CANDLES)) == requests
    assert series.close[-1] == round(base * 1.4 * 1.4, 2) and series.high[-1] == series.close[-1]
    assert series.low[-1] == seeded.low[-1] and series.open[-1] == seeded.open[-1]
    warnings = [e for e in captured_logs if e["event"] == "rejected absurd tick"]
    assert len(warnings) == 1  # rate limited: once per product per minute
    assert warnings[0]["symbol"] == "BTC-USD" and warnings[0]["price"] == 1e308
    assert warnings[0]["reference"] == base and warnings[0]["max_tick_move"] == 0.5 and warnings[0]["rejected"] == 1


def test_the_tick_band_is_configurable_and_shapes_candles(coinbase_server, make_coinbase):
    assert "max_tick_move" not in coinbase.CoinbaseConfig.transport_fields
    with pytest.raises(ValueError):
        coinbase.CoinbaseConfig(max_tick_move=0)
    feed = live_feed(make_coinbase, coinbase_server, max_tick_move=0.05)
    base = float(feed.fetch_candles("BTC-USD", "1h", 100).close[-1])
    coinbase_server.push_ticker("BTC-USD", base * 1.1)
    coinbase_server.push_ticker("BTC-USD", base * 1.03)
    assert feed.wait_until(lambda: feed.latest_price("BTC-USD") == round(base * 1.03, 2), 5)
    assert feed.stats["rejected_ticks"] == 1
    assert feed.fetch_candles("BTC-USD", "1h", 100).high[-1] < base * 1.05


def test_a_refused_product_backs_off_without_requests_then_is_tried_again(coinbase_server, make_coinbase, captured_logs):
    feed = make_coinbase()
    path = "/products/NOPE-USD/candles"

    def attempts():
        return len(coinbase_server.requests_to(path))

    with pytest.raises(FeedRequestError, match="HTTP 404"):
        feed.fetch_candles("NOPE-USD", "1h", 10)
    assert attempts() == 1
    backoffs = [60, 120, 240, 480, 960, 1920, 3600, 3600]
    for i, backoff in enumerate(backoffs):
        coinbase_server.advance(backoff - 1)
        for _ in range(3):  # within the back-off: a clear error, no request
            with pytest.raises(FeedRequestError, match="NOPE-USD was refused by the exchange") as caught:
                feed.fetch_candles("NOPE-USD", "1h", 10)
        assert caught.value.status == 404 and f"back-off {backoff} s" in str(caught.value)
        assert attempts() == i + 1
        coinbase_server.advance(1)
        if i < len(backoffs) - 1:
            with pytest.raises(FeedRequestError, match="HTTP 404"):  # expired: one request, refused again
                feed.fetch_candles("NOPE-USD", "1h", 10)
            assert attempts() == i + 2
    refused = [e for e in captured_logs if e["event"] == "product refused by the exchange; backing off"]
    assert [e["backoff_seconds"] for e in refused] == backoffs  # one log per step, capped at an hour
    assert refused[0]["symbol"] == "NOPE-USD" and "HTTP 404" in refused[0]["reason"]
    assert feed.fetch_candles("BTC-USD", "1h", 10) is not None  # other symbols are untouched

    coinbase_server.add_product("NOPE-USD")  # listed now: the retry succeeds and clears the state
    series = feed.fetch_candles("NOPE-USD", "1h", 10)
    assert len(series) == 10 and attempts() == len(backoffs) + 1
    assert any(e["event"] == "refused product accepted again" for e in captured_logs)
    coinbase_server.advance(HOUR)
    assert len(feed.fetch_candles("NOPE-USD", "1h", 10)) == 10


def test_a_product_the_socket_refuses_backs_off_and_is_subscribed_again_once_rest_accepts_it(coinbase_server, make_coinbase, captured_logs):
    feed = live_feed(make_coinbase, coinbase_server)
    path = "/products/ETH-USD/candles"
    coinbase_server.broadcast({"type": "error", "message": "Failed to subscribe", "reason": "ETH-USD is not a valid product"})
    assert feed.wait_until(lambda: "ETH-USD" in feed.invalid_products, 5)
    with pytest.raises(FeedRequestError, match="ETH-USD was refused by the exchange"):
        feed.fetch_candles("ETH-USD", "1h", 10)
    assert coinbase_server.requests_to(path) == []

    coinbase_server.advance(60)
    series = feed.fetch_candles("ETH-USD", "1h", 10)  # the back-off expired: REST accepts it
    assert len(coinbase_server.requests_to(path)) == 1 and series.timestamp[-1] == int(coinbase_server.clock() // HOUR) * HOUR
    assert "ETH-USD" not in feed.invalid_products
    assert feed.wait_until(lambda: "ETH-USD" in feed.subscribed_products, 5)
    refused = [e for e in captured_logs if e["event"] == "product refused by the exchange; backing off"]
    assert len(refused) == 1 and refused[0]["reason"].startswith("websocket: ETH-USD is not a valid product")


def test_rest_and_socket_refusing_the_same_product_log_one_back_off_step(coinbase_server, make_coinbase, captured_logs):
    feed = live_feed(make_coinbase, coinbase_server)
    with pytest.raises(FeedRequestError, match="HTTP 404"):
        feed.fetch_candles("NOPE-USD", "1h", 10)
    assert feed.wait_until(lambda: "NOPE-USD" in feed.invalid_products, 5)
    refused = [e for e in captured_logs if e["event"] == "product refused by the exchange; backing off"]
    assert len(refused) == 1 and refused[0]["backoff_seconds"] == 60


# -- plugin surface ---------------------------------------------------------------------------


def test_registers_through_the_hook():
    registry = Registry()
    registry.add_plugin(coinbase, PluginSource("coinbase", "v7", "0"))
    component = registry.get("feed", "coinbase")
    assert component is not None and component.cls is coinbase.CoinbaseCandleFeed
    assert component.cls.provides == frozenset({"candles"}) and component.cls.live


def test_importing_the_feed_plugins_stays_light():
    code = (
        "import sys, v7.plugins.feeds.coinbase, v7.plugins.feeds.coingecko; "
        "print(','.join(m for m in ('numpy', 'pandas', 'httpx', 'websockets') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent, check=True)
    assert result.stdout.strip() == ""
