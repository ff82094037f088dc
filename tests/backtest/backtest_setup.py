"""Configs for the backtest tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from v7.core.config import validate_config

LOOKBACK = 300


def make_config(registry, tmp_path=None, theories=None, synthesizer=None, feeds=None, backtest=None, **sections):
    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": LOOKBACK},
        "sinks": {"enabled": []},
        # The feature store is off unless a test turns it on: a test must prove the computation, not read a cache.
        "backtest": {"horizon": 12, "step": 20, "workers": 1, "feature_cache": "", **(backtest or {})},
        **sections,
    }
    if theories is not None:
        raw["theories"] = {"enabled": theories}
    if synthesizer is not None:
        raw["synthesizer"] = synthesizer
    if feeds is not None:
        raw["feeds"] = feeds
    return validate_config(raw, registry)
