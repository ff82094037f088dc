"""Times re-scoring with the feature store: a backtest of 2,000 hourly BTC-USD bars run twice.

Runs the repository's config.toml (five theories, lookback 1000, the consensus synthesizer) with
the feature store in a temporary folder: the first run computes every theory and stores the
results; the second changes only the horizon, so it reads them and runs no theory. Prints both
times (the whole `run_backtest`, and the part computing signals) and the ratios; the target is
10×. Scoring (bootstrap intervals and the rest) costs the same in both runs and is not helped by
the store: it is printed apart.

Usage: python benchmarks/feature_store.py [--bars 2000] [--workers 0] [--symbol BTC-USD]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2000, help="signal bars (the last N of the bundled history)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes; 0 = one per available core")
    parser.add_argument("--symbol", default="BTC-USD")
    args = parser.parse_args()

    from v7.core.backtest import available_cores, load_history, resolve_settings, run_backtest
    from v7.core.config import load_config
    from v7.core.logs import configure_logging
    from v7.core.registry import load_registry

    configure_logging("warning")
    registry = load_registry()
    config = load_config(REPO / "config.toml", registry)
    history = load_history(config, registry, args.symbol, None, None)
    workers = args.workers or available_cores()
    print(
        f"{args.symbol}: last {args.bars:,} of {len(history):,} hourly candles, lookback {config.engine.lookback}, "
        f"theories {', '.join(config.enabled['theory'])}; {workers} worker(s); load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="v7-feature-bench-") as cache:
        def timed(horizon: int):
            settings = resolve_settings(config, workers=workers, step=1, horizon=horizon, feature_cache=cache)
            started = time.perf_counter()
            run = run_backtest(config, registry, settings=settings, symbols=[args.symbol], bars=args.bars, histories={args.symbol: history})
            wall = time.perf_counter() - started
            computing = run.result.bars / run.result.bars_per_second if run.result.bars_per_second else 0.0
            return wall, computing, run

        first_wall, first_compute, first = timed(24)
        print(f"first run (computes and stores): {first_wall:.2f} s ({first_compute:.2f} s computing signals), {first.result.bars:,} bars", flush=True)
        stored = sum(p.stat().st_size for p in Path(cache).rglob("*.parquet"))
        print(f"feature store: {len(list(Path(cache).rglob('*.parquet')))} file(s), {stored / 1e6:.2f} MB", flush=True)
        second_wall, second_compute, second = timed(6)
        print(f"second run, horizon 6 (reads):   {second_wall:.2f} s ({second_compute:.2f} s computing signals, "
              f"{second_wall - second_compute:.2f} s scoring and the rest)", flush=True)
    same = [s.theories for s in first.signals[args.symbol]] == [s.theories for s in second.signals[args.symbol]]
    ratio = first_wall / second_wall
    print(f"ratio: {ratio:.1f}× whole backtest, {first_compute / max(second_compute, 1e-9):.1f}× computing signals; "
          f"theory results identical: {same}; target ≥ {TARGET:g}×: {'OK' if ratio >= TARGET else 'MISSED'}")
    print(f"(cores available: {available_cores()})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
