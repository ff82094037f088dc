"""`v7.analyze` on 1,000 candles in a loop, against the theories' own time on the same candles.

The baseline is each enabled theory's `analyze` called directly on an already validated series;
`v7.analyze` adds the DataFrame's validation, the thread limit and the engine's isolation of each
theory. Target (issue #13): at most 1.3× the baseline. Calls alternate, so a busy machine slows both.

Usage: python benchmarks/analyze.py [--calls 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --calls alternating calls; the median round counts (the machine is noisy)")
    args = parser.parse_args()

    import pandas as pd

    import v7
    from v7.core.api import cached_pipeline
    from v7.core.candles import series_from_frame

    frame = pd.read_csv(REPO / "data" / "candles" / "BTC-USD.csv").tail(1000).reset_index(drop=True)
    _config, pipeline = cached_pipeline(None)
    series = series_from_frame(frame, "BTC-USD", "1h")
    for _ in range(10):  # warm: caches, calibrations, thread workers
        v7.analyze(frame)
        [theory.analyze(series) for theory in pipeline.theories]
    ratios = []
    for round_ in range(1, args.rounds + 1):
        direct, full = [], []
        for _ in range(args.calls):
            started = time.perf_counter()
            [theory.analyze(series) for theory in pipeline.theories]
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            v7.analyze(frame)
            full.append(time.perf_counter() - started)
        base, total = statistics.median(direct) * 1000, statistics.median(full) * 1000
        ratios.append(total / base)
        print(f"round {round_}: theories alone {base:.2f} ms; v7.analyze {total:.2f} ms = {total / base:.2f}×", flush=True)
    ratio = statistics.median(ratios)
    print(f"median of {len(ratios)} rounds: {ratio:.2f}× (range {min(ratios):.2f}–{max(ratios):.2f}×; target ≤ 1.3×: {'OK' if ratio <= 1.3 else 'MISSED'})")


if __name__ == "__main__":
    main()
