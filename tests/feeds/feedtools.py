"""Constants shared by the feed tests (a plain module: test files cannot import conftest)."""

from __future__ import annotations

NOW = 1_767_270_600.0  # 2026-01-01 12:30:00 UTC: half-way through an hourly bucket
HOUR = 3600
CURRENT = int(NOW // HOUR) * HOUR  # the forming hourly bucket at NOW

FAST_COINBASE = {
    "connect_timeout_seconds": 2.0,
    "read_timeout_seconds": 2.0,
    "requests_per_second": 1000.0,
    "burst": 1000,
    "max_retries": 3,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "max_retry_after_seconds": 5.0,
    "heartbeat_timeout_seconds": 1.0,
    "reconnect_backoff_base_seconds": 0.02,
    "reconnect_backoff_max_seconds": 0.1,
}
FAST_COINGECKO = {
    "connect_timeout_seconds": 2.0,
    "read_timeout_seconds": 2.0,
    "requests_per_minute": 60_000.0,
    "burst": 100,
    "max_retries": 2,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "max_retry_after_seconds": 5.0,
}
