"""CoinGeckoContextFeed against the fake CoinGecko (real HTTP on 127.0.0.1, no mocks)."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from fakes._http_server import Fault, html_page, non_json, rate_limited, server_error
from fakes.coingecko_server import HOURLY_BTC, WEEKLY_BTC, FakeCoinGecko, key_echo
from v7.core.registry import PluginSource, Registry
from v7.plugins.feeds import coingecko
from v7.http import FeedRequestError, FeedResponseError, FeedUnavailableError
from v7.plugins.feeds.coingecko import PRO_URL, PUBLIC_URL, CoinGeckoConfig, UnknownSymbolError

MARKETS = "/api/v3/coins/markets"
GLOBAL = "/api/v3/global"
KEY = "CG-SECRET-k3y-0123456789abcdef"
KEY_ENV = "V7_TEST_COINGECKO_KEY"


def test_fields_are_mapped_from_markets_and_global(coingecko_server, make_coingecko):
    feed = make_coingecko()
    context = feed.fetch_context("BTC-USD")

    assert context.source == "coingecko"
    assert context.price == 70187
    assert context.market_cap == 1381651251183
    assert context.market_cap_rank == 1
    assert context.volume_24h == 20154184933
    assert context.change_1h_pct == HOURLY_BTC
    assert context.change_24h_pct == 3.12502
    assert context.change_7d_pct == WEEKLY_BTC
    assert context.total_market_cap == 2515268352188.766
    assert context.total_market_cap_change_24h_pct == -9.999293796813587
    assert context.btc_dominance_pct == 60.70858347681936
    assert context.eth_dominance_pct == 7.155942749893206

    markets, = coingecko_server.requests_to(MARKETS)
    assert markets.query["vs_currency"] == "usd"
    assert markets.query["price_change_percentage"] == "1h,24h,7d"
    assert {"bitcoin", "ethereum", "solana"} <= set(markets.query["ids"].split(","))
    assert "x-cg-demo-api-key" not in markets.headers and "x-cg-pro-api-key" not in markets.headers  # keyless


def test_global_figures_at_the_top_level_are_accepted(make_coingecko):
    with FakeCoinGecko(global_layout="top") as server:
        context = make_coingecko(server).fetch_context("ETH-USD")
    assert context.price == 3571.42 and context.market_cap_rank == 2
    assert context.total_market_cap == 2515268352188.766 and context.btc_dominance_pct == 60.70858347681936


def test_one_snapshot_serves_every_symbol_until_it_expires(coingecko_server, make_coingecko):
    feed = make_coingecko(cache_seconds=60)
    for symbol in ("BTC-USD", "ETH-USD", "SOL-USD", "BTC-USD", "LTC-USD"):
        assert feed.fetch_context(symbol).price is not None
    assert len(coingecko_server.requests_to(MARKETS)) == 1
    assert len(coingecko_server.requests_to(GLOBAL)) == 1

    uncached = make_coingecko(cache_seconds=0)
    uncached.fetch_context("BTC-USD")
    uncached.fetch_context("ETH-USD")
    assert len(coingecko_server.requests_to(MARKETS)) == 3


def test_concurrent_symbols_share_one_request(coingecko_server, make_coingecko):
    coingecko_server.latency = 0.1
    feed = make_coingecko()
    with ThreadPoolExecutor(max_workers=8) as pool:
        contexts = list(pool.map(feed.fetch_context, ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"] * 2))
    assert all(c.price for c in contexts)
    assert len(coingecko_server.requests_to(MARKETS)) == 1 and len(coingecko_server.requests_to(GLOBAL)) == 1


def test_unknown_symbols_are_a_clear_error_for_that_symbol_only(coingecko_server, make_coingecko):
    feed = make_coingecko(ids={"FOO-USD": "foo-coin", "WBTC": "wrapped-bitcoin"})
    with pytest.raises(UnknownSymbolError, match=r"no CoinGecko id for 'ZZZ-USD'; add one under \[feeds.coingecko.ids\]"):
        feed.fetch_context("ZZZ-USD")
    assert coingecko_server.requests == []
    with pytest.raises(coingecko.FeedError, match="has no data for id 'foo-coin'"):
        feed.fetch_context("FOO-USD")  # mapped, but CoinGecko does not know the id
    assert feed.fetch_context("BTC-EUR").price == 70187  # a base asset's mapping covers other quotes
    assert feed.coin_id("WBTC-USD") == "wrapped-bitcoin"
    assert make_coingecko(use_default_ids=False).coin_id("BTC-USD") is None


def test_demo_key_goes_in_the_demo_header_on_the_public_host(make_coingecko, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeCoinGecko(host="public", keys=(KEY,)) as server:
        feed = make_coingecko(server, plan="demo", api_key_env=KEY_ENV)
        assert feed.fetch_context("BTC-USD").price == 70187
        for request in server.requests:
            assert request.headers["x-cg-demo-api-key"] == KEY and "x-cg-pro-api-key" not in request.headers


def test_pro_plan_uses_the_pro_header_and_host(make_coingecko, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    assert CoinGeckoConfig(plan="pro").base_url == PRO_URL
    assert CoinGeckoConfig(plan="demo").base_url == PUBLIC_URL
    assert CoinGeckoConfig(plan="pro", base_url="http://mirror.local/api/v3").base_url == "http://mirror.local/api/v3"
    with FakeCoinGecko(host="pro", keys=(KEY,)) as server:
        feed = make_coingecko(server, plan="pro", api_key_env=KEY_ENV)
        assert feed.fetch_context("ETH-USD").price == 3571.42
        for request in server.requests:
            assert request.headers["x-cg-pro-api-key"] == KEY and "x-cg-demo-api-key" not in request.headers


def test_a_key_on_the_wrong_host_is_the_servers_clear_error(make_coingecko, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeCoinGecko(host="pro") as server:
        with pytest.raises(FeedRequestError, match=r"HTTP 400: If you are using Demo API key.*\(error_code 10011\)"):
            make_coingecko(server, plan="demo", api_key_env=KEY_ENV).fetch_context("BTC-USD")
        assert len(server.requests) == 1  # a 4xx is not retried
    with FakeCoinGecko(host="public") as server:
        with pytest.raises(FeedRequestError, match=r"error_code 10010"):
            make_coingecko(server, plan="pro", api_key_env=KEY_ENV).fetch_context("BTC-USD")


def test_pro_plan_without_a_key_fails_before_any_request(coingecko_server, make_coingecko, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(FeedRequestError, match=f"environment variable {KEY_ENV} is not set"):
        make_coingecko(plan="pro", api_key_env=KEY_ENV).fetch_context("BTC-USD")
    with pytest.raises(FeedRequestError, match="set api_key_env"):
        make_coingecko(plan="pro").fetch_context("BTC-USD")
    assert coingecko_server.requests == []


def test_the_key_is_read_from_the_environment_at_call_time(coingecko_server, make_coingecko, monkeypatch, captured_logs):
    monkeypatch.delenv(KEY_ENV, raising=False)
    feed = make_coingecko(api_key_env=KEY_ENV, cache_seconds=0)
    feed.fetch_context("BTC-USD")  # demo without a key: keyless, with one warning
    assert "x-cg-demo-api-key" not in coingecko_server.requests[-1].headers
    assert [e["env_var"] for e in captured_logs if e["event"].startswith("CoinGecko API key not set")] == [KEY_ENV]
    monkeypatch.setenv(KEY_ENV, KEY)
    feed.fetch_context("BTC-USD")
    assert coingecko_server.requests[-1].headers["x-cg-demo-api-key"] == KEY
    monkeypatch.setenv(KEY_ENV, KEY + "-rotated")
    feed.fetch_context("BTC-USD")
    assert coingecko_server.requests[-1].headers["x-cg-demo-api-key"] == KEY + "-rotated"


def test_429_honours_retry_after(coingecko_server, make_coingecko):
    body = json.dumps({"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit."}})
    coingecko_server.inject(rate_limited(retry_after=0.25, body=body))
    assert make_coingecko().fetch_context("BTC-USD").price == 70187
    first, second = coingecko_server.requests_to(MARKETS)
    assert (first.status, second.status) == (429, 200) and second.at - first.at >= 0.24


def test_429_as_an_html_page_is_still_a_429(coingecko_server, make_coingecko):
    coingecko_server.inject(rate_limited(retry_after=0.05, html=True))
    assert make_coingecko().fetch_context("BTC-USD").price == 70187
    assert coingecko_server.statuses(MARKETS) == [429, 200]


def test_429_without_end_gives_up_with_a_clear_error(coingecko_server, make_coingecko):
    coingecko_server.fail_always(rate_limited(retry_after=0.01))
    with pytest.raises(coingecko.FeedError, match=r"HTTP 429 rate limited: Public rate limit exceeded \(gave up after 3 attempts\)"):
        make_coingecko(max_retries=2).fetch_context("BTC-USD")
    assert len(coingecko_server.requests) == 3


def test_html_error_page_is_an_error_not_a_crash_and_the_next_call_works(coingecko_server, make_coingecko):
    feed = make_coingecko()
    coingecko_server.fail_always(html_page(503))
    with pytest.raises(FeedUnavailableError, match=r"HTTP 503: an HTML page \('503 Service Temporarily Unavailable'\) instead of JSON"):
        feed.fetch_context("BTC-USD")
    coingecko_server.recover()
    assert feed.fetch_context("BTC-USD").price == 70187  # a failure is not cached


def test_non_json_body_is_a_clear_error(coingecko_server, make_coingecko):
    feed = make_coingecko()
    coingecko_server.inject(non_json())
    with pytest.raises(FeedResponseError, match="malformed response: a non-JSON body starting 'upstream connect error"):
        feed.fetch_context("BTC-USD")
    coingecko_server.inject(Fault("wrong-shape", 200, json.dumps({"status": {"error_code": 1, "error_message": "odd"}})))
    with pytest.raises(FeedResponseError, match="expected a JSON array"):
        feed.fetch_context("BTC-USD")
    assert feed.fetch_context("BTC-USD").price == 70187


def test_500_then_recovery(coingecko_server, make_coingecko):
    coingecko_server.inject(server_error(500), times=2)
    assert make_coingecko(max_retries=2).fetch_context("BTC-USD").price == 70187
    assert coingecko_server.statuses(MARKETS) == [500, 500, 200]


def test_global_failing_leaves_only_the_market_wide_fields_empty(coingecko_server, make_coingecko, captured_logs):
    coingecko_server.fail_always(server_error(500, path_prefix=GLOBAL))
    context = make_coingecko(max_retries=1).fetch_context("BTC-USD")
    assert context.price == 70187 and context.change_7d_pct == WEEKLY_BTC
    assert context.total_market_cap is None and context.btc_dominance_pct is None
    assert any(e["event"].startswith("CoinGecko /global failed") for e in captured_logs)


def test_the_key_never_reaches_logs_or_errors(coingecko_server, make_coingecko, monkeypatch, captured_logs, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, KEY)
    feed = make_coingecko(api_key_env=KEY_ENV, max_retries=1)

    coingecko_server.inject(key_echo())  # a proxy echoing the key in its error body
    with pytest.raises(FeedRequestError) as echoed:
        feed.fetch_context("BTC-USD")
    coingecko_server.fail_always(Fault("echo-500", 500, lambda r: f"<html><title>bad key {r.headers.get('x-cg-demo-api-key')}</title></html>", "text/html"))
    with pytest.raises(FeedUnavailableError) as retried:
        feed.fetch_context("BTC-USD")
    coingecko_server.recover()
    assert feed.fetch_context("BTC-USD").price == 70187
    assert coingecko_server.requests[-1].headers["x-cg-demo-api-key"] == KEY  # it was sent

    for error in (echoed.value, retried.value):
        assert KEY not in str(error) and KEY not in repr(error.args) and "***" in str(error)
    assert any(e["event"] == "request failed; retrying" for e in captured_logs)
    assert KEY not in repr(captured_logs)
    assert KEY not in caplog.text
    assert KEY not in repr(feed.config) and KEY not in json.dumps(feed.config.model_dump())


def test_registers_through_the_hook():
    registry = Registry()
    registry.add_plugin(coingecko, PluginSource("coingecko", "v7", "0"))
    component = registry.get("feed", "coingecko")
    assert component is not None and component.cls.provides == frozenset({"context"})
