"""`v7 run` (replay) over many symbols: seconds per iteration, first and steady, and peak RSS.

The bundled BTC-USD and ETH-USD history is copied under `--symbols` names (alternating), so every
symbol has real candles; the five theories and the consensus synthesizer run on each; signals go to
a throwaway SQLite database. Targets (issue #13, 2 cores): first iteration ≤ 30 s, steady ≤ 5 s for
1,000 symbols, RSS < 1 GB. Prints the measured figures against them.

Usage: python benchmarks/many_symbols.py [--symbols 1000] [--iterations 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from replay_symbols import memory_mb, replay_pipeline



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--lookback", type=int, default=1000)
    args = parser.parse_args()

    from v7.core.logs import configure_logging

    configure_logging("warning")
    work = Path(tempfile.mkdtemp(prefix="v7-many-"))
    try:
        pipeline = replay_pipeline(work, args.symbols, args.lookback)
        marks: list[float] = [time.perf_counter()]
        seen = 0

        def on_signal(_signal) -> None:
            nonlocal seen
            seen += 1
            if seen % args.symbols == 0:
                marks.append(time.perf_counter())

        outcome = pipeline.run(iterations=args.iterations, on_signal=on_signal)
        times = [b - a for a, b in zip(marks, marks[1:])]
        print(outcome.describe())
        if not times:
            raise SystemExit("no iteration completed")
        steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else float("nan")
        peak = memory_mb("VmHWM")
        print(f"{args.symbols} symbols: first iteration {times[0]:.1f} s (target ≤ 30 s: {'OK' if times[0] <= 30 else 'MISSED'}), "
              f"steady {steady:.2f} s (median of {len(times) - 1}; target ≤ 5 s: {'OK' if steady <= 5 else 'MISSED'})")
        print(f"peak RSS {peak:.0f} MB (target < 1024 MB: {'OK' if peak < 1024 else 'MISSED'}); iterations: "
              + ", ".join(f"{t:.2f}" for t in times))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
