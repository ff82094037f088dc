"""Times `v7 --help` and `v7 plugins` (cold processes) against a bare `python -c pass` baseline.

Usage: python benchmarks/startup.py [runs]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def median_seconds(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
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


if __name__ == "__main__":
    main()
