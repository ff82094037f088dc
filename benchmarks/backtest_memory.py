"""Peak memory of a 100,000-bar backtest (five theories, consensus), against the 1 GB target.

The bundled history has 20,111 hourly BTC-USD bars, so the candles are a seeded random walk with
the same bar spacing and a realistic volatility (0.7% per hour). Prints the driver's peak RSS and
the largest worker's (the worker processes are forked: their shared pages are counted in each, so
the sum overstates what the machine holds).

Usage: python benchmarks/backtest_memory.py [--bars 100000] [--workers 0]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from replay_symbols import memory_mb

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from v7.core.backtest import resolve_settings, run_backtest
    from v7.core.config import load_config
    from v7.core.logs import configure_logging
    from v7.core.models import CandleSeries
    from v7.core.registry import load_registry

    configure_logging("warning")
    registry = load_registry()
    config = load_config(REPO / "config.toml", registry)
    n = args.bars + config.engine.lookback
    rng = np.random.default_rng(7)
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.007, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.003, n)) * close
    history = CandleSeries(
        symbol="SIM-USD", granularity="1h", timestamp=1_500_000_000 + 3600 * np.arange(n, dtype=np.int64), open=open_,
        high=np.maximum(open_, close) + spread, low=np.minimum(open_, close) - spread, close=close, volume=rng.uniform(1, 10, n),
    )
    settings = resolve_settings(config, workers=args.workers, step=1, feature_cache="")
    started = time.perf_counter()
    run = run_backtest(config, registry, settings=settings, symbols=["SIM-USD"], histories={"SIM-USD": history})
    wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    driver = memory_mb("VmHWM")
    print(f"{run.result.bars:,} bars in {wall:.0f} s with {run.result.workers} worker(s); verdict: {run.result.symbols[0].scores.verdict.text}")
    print(f"peak RSS: driver {driver:.0f} MB, largest worker {children:.0f} MB "
          f"(target < 1024 MB each: {'OK' if max(driver, children) < 1024 else 'MISSED'})")


if __name__ == "__main__":
    main()
