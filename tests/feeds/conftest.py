"""Fixtures for the feed tests: the fake Coinbase and CoinGecko servers, and feeds pointed at them.

Test configs use short timeouts and backoffs so every fault path runs in milliseconds.
"""

from __future__ import annotations

import pytest
import structlog

from fakes.coinbase_server import FakeCoinbase
from fakes.coingecko_server import FakeCoinGecko
from v7.plugins.feeds.coinbase import CoinbaseConfig
from v7.plugins.feeds.coingecko import CoinGeckoConfig, CoinGeckoContextFeed

from feedtools import FAST_COINBASE, FAST_COINGECKO, NOW, InstrumentedCoinbaseFeed


@pytest.fixture
def coinbase_server():
    with FakeCoinbase(now=NOW, heartbeat_interval=0.05) as fake:
        yield fake


@pytest.fixture
def make_coinbase(coinbase_server):
    """Build an `InstrumentedCoinbaseFeed` on the fake (REST only unless live=True); closed after the test."""
    feeds: list[InstrumentedCoinbaseFeed] = []

    def make(server: FakeCoinbase | None = None, **overrides) -> InstrumentedCoinbaseFeed:
        server = server or coinbase_server
        options = {"rest_url": server.url, "ws_url": server.ws_url, "live": False, **FAST_COINBASE, **overrides}
        feed = InstrumentedCoinbaseFeed(CoinbaseConfig(**options))
        feed.clock = server.clock
        feeds.append(feed)
        return feed

    yield make
    for feed in feeds:
        feed.close()


@pytest.fixture
def coingecko_server():
    with FakeCoinGecko() as fake:
        yield fake


@pytest.fixture
def make_coingecko(coingecko_server):
    feeds: list[CoinGeckoContextFeed] = []

    def make(server: FakeCoinGecko | None = None, **overrides) -> CoinGeckoContextFeed:
        server = server or coingecko_server
        options = {"base_url": server.base_url, **FAST_COINGECKO, **overrides}
        feed = CoinGeckoContextFeed(CoinGeckoConfig(**options))
        feeds.append(feed)
        return feed

    yield make
    for feed in feeds:
        feed.close()


@pytest.fixture
def captured_logs():
    """Every structlog event emitted during the test, as dicts (background threads included)."""
    with structlog.testing.capture_logs() as events:
        yield events
