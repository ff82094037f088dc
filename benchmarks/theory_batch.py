"""Benchmark: each built-in theory's batch path (`analyze_batch`) against `analyze` bar by bar.

    python benchmarks/theory_batch.py             # 2,000 consecutive BTC-USD bars, lookback 1,000
    python benchmarks/theory_batch.py --bars 500

For every registered built-in theory whose class supports `analyze_batch`: the time per bar of
`analyze` on each bar's window (as a backtest without a batch path computes it) and of one
`analyze_batch` call over the same bars, both warm (each calibration a theory caches per window
length is made before timing), and their ratio. It also checks that both paths agree, with
`v7.testing.assert_batch_matches` on every 10th bar. No asserts on time: numbers for a human.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=2000, help="consecutive bars timed (default 2000)")
    parser.add_argument("--lookback", type=int, default=1000, help="candles per window (default 1000)")
    parser.add_argument("--symbol", default="BTC-USD")
    args = parser.parse_args()

    from v7.core.logs import configure_logging
    from v7.core.registry import load_registry
    from v7.testing import assert_batch_matches, bundled_candles

    configure_logging("warning")
    registry = load_registry()
    history = bundled_candles(args.symbol)
    n = len(history)
    ends = list(range(n - args.bars, n))
    print(f"{args.symbol}: {args.bars:,} consecutive bars, lookback {args.lookback}")
    print(f"{'theory':<18} {'bar by bar ms/bar':>18} {'batch ms/bar':>13} {'speed-up':>9}")
    for name in registry.names("theory"):
        component = registry.get("theory", name)
        cls = component.cls if component is not None else None
        if cls is None or not cls.__module__.startswith("v7.plugins.") or not cls.supports("analyze_batch"):
            continue
        theory = cls(cls.Config())
        theory.analyze_batch(history, ends[:1] + ends[-1:], args.lookback)  # warm the per-length caches
        assert_batch_matches(theory, history, ends[::10], args.lookback)
        started = time.perf_counter()
        for t in ends:
            window = history.slice(max(0, t + 1 - args.lookback), t + 1)
            try:
                theory.analyze(window)
            except Exception:  # noqa: BLE001 - an abstention costs its time too
                pass
        slow = (time.perf_counter() - started) * 1000 / len(ends)
        started = time.perf_counter()
        theory.analyze_batch(history, ends, args.lookback)
        fast = (time.perf_counter() - started) * 1000 / len(ends)
        print(f"{name:<18} {slow:>18.3f} {fast:>13.3f} {slow / fast:>8.1f}×", flush=True)


if __name__ == "__main__":
    main()
