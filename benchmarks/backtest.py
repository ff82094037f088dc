"""Times a backtest of 10,000 hourly BTC-USD bars with the five theories and the consensus synthesizer.

Runs the repository's config.toml (lookback 1000) through `run_backtest` with every available core,
then a serial baseline over the first `--baseline-bars` of the same bars, and prints bars/s, total
seconds, the speed-up over serial and the mean time each theory took per bar. The load average is
printed too: other processes on the machine slow every number here.

Usage: python benchmarks/backtest.py [--bars 10000] [--workers 0] [--baseline-bars 1000]
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
    parser.add_argument("--baseline-bars", type=int, default=1000, help="bars of the serial baseline (0 = skip it)")
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
        f"{args.symbol}: {len(history):,} hourly candles; backtesting the last {args.bars:,} bars, lookback {config.engine.lookback}, "
        f"theories {', '.join(config.enabled['theory'])}, synthesizer {config.synthesizer}; {workers} worker(s) on "
        f"{available_cores()} core(s); load average before: {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    def timed(bars: int, n_workers: int) -> tuple[float, float, object]:
        settings = resolve_settings(config, workers=n_workers, step=1)
        cpu = time.process_time()
        children = os.times().children_user + os.times().children_system
        started = time.perf_counter()
        run = run_backtest(config, registry, settings=settings, symbols=[args.symbol], bars=bars, histories={args.symbol: history})
        wall = time.perf_counter() - started
        cpu_used = (time.process_time() - cpu) + (os.times().children_user + os.times().children_system - children)
        return wall, cpu_used, run

    wall, cpu, run = timed(args.bars, workers)
    result = run.result
    print(f"parallel: {result.bars:,} bars in {wall:.1f} s = {result.bars / wall:.1f} bars/s "
          f"({cpu / result.bars * 1000:.1f} ms CPU per bar, {result.workers} worker(s))", flush=True)
    print("theory ms per bar (wall, inside the workers): " + ", ".join(f"{k} {v:.2f}" for k, v in result.theory_ms.items()))
    scores = result.symbols[0].scores
    print(f"signals: BUY {scores.directions['BUY'].count:,}, SELL {scores.directions['SELL'].count:,}, HOLD {scores.directions['HOLD'].count:,}; "
          f"strategy {scores.strategy.total_return:+.2%} vs buy-and-hold {scores.buy_and_hold.total_return:+.2%}")
    if args.baseline_bars > 0:
        base_bars = min(args.baseline_bars, args.bars)
        serial_wall, serial_cpu, serial = timed(base_bars, 1)
        serial_rate = serial.result.bars / serial_wall
        print(f"serial baseline: {serial.result.bars:,} bars in {serial_wall:.1f} s = {serial_rate:.1f} bars/s "
              f"({serial_cpu / serial.result.bars * 1000:.1f} ms CPU per bar); "
              f"{args.bars:,} bars serially ≈ {args.bars / serial_rate:.0f} s")
        print(f"speed-up: {result.bars / wall / serial_rate:.2f}× over serial")
    verdict = "OK" if wall < 60 else "SLOWER than the 60 s target"
    print(f"total: {wall:.1f} s for {result.bars:,} bars: {verdict}; load average after: {os.getloadavg()[0]:.2f}")
    # Other processes inflate the wall time; CPU time per bar spread over the workers is what an idle machine would take.
    print(f"idle-machine estimate: {cpu / result.workers:.0f} s ({cpu / result.bars * 1000:.1f} ms CPU per bar × {result.bars:,} bars / {result.workers} worker(s))")


if __name__ == "__main__":
    sys.exit(main())
