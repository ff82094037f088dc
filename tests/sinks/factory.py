"""Signals and configs for the storage tests: built by hand, so every stored value is known."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from helpers import REPO
from v7 import RunInfo, Signal, TheoryResult, TokenUsage

BAR0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
# The storage tests need a fast, real `v7 run`, not five theories: the Kalman filter answers in ~1 ms.
FAST_THEORIES = ["kalman_filter"]


def make_signal(index: int = 0, symbol: str = "BTC-USD", direction: str = "HOLD", config_hash: str = "cafe0000cafe0000", **fields) -> Signal:
    """Signal number `index` (one hour apart) with two theory results: one ok, one per `status` field."""
    results = [
        TheoryResult(
            theory="hurst_exponent", version="1.0", status="ok", bias=0.2, confidence=0.6, label="trending",
            interpretation="H = 0.6", metrics={"hurst": 0.6 + index / 1000, "band_low": 0.44}, elapsed_ms=0.5,
        ),
        TheoryResult(
            theory="monte_carlo", version="1.0", status=fields.pop("status", "ok"), bias=None, confidence=0.0,
            label="", interpretation="x", metrics={}, elapsed_ms=2.0, message=fields.pop("message", None),
        ),
    ]
    values = dict(
        symbol=symbol, granularity="1h", bar_time=BAR0 + timedelta(hours=index), direction=direction,
        confidence=0.5, price=100.0 + index, reasoning=f"signal {index}", synthesizer="consensus",
        theory_results=results, run_id="run0", config_hash=config_hash,
        timings_ms={"feed": 1.0 + index, "theories": 2.0, "formatters": 0.1, "synthesizer": 0.2},
    )
    values.update(fields)
    return Signal(**values)


def run_info(run_id: str = "run0") -> RunInfo:
    return RunInfo(run_id=run_id, config_hash="cafe0000cafe0000", v7_version="test", plugin_versions={"sink:sqlite": "2.0"})


def usage(prompt: int, completion: int, hit: int, miss: int, cost: float) -> TokenUsage:
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, cache_hit_tokens=hit, cache_miss_tokens=miss, cost=cost)


def write_config(folder: Path, theories: list[str] | None = None, sinks: str | None = None, extra: str = "") -> Path:
    """The repository's config.toml in `folder`, optionally with other theories, another [sinks] section or more TOML."""
    text = (REPO / "config.toml").read_text()
    if theories is not None:
        text = re.sub(r"(?m)^\[theories\]\nenabled = \[.*\]$", "[theories]\nenabled = " + repr(theories).replace("'", '"'), text)
    if sinks is not None:
        text = text[: text.index("[sinks]")] + sinks
    path = folder / "config.toml"
    path.write_text(text + "\n" + extra)
    return path


class LogCapture:
    """A structlog-compatible logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []

    def _log(self, level: str):
        def log(event: str, **fields) -> None:
            self.records.append((level, event, fields))
        return log

    def __getattr__(self, level: str):
        if level in ("debug", "info", "warning", "error", "exception"):
            return self._log(level)
        raise AttributeError(level)

    def events(self, level: str | None = None) -> list[str]:
        return [event for lvl, event, _ in self.records if level is None or lvl == level]


def make_read_only(*paths: Path):
    """Make files or folders really read-only and return the undo. Root ignores permission bits, so
    as root they are made immutable (chattr +i), which root cannot write either."""
    if os.geteuid() != 0:
        modes = [(path, path.stat().st_mode) for path in paths]
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return lambda: [path.chmod(mode) for path, mode in modes]
    names = [str(path) for path in paths]
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *names], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: cannot make a file read-only for root")
    return lambda: subprocess.run(["chattr", "-i", *names], check=True)
