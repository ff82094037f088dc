"""A store for the dashboard tests, written through the sqlite sink, and the app or a real server over it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from helpers import REPO
from sinks.factory import make_signal, usage
from v7 import RunInfo, Signal
from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

XSS = "<script>alert(1)</script>"
BAR0 = datetime(2019, 6, 1, tzinfo=timezone.utc)  # inside the bundled candles, so the replay feed has history for the chart
DIRECTIONS = ["BUY", "HOLD", "SELL", "HOLD", "HOLD", "BUY"]


class Quiet:
    """A logger that drops everything (the sink logs only on trouble)."""

    def __getattr__(self, level: str):
        return lambda *args, **fields: None


def write(db: Path, signals: list[Signal], run_id: str = "run0", stop: bool = True) -> None:
    """Store `signals` as one run; without `stop` the run stays open (no stop recorded), as after a kill."""
    sink = SqliteSink(SqliteConfig(path=db))
    sink.open(RunInfo(run_id=run_id, config_hash="cafe0000cafe0000", v7_version="test", plugin_versions={}), Quiet())
    for signal in signals:
        assert sink.write(signal)
    if stop:
        sink.close()  # else the run keeps no stop, as after a kill


def sample(count: int = 24, start: int = 0, run_id: str = "run0", reasoning: str | None = None) -> list[Signal]:
    """BTC-USD and ETH-USD in turn, every direction, one fallback, LLM usage on some; the first reasons in a script tag."""
    out = []
    for i in range(start, start + count):
        symbol = "BTC-USD" if i % 2 == 0 else "ETH-USD"
        fields = dict(
            symbol=symbol, direction=DIRECTIONS[i % len(DIRECTIONS)], bar_time=BAR0 + timedelta(hours=i // 2), run_id=run_id,
            confidence=0.3 + (i % 5) / 10, price=8000.0 + 10 * i if symbol == "BTC-USD" else 250.0 + i,
            reasoning=reasoning or (XSS if i == 0 else f"reasoning {i}"), prompt=f"prompt {i} <b>bold?</b>",
            created_at=datetime.now(timezone.utc),
        )
        if i % 3 == 0:
            fields["usage"] = usage(1000, 100, 600, 400, 0.002)
        direction = fields["direction"]
        fields["position"] = {"BUY": 0.05 * (1 + i % 3), "SELL": -0.125, "HOLD": 0.0}[direction] if i % 7 else 0.0
        fields["sizing"] = None if i == 7 else f"rule {i} <b>sized</b>"  # signal 8 as stored before sizing
        if i == 5:
            fields.update(synthesizer="consensus", fallback_reason="deepseek timed out <i>after 30 s</i>")
        out.append(make_signal(i, status="error" if i % 4 == 0 else "ok", message="failed: <img src=x onerror=alert(2)>", **fields))
    return out


def write_config(folder: Path, db: Path, extra: str = "") -> Path:
    """The repository's offline config with its sqlite sink at `db`."""
    text = (REPO / "config.toml").read_text().replace('path = "v7.db"', f'path = "{db}"')
    path = folder / "config.toml"
    path.write_text(text + extra)
    return path


class Server:
    """`v7 dashboard` in a subprocess on a free 127.0.0.1 port, as a user starts it."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "v7.core.cli", "dashboard", "--config", str(config), "--port", "0", *args],
            cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        lines = []
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"V7 dashboard on (http://127\.0\.0\.1:\d+/)", line)
            if found:
                return found.group(1)
        self.stop()
        raise AssertionError("v7 dashboard did not start:\n" + "".join(lines))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def app_over(db: Path, token: str | None = None, plugin_rows=None, candles=None, **settings):
    """The dashboard app over the sqlite store at `db` (what `v7 dashboard` builds), and its `Dashboard`."""
    from v7.core.dashboard.app import Dashboard, create_app
    from v7.core.dashboard.store import Store
    from v7.core.dashboard.views import Settings

    reader = SqliteSink(SqliteConfig(path=db)).reader()
    dash = Dashboard(  # a reader per serving thread, as `v7 dashboard` opens them
        store=Store(lambda: SqliteSink(SqliteConfig(path=db)).reader(), first=reader),
        settings=Settings(location=reader.location, sink="sqlite", **settings),
        candles=candles, plugin_rows=plugin_rows or (lambda: []),
    )
    return create_app(dash, token=token), dash


def store_backtest(db: Path, result_json: str) -> int:
    """Keep a backtest result beside the signals, as `v7 backtest --store` does."""
    from v7.core.backtest import BacktestResult, store_result

    with SqliteSink(SqliteConfig(path=db)).reader() as reader:
        return store_result(reader, BacktestResult.model_validate_json(result_json))
