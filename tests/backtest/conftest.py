"""Fixtures of the backtest tests: the installed plugins plus the test-only ones, and a slice of real BTC candles."""

from __future__ import annotations

import pytest

from backtest_plugins import make_registry
from helpers import BTC_CSV
from v7 import CandleSeries
from v7.core.candles import read_candles_csv


@pytest.fixture(scope="session")
def registry():
    return make_registry()


@pytest.fixture(scope="session")
def btc() -> CandleSeries:
    return read_candles_csv(BTC_CSV, "BTC-USD").slice(5000, 5460)
