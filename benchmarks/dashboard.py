"""How fast does `v7 dashboard` answer over a big store, cold, warm and while a run writes, and how much memory does it hold?

Fills a sqlite store with 100,000 signals (10 symbols, five theory results and a 2,000-character
prompt each, written through the sqlite sink as `v7 run` writes them, created one a minute over
the last 100,000 minutes; ~1 minute), starts the real `v7 dashboard --db` on a free port and prints:

- the first overview after start-up, then the first (cold) view of every window;
- each window warm (nothing written meanwhile), and the other pages;
- every window again while a writer process stores 1 signal a second (as `v7 run` does);
- the server's resident memory and its peak.

Each overview figure is printed against the target, 300 ms at most (MET / MISSED), memory against 150 MB.

    python benchmarks/dashboard.py                     # 100,000 signals in a temporary folder
    python benchmarks/dashboard.py --signals 20000 --keep /tmp/dash.db   # keep (or reuse) the store

A kept store from before schema v4 is upgraded first (the sink adds the summary indexes on open).
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
WINDOWS = ("1h", "24h", "7d", "30d", "all")
TARGET_MS = 300.0
MEMORY_MB = 150.0


class Quiet:
    def __getattr__(self, level: str):
        return lambda *args, **fields: None


def make(rng: random.Random, i: int, created_at: datetime, run_id: str = "bench") -> Signal:
    """The i-th signal of the benchmark store: symbol i % 10, bar i // 10 hours after 2020-01-01."""
    results = [
        TheoryResult(theory=name, version="1", status="ok" if rng.random() > 0.05 else "error", bias=rng.uniform(-1, 1),
                     confidence=rng.random(), label="label", interpretation="interpretation",
                     metrics={"value": rng.random(), "bars": 1000.0}, elapsed_ms=rng.random() * 5, message=None)
        for name in THEORIES
    ]
    return Signal(
        symbol=f"S{i % 10}-USD", granularity="1h", bar_time=datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(hours=i // 10),
        direction=rng.choice(["BUY", "SELL", "HOLD"]), confidence=rng.random(), price=100 + rng.random(), reasoning="r" * 300,
        synthesizer="consensus", theory_results=results, run_id=run_id, config_hash="b" * 16, created_at=created_at,
        prompt="p" * 2000,
        usage=TokenUsage(prompt_tokens=900, completion_tokens=80, cache_hit_tokens=500, cache_miss_tokens=400, cost=0.0003) if i % 4 == 0 else None,
        timings_ms={"feed": 1.0 + rng.random(), "theories": 20.0 * rng.random(), "formatters": 0.2, "synthesizer": 0.3},
    )


def open_sink(db: Path, run_id: str) -> SqliteSink:
    sink = SqliteSink(SqliteConfig(path=db))
    sink.open(RunInfo(run_id=run_id, config_hash="b" * 16, v7_version="bench", plugin_versions={}), Quiet())
    return sink


def fill(db: Path, count: int) -> float:
    """`count` signals through the sqlite sink, created over the last `count` minutes; returns seconds taken."""
    rng = random.Random(7)
    sink = open_sink(db, "bench")
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    for i in range(count):
        sink.write(make(rng, i, now - timedelta(minutes=count - i)))
    sink.close()
    return time.perf_counter() - started


def write_forever(db: Path, start: int) -> None:
    """The writer process: one new signal a second, created now, as a running `v7 run` stores them."""
    rng = random.Random(start)
    sink = open_sink(db, f"writer-{start}")
    i = start
    while True:
        sink.write(make(rng, i, datetime.now(timezone.utc), run_id=f"writer-{start}"))
        i += 1
        time.sleep(1.0)


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


def verdict(ms: float, target: float = TARGET_MS) -> str:
    return "MET" if ms <= target else "MISSED"


def series(url: str, count: int, pause_s: float = 0.0) -> list[float]:
    times = []
    for _ in range(count):
        times.append(get(url)[0])
        time.sleep(pause_s)
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="store path to keep (reused when it exists)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--write-seconds", type=float, default=60.0, help="how long the writer runs while windows are asked for")
    parser.add_argument("--writer", type=Path, default=None, help=argparse.SUPPRESS)  # the writer process itself
    args = parser.parse_args()
    if args.writer is not None:
        write_forever(args.writer, 200_000 + int(time.time()) % 1_000_000)  # bars after the filled ones, new at each run
        return
    folder = Path(tempfile.mkdtemp(prefix="v7-dashboard-bench-"))
    db = args.keep or folder / "v7.db"
    if not db.exists():
        seconds = fill(db, args.signals)
        print(f"filled {db} with {args.signals:,} signals in {seconds:.0f} s ({db.stat().st_size / 1e6:.0f} MB)")
    else:
        started = time.perf_counter()
        open_sink(db, "bench-upgrade").close()  # an older store gets the v4 summary indexes
        print(f"reusing {db} ({db.stat().st_size / 1e6:.0f} MB; opened for writing in {time.perf_counter() - started:.1f} s)")
    server = subprocess.Popen(
        [sys.executable, "-m", "v7.core.cli", "dashboard", "--db", str(db), "--port", "0", "--window", "24h"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    writer = None
    missed = 0
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
        missed += first > TARGET_MS
        print(f"overview /, first request after start-up (24h window): {first:6.1f} ms  {verdict(first)}")
        print("cold: the first view of each window")
        for window in WINDOWS:
            ms, _ = get(f"{url}?window={window}")
            missed += ms > TARGET_MS
            print(f"  /?window={window:<4} {ms:6.1f} ms  {verdict(ms)}")

        print(f"warm: {args.requests} requests each, nothing written meanwhile")
        for window in WINDOWS:
            times = series(f"{url}?window={window}", args.requests)
            missed += times[-1] > TARGET_MS
            print(f"  /?window={window:<4} median {statistics.median(times):6.1f} ms, max {times[-1]:6.1f} ms  {verdict(times[-1])}")
        for path in ("symbol/S3-USD", "api/symbol/S3-USD/series?limit=500", "backtests", "api/signals?limit=50"):
            times = series(url + path, args.requests)
            print(f"  /{path:<36} median {statistics.median(times):6.1f} ms, max {times[-1]:6.1f} ms")

        writer = subprocess.Popen([sys.executable, __file__, "--writer", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(2)
        per_window = max(int(args.write_seconds / len(WINDOWS) / 0.35), 5)
        print(f"while a writer stores 1 signal/s: {per_window} requests per window, one every ~0.35 s")
        for window in WINDOWS:
            times = series(f"{url}?window={window}", per_window, pause_s=0.1)
            missed += times[-1] > TARGET_MS
            over = sum(t > TARGET_MS for t in times)
            print(f"  /?window={window:<4} median {statistics.median(times):6.1f} ms, p90 {times[int(0.9 * (len(times) - 1))]:6.1f} ms, "
                  f"max {times[-1]:6.1f} ms, {over} of {len(times)} over {TARGET_MS:.0f} ms  {verdict(times[-1])}")
        rss, peak = proc_mb(server.pid, "VmRSS"), proc_mb(server.pid, "VmHWM")
        print(f"server memory: {rss:.0f} MB resident, peak {peak:.0f} MB  {verdict(peak, MEMORY_MB)} (target {MEMORY_MB:.0f} MB)")
        print(f"overview target ({TARGET_MS:.0f} ms for every request above): {'MET' if not missed else f'MISSED by {missed} figure(s)'}")
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
