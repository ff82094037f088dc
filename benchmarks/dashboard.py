"""How fast does `v7 dashboard` answer over a big store, and how much memory does it hold?

Fills a sqlite store with 100,000 signals (10 symbols, five theory results and a 2,000-character
prompt each, written through the sqlite sink as `v7 run` writes them; ~1 minute), starts the real
`v7 dashboard --db` on a free port and prints the overview's response time (the first one, while
the summary cache warms, and then warm), the other pages', and the server's resident memory.

    python benchmarks/dashboard.py                     # 100,000 signals in a temporary folder
    python benchmarks/dashboard.py --signals 20000 --keep /tmp/dash.db   # keep (or reuse) the store

The overview must answer in at most 300 ms with 100,000 signals and the server stay within 150 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from v7 import RunInfo, Signal, TheoryResult, TokenUsage
from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

THEORIES = ("hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo")


class Quiet:
    def __getattr__(self, level: str):
        return lambda *args, **fields: None


def fill(db: Path, count: int) -> float:
    """`count` signals through the sqlite sink, created over the last `count` minutes; returns seconds taken."""
    rng = random.Random(7)
    sink = SqliteSink(SqliteConfig(path=db))
    sink.open(RunInfo(run_id="bench", config_hash="b" * 16, v7_version="bench", plugin_versions={}), Quiet())
    bar0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    for i in range(count):
        results = [
            TheoryResult(theory=name, version="1", status="ok" if rng.random() > 0.05 else "error", bias=rng.uniform(-1, 1),
                         confidence=rng.random(), label="label", interpretation="interpretation",
                         metrics={"value": rng.random(), "bars": 1000.0}, elapsed_ms=rng.random() * 5,
                         message=None)
            for name in THEORIES
        ]
        sink.write(Signal(
            symbol=f"S{i % 10}-USD", granularity="1h", bar_time=bar0 + timedelta(hours=i // 10), direction=rng.choice(["BUY", "SELL", "HOLD"]),
            confidence=rng.random(), price=100 + rng.random(), reasoning="r" * 300, synthesizer="consensus", theory_results=results,
            run_id="bench", config_hash="b" * 16, created_at=now - timedelta(minutes=count - i), prompt="p" * 2000,
            usage=TokenUsage(prompt_tokens=900, completion_tokens=80, cache_hit_tokens=500, cache_miss_tokens=400, cost=0.0003) if i % 4 == 0 else None,
            timings_ms={"feed": 1.0, "theories": 20.0, "formatters": 0.2, "synthesizer": 0.3},
        ))
    sink.close()
    return time.perf_counter() - started


def get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
    return (time.perf_counter() - started) * 1000, len(body)


def proc_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="store path to keep (reused when it exists)")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="v7-dashboard-bench-"))
    db = args.keep or folder / "v7.db"
    if not db.exists():
        seconds = fill(db, args.signals)
        print(f"filled {db} with {args.signals:,} signals in {seconds:.0f} s ({db.stat().st_size / 1e6:.0f} MB)")
    server = subprocess.Popen(
        [sys.executable, "-m", "v7.core.cli", "dashboard", "--db", str(db), "--port", "0", "--window", "24h"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        url = None
        for line in server.stdout:
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            raise SystemExit("v7 dashboard did not start")
        first, _ = get(url)
        print(f"overview, first request (waits for the summary the server started computing at start-up): {first:.0f} ms")
        time.sleep(1)
        for path in ("", "?window=all", "symbol/S3-USD", "api/symbol/S3-USD/series?limit=500", "backtests", "api/signals?limit=50"):
            get(url + path)  # warm this page's cache
            times = sorted(get(url + path)[0] for _ in range(args.requests))
            print(f"/{path:<36} median {statistics.median(times):6.1f} ms, max {times[-1]:6.1f} ms over {args.requests} requests")
        print(f"server memory: {proc_mb(server.pid, 'VmRSS'):.0f} MB resident, peak {proc_mb(server.pid, 'VmHWM'):.0f} MB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
