"""Times re-scoring with the feature store: a backtest of 2,000 hourly BTC-USD bars run twice.

Runs the repository's config.toml (five theories, lookback 1000, the consensus synthesizer) with
the feature store in a temporary folder: the first run computes every theory and stores the
results; the second changes only the horizon, so it reads them and runs no theory. Prints both
times (the whole `run_backtest`, and the part computing signals) and the ratios; the target is
10×. Scoring (bootstrap intervals and the rest) costs the same in both runs and is not helped by
the store: it is printed apart.

Each pair runs in a fresh process with an empty store, `--repeat` times; the machine is shared and
noisy, so the fastest first run is compared with the fastest second run. Both runs of a pair are
timed in a warm process: a small warm-up pair (its own store, a few bars) first pays the one-time
costs of a process (imports, first calls of pyarrow and numpy), which a second run in the same
process would otherwise be spared and a first run charged with. That cost is printed apart; a
`v7 backtest` on the command line pays it on every run.

Usage: python benchmarks/feature_store.py [--bars 2000] [--workers 0] [--symbol BTC-USD] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 10.0
WARMUP_BARS = 48  # the warm-up pair's bars: enough to reach every code path, few enough to cost little


def one_pair(args: argparse.Namespace) -> dict:
    """The first and the second run in this process, with an empty store: their times as JSON."""
    from v7.core.backtest import available_cores, load_history, resolve_settings, run_backtest
    from v7.core.config import load_config
    from v7.core.logs import configure_logging
    from v7.core.registry import load_registry

    configure_logging("warning")
    registry = load_registry()
    config = load_config(REPO / "config.toml", registry)
    history = load_history(config, registry, args.symbol, None, None)
    workers = args.workers or available_cores()

    def timed(cache: str, horizon: int, bars: int):
        settings = resolve_settings(config, workers=workers, step=1, horizon=horizon, feature_cache=cache)
        started = time.perf_counter()
        run = run_backtest(config, registry, settings=settings, symbols=[args.symbol], bars=bars, histories={args.symbol: history})
        wall = time.perf_counter() - started
        return wall, (run.result.bars / run.result.bars_per_second if run.result.bars_per_second else 0.0), run

    with tempfile.TemporaryDirectory(prefix="v7-feature-warmup-") as warmup:
        started = time.perf_counter()
        timed(warmup, 24, WARMUP_BARS)
        timed(warmup, 6, WARMUP_BARS)
        warm_up = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="v7-feature-bench-") as cache:
        first_wall, first_compute, first = timed(cache, 24, args.bars)
        files = list(Path(cache).rglob("*.parquet"))
        stored_mb = sum(p.stat().st_size for p in files) / 1e6
        second_wall, second_compute, second = timed(cache, 6, args.bars)
    return {
        "history": len(history), "lookback": config.engine.lookback, "theories": config.enabled["theory"], "workers": workers,
        "first": [first_wall, first_compute], "second": [second_wall, second_compute], "files": len(files), "stored_mb": stored_mb,
        "bars": first.result.bars, "warm_up": warm_up,
        "same": [s.theories for s in first.signals[args.symbol]] == [s.theories for s in second.signals[args.symbol]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2000, help="signal bars (the last N of the bundled history)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes; 0 = one per available core")
    parser.add_argument("--symbol", default="BTC-USD")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes, each timing a first and a second run")
    parser.add_argument("--pair", action="store_true", help=argparse.SUPPRESS)  # the child: one pair, JSON on stdout
    args = parser.parse_args()
    if args.pair:
        print(json.dumps(one_pair(args)))
        return 0

    pairs = []
    for repetition in range(1, args.repeat + 1):
        child = [sys.executable, __file__, "--pair", "--bars", str(args.bars), "--workers", str(args.workers), "--symbol", args.symbol]
        pair = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        if repetition == 1:
            print(
                f"{args.symbol}: last {pair['bars']:,} of {pair['history']:,} hourly candles, lookback {pair['lookback']}, "
                f"theories {', '.join(pair['theories'])}; {pair['workers']} worker(s); load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        (first_wall, first_compute), (second_wall, second_compute) = pair["first"], pair["second"]
        print(
            f"#{repetition}: first run (computes and stores) {first_wall:.2f} s ({first_compute:.2f} s computing signals; "
            f"{pair['files']} file(s), {pair['stored_mb']:.2f} MB); second run, horizon 6 (reads) {second_wall:.2f} s "
            f"({second_compute:.2f} s computing signals, {second_wall - second_compute:.2f} s scoring and the rest); "
            f"process warm-up before them {pair['warm_up']:.2f} s",
            flush=True,
        )
        pairs.append(pair)
    first_wall, second_wall = min(p["first"][0] for p in pairs), min(p["second"][0] for p in pairs)
    first_compute, second_compute = min(p["first"][1] for p in pairs), min(p["second"][1] for p in pairs)
    same = all(p["same"] for p in pairs)
    ratio = first_wall / second_wall
    print(f"fastest of {len(pairs)}: first {first_wall:.2f} s ({first_compute:.2f} s computing), second {second_wall:.2f} s ({second_compute:.2f} s computing)")
    print(f"ratio: {ratio:.1f}× whole backtest, {first_compute / max(second_compute, 1e-9):.1f}× computing signals; "
          f"theory results identical: {same}; target ≥ {TARGET:g}×: {'OK' if ratio >= TARGET else 'MISSED'}")
    print(f"(cores available: {os.cpu_count()}; load average now {os.getloadavg()[0]:.2f})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
