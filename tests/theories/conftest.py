"""Fixtures for the theory tests; puts this folder on sys.path so `import synthetic` works from any rootdir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

REPO = HERE.parents[1]
BTC_PATH = REPO / "data" / "candles" / "BTC-USD.csv"


@pytest.fixture(scope="session")
def btc_candles():
    """The last 1,000 real hourly BTC-USD candles, as the feeds hand them to theories."""
    from v7.core.candles import read_candles_csv

    return read_candles_csv(BTC_PATH, "BTC-USD").tail(1000)


@pytest.fixture(scope="session")
def btc_full():
    from v7.core.candles import read_candles_csv

    return read_candles_csv(BTC_PATH, "BTC-USD")
