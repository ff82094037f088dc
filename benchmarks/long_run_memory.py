"""Resident memory of a long `v7 run` (replay): growth after warm-up against the 50 MB bound.

Replays the bundled BTC-USD and ETH-USD history under `--symbols` names (copies of the two files),
stores every signal in a throwaway SQLite database, and samples the process's RSS as signals
arrive. Prints RSS after warm-up, at the end, the growth per 100,000 signals and the verdict.

Usage: python benchmarks/long_run_memory.py [--signals 100000] [--symbols 50] [--warmup 2000]
       [--theories hurst_exponent,shannon_entropy,markov_regime,kalman_filter,monte_carlo]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path

from replay_symbols import memory_mb, replay_pipeline

FIVE = "hurst_exponent,shannon_entropy,markov_regime,kalman_filter,monte_carlo"
BOUND_MB = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2000, help="signals before the first measurement")
    parser.add_argument("--theories", default=FIVE)
    parser.add_argument("--lookback", type=int, default=1000)
    args = parser.parse_args()

    from v7.core.logs import configure_logging

    configure_logging("warning")
    work = Path(tempfile.mkdtemp(prefix="v7-memory-"))
    try:
        pipeline = replay_pipeline(work, args.symbols, args.lookback, args.theories.split(","), copy=True)
        iterations = -(-args.signals // args.symbols)
        samples: list[tuple[int, float]] = []
        count = 0
        started = time.perf_counter()

        def sample(_signal) -> None:
            nonlocal count
            count += 1
            if count == args.warmup or count % 5000 == 0 or count == iterations * args.symbols:
                gc.collect()
                samples.append((count, memory_mb()))
                print(f"{count:>8} signals  RSS {samples[-1][1]:8.1f} MB  ({time.perf_counter() - started:7.1f} s)", flush=True)

        outcome = pipeline.run(iterations=iterations, on_signal=sample)
        after = [s for s in samples if s[0] >= args.warmup]
        if len(after) < 2:
            raise SystemExit(f"too few signals after warm-up ({outcome.produced}); raise --signals")
        (first_n, first_mb), (last_n, last_mb) = after[0], after[-1]
        growth = last_mb - first_mb
        per_100k = growth / (last_n - first_n) * 100_000
        print(f"\n{outcome.describe()}")
        print(f"RSS after warm-up ({first_n} signals): {first_mb:.1f} MB; at {last_n}: {last_mb:.1f} MB")
        print(f"growth {growth:+.1f} MB over {last_n - first_n} signals = {per_100k:+.1f} MB per 100,000 signals "
              f"({per_100k / BOUND_MB:.2f}× the {BOUND_MB:.0f} MB bound): {'OK' if per_100k <= BOUND_MB else 'TOO MUCH'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
