"""How often does the consensus synthesizer say BUY, SELL and HOLD on real history?

Walks the bundled hourly BTC-USD and ETH-USD candles bar by bar with no lookahead: the theory
results at bar t come from the `lookback` candles ending at t (nothing after t), exactly as
`v7 run` with the replay feed would compute them, and the consensus synthesizer turns them
into a direction. To stay fast it evaluates every `step`-th bar (default 12: twice a day on
hourly bars, at alternating hours) and spreads the bars over worker processes; the mix barely
moves with the step because neighbouring bars share almost all of their lookback window.

    python benchmarks/signal_mix.py                  # default config: five theories, consensus defaults
    python benchmarks/signal_mix.py --step 6 --workers 4
    python benchmarks/signal_mix.py --config my.toml # that file's theories and consensus settings

With the default config HOLD should be between 40 % and 70 % of the signals: a consensus that
almost always holds, or almost never does, is miscalibrated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CANDLES = REPO / "data" / "candles"
DIRECTIONS = ("BUY", "SELL", "HOLD")


def build(raw_config: dict[str, Any] | None = None):
    """The configured theories and the consensus synthesizer (whatever `[synthesizer] use` says)."""
    from v7.core.config import validate_config
    from v7.core.engine import Pipeline
    from v7.core.registry import load_registry

    registry = load_registry()
    raw = dict(raw_config or {})
    synthesizer = dict(raw.get("synthesizer", {}))
    synthesizer.update({"use": "consensus", "fallback": "none"})
    raw["synthesizer"] = synthesizer
    config = validate_config(raw, registry, where="<benchmark>")
    return Pipeline.build(config, registry, kinds=("theory", "synthesizer"))


def bar_indices(length: int, lookback: int, step: int, limit: int | None = None) -> list[int]:
    """Bars with a full lookback behind them, every `step`-th; with `limit`, that many spread evenly."""
    indices = list(range(lookback - 1, length, step))
    if limit is not None and limit < len(indices):
        stride = len(indices) / limit
        indices = [indices[int(i * stride)] for i in range(limit)]
    return indices


def evaluate(symbol: str, indices: list[int], lookback: int, raw_config: dict[str, Any] | None = None) -> Counter:
    """Directions of the consensus at each bar index, from the candles up to and including that bar."""
    from v7 import SynthesisRequest
    from v7.core.candles import read_candles_csv
    from v7.core.engine import limit_threads

    limit_threads(1)
    pipeline = build(raw_config)
    series = read_candles_csv(CANDLES / f"{symbol}.csv", symbol, "1h")
    counts: Counter = Counter()
    for t in indices:
        window = series.slice(t - lookback + 1, t + 1)  # candles 0..t of this window: no lookahead
        results = pipeline.analyze(window)
        request = SynthesisRequest(
            symbol=symbol, granularity="1h", bar_time=window.last_time, price=window.last_price, results=results,
        )
        counts[pipeline.synthesizer.synthesize(request).direction] += 1
    return counts


def signal_mix(symbols: list[str], step: int, lookback: int, workers: int = 1, limit: int | None = None,
               raw_config: dict[str, Any] | None = None) -> dict[str, Counter]:
    """Direction counts per symbol, computed in `workers` processes."""
    from v7.core.candles import read_candles_csv

    jobs = []
    for symbol in symbols:
        length = len(read_candles_csv(CANDLES / f"{symbol}.csv", symbol, "1h"))
        indices = bar_indices(length, lookback, step, limit)
        chunks = max(1, workers)
        jobs += [(symbol, indices[i::chunks]) for i in range(chunks) if indices[i::chunks]]
    mix = {symbol: Counter() for symbol in symbols}
    if workers <= 1:
        for symbol, indices in jobs:
            mix[symbol].update(evaluate(symbol, indices, lookback, raw_config))
        return mix
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [(symbol, pool.submit(evaluate, symbol, indices, lookback, raw_config)) for symbol, indices in jobs]
        for symbol, future in futures:
            mix[symbol].update(future.result())
    return mix


def shares(counts: Counter) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {d: counts.get(d, 0) / total for d in DIRECTIONS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=int, default=12, help="evaluate every N-th bar (default 12)")
    parser.add_argument("--lookback", type=int, default=None, help="candles per evaluation (default: the config's, 1000)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes (default: up to 4)")
    parser.add_argument("--symbols", default="BTC-USD,ETH-USD")
    parser.add_argument("--limit", type=int, default=None, help="at most N bars per symbol, spread over the history")
    parser.add_argument("--config", type=Path, default=None, help="a V7 TOML config: its theories and consensus table")
    args = parser.parse_args(argv)

    raw: dict[str, Any] = {}
    if args.config is not None:
        from v7.core.config import read_toml

        raw = {k: v for k, v in read_toml(args.config).items() if k in ("engine", "theories", "synthesizer")}
    lookback = args.lookback or build(raw).config.engine.lookback
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]

    started = time.perf_counter()
    mix = signal_mix(symbols, args.step, lookback, args.workers, args.limit, raw)
    elapsed = time.perf_counter() - started
    overall: Counter = Counter()
    print(f"consensus signal mix: every {args.step}th bar, lookback {lookback}, {args.workers} worker(s), {elapsed:.0f} s")
    print(f"{'symbol':<10}{'bars':>7}{'BUY':>9}{'SELL':>9}{'HOLD':>9}")
    for symbol in symbols:
        overall.update(mix[symbol])
        share = shares(mix[symbol])
        print(f"{symbol:<10}{sum(mix[symbol].values()):>7}" + "".join(f"{share[d]:>9.1%}" for d in DIRECTIONS))
    share = shares(overall)
    print(f"{'overall':<10}{sum(overall.values()):>7}" + "".join(f"{share[d]:>9.1%}" for d in DIRECTIONS))
    ok = 0.40 <= share["HOLD"] <= 0.70
    print(f"HOLD {share['HOLD']:.1%}: {'within' if ok else 'OUTSIDE'} the 40–70 % target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
