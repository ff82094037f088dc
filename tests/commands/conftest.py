"""Databases for the `v7 stats` and `v7 export` tests: one from a real default run, one built by hand."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest

from helpers import REPO, run_v7
from sinks.factory import LogCapture, make_signal, run_info, usage
from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The repository's config.toml run for 3 iterations: 6 signals from the five theories."""
    folder = tmp_path_factory.mktemp("default-run")
    shutil.copy(REPO / "config.toml", folder / "config.toml")
    result = run_v7("run", "--config", "config.toml", "--iterations", "3", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="session")
def crafted_db(tmp_path_factory):
    """Ten signals whose every figure is known (see EXPECTED in test_stats.py)."""
    folder = tmp_path_factory.mktemp("crafted")
    now = datetime.now(timezone.utc)
    sink = SqliteSink(SqliteConfig(path=folder / "v7.db"))
    sink.open(run_info(), LogCapture())
    plan = [
        # index, symbol, direction, confidence, synthesizer, fallback reason, monte_carlo status, days old
        (0, "BTC-USD", "HOLD", 0.2, "deepseek", None, "ok", 0),
        (1, "BTC-USD", "HOLD", 0.4, "deepseek", None, "ok", 0),
        (2, "BTC-USD", "BUY", 0.7, "deepseek", None, "error", 0),
        (3, "BTC-USD", "BUY", 0.9, "deepseek", None, "ok", 0),
        (4, "BTC-USD", "SELL", 0.6, "consensus", "deepseek: timed out after 3 attempts", "ok", 0),
        (5, "BTC-USD", "HOLD", 0.0, "consensus", "deepseek: timed out after 3 attempts", "insufficient_data", 3),
        (0, "ETH-USD", "HOLD", 0.3, "deepseek", None, "ok", 0),
        (1, "ETH-USD", "BUY", 0.5, "deepseek", None, "error", 0),
        (2, "ETH-USD", "SELL", 0.8, "consensus", "deepseek: HTTP 401", "ok", 0),
        (3, "ETH-USD", "HOLD", 0.6, "deepseek", None, "ok", 3),
    ]
    for index, symbol, direction, confidence, synthesizer, reason, status, days in plan:
        llm = synthesizer == "deepseek" or reason is not None
        signal = make_signal(
            index, symbol=symbol, direction=direction, confidence=confidence, synthesizer=synthesizer,
            fallback_reason=reason, attempts=3 if reason else 1, status=status,
            message={"error": "ValueError: diverged", "insufficient_data": "needs 100 candles"}.get(status),
            usage=usage(1000, 100 if reason is None else 0, 600, 400, 0.001) if llm else None,
            created_at=now - timedelta(days=days),
        )
        assert sink.write(signal)
    sink.close()
    return folder / "v7.db"
