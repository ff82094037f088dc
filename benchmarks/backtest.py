"""Times a 10,000-bar backtest of BTC-USD (five theories, consensus) against the theories' own time.

Three measurements in the same process, so a busy machine slows them alike:

1. the theories alone: each theory over the same bars through its batch path (`analyze_batch`,
   or `analyze` bar by bar without one), one process: the baseline;
2. the whole backtest serially (`workers = 1`): its wall time minus the theories' gives the cost per
   bar outside the theories (windows, results, synthesizer, scoring); target ≤ 0.3 ms;
3. the whole backtest with one worker process per core: target ≤ 4 s on 2 idle cores.

The feature store is off, so every theory really runs. Usage:
python benchmarks/backtest.py [--bars 10000] [--workers 0] [--symbol BTC-USD]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=10_000, help="signal bars (the last N of the bundled history)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes; 0 = one per available core")
    parser.add_argument("--symbol", default="BTC-USD")
    args = parser.parse_args()

    from v7.core.backtest import available_cores, load_history, resolve_settings, run_backtest
    from v7.core.batch_runner import run_theory_batch
    from v7.core.config import load_config
    from v7.core.engine import Pipeline, limit_threads
    from v7.core.logs import configure_logging
    from v7.core.registry import load_registry

    configure_logging("warning")
    limit_threads(1)
    registry = load_registry()
    config = load_config(REPO / "config.toml", registry)
    history = load_history(config, registry, args.symbol, None, None)
    lookback = config.engine.lookback
    workers = args.workers or available_cores()
    print(f"{args.symbol}: last {args.bars:,} of {len(history):,} hourly candles, lookback {lookback}, theories "
          f"{', '.join(config.enabled['theory'])}, {config.synthesizer}; {workers} worker(s); load {os.getloadavg()[0]:.2f}", flush=True)

    ends = list(range(len(history) - args.bars, len(history)))
    theories = Pipeline.build(config, registry, kinds=("theory",)).theories
    started = time.perf_counter()
    from v7.core.backtest.compute import bar_chunks

    for theory in theories:
        for part in bar_chunks(ends):  # the backtest's chunks
            run_theory_batch(theory, history, part, lookback, 60.0)
    theories_s = time.perf_counter() - started
    print(f"theories alone: {theories_s:.2f} s ({theories_s / args.bars * 1000:.3f} ms per bar)", flush=True)

    def whole(n_workers: int) -> float:
        settings = resolve_settings(config, workers=n_workers, step=1, feature_cache="")
        began = time.perf_counter()
        run_backtest(config, registry, settings=settings, symbols=[args.symbol], bars=args.bars, histories={args.symbol: history})
        return time.perf_counter() - began

    serial = whole(1)
    outside = (serial - theories_s) / args.bars * 1000
    print(f"backtest, 1 process: {serial:.2f} s = {serial / theories_s:.2f}× the theories; outside the theories "
          f"{outside:.3f} ms per bar (target ≤ 0.3 ms: {'OK' if outside <= 0.3 else 'MISSED'})", flush=True)
    parallel = whole(workers)
    print(f"backtest, {workers} processes: {parallel:.2f} s ({serial / parallel:.2f}× the serial run); target ≤ 4 s on 2 idle cores: "
          f"{'OK' if parallel <= 4 else 'MISSED'}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
