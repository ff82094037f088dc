"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from helpers import BTC_CSV


@pytest.fixture
def btc_frame():
    import pandas as pd

    return pd.read_csv(BTC_CSV).tail(1000).reset_index(drop=True)
