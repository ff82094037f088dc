"""Times `v7 --help` and `v7 plugins` (cold processes) against a bare `python -c pass` baseline.

Usage: python benchmarks/startup.py [runs]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def median_seconds(args: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    baseline = median_seconds([sys.executable, "-c", "pass"], runs)
    print(f"python -c pass        {baseline * 1000:7.1f} ms  (baseline)")
    for label, args in (("v7 --help", ["--help"]), ("v7 plugins", ["plugins"]), ("v7 plugins --json", ["plugins", "--json"])):
        seconds = median_seconds([sys.executable, "-m", "v7.core.cli", *args], runs)
        verdict = "OK" if seconds < 0.5 else "SLOW (target < 500 ms)"
        print(f"{label:<20}  {seconds * 1000:7.1f} ms  ({seconds / baseline:5.1f}× baseline)  {verdict}")
    # The first listing after an install or upgrade loads every plugin (then the cache answers).
    uncached = median_seconds([sys.executable, "-m", "v7.core.cli", "plugins"], runs, env={**os.environ, "V7_NO_PLUGIN_CACHE": "1"})
    print(f"{'v7 plugins, no cache':<20}  {uncached * 1000:7.1f} ms  ({uncached / baseline:5.1f}× baseline)  (first run after an install)")


if __name__ == "__main__":
    main()
