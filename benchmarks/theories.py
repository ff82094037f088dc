"""Benchmark: the five shipped theories against the original plan's reference implementations.

    python benchmarks/theories.py               # speed and peak memory on 1,000 real BTC-USD candles
    python benchmarks/theories.py --accuracy    # also the known-answer numbers quoted in docs/theories.md

Two speed measurements:

1. Same candles, repeated: both sets run in the same process on the same candles (the last 1,000
   rows of data/candles/BTC-USD.csv), warm, many repetitions; the figure is the median. For
   markov_regime this is a bar 9 hours after its 00:00 anchor with the anchor's fit cached after the
   first call: the cost of a warm-started bar, not of every bar.
2. Consecutive bars (the realistic per-bar cost): one instance per theory steps through `--bars`
   consecutive hourly bars (lookback 1,000, as `v7 backtest` and `v7 run` call them), so
   markov_regime pays its full fit at every 00:00 anchor and warm-starts in between; printed with
   the anchor/warm split, a cold cache (a fresh instance per call) and `refit_every_bars = 0`.

No asserts beyond sanity: this prints numbers for a human (and for docs/theories.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
BTC_CSV = REPO / "data" / "candles" / "BTC-USD.csv"
sys.path.insert(0, str(REPO / "tests" / "theories"))  # synthetic series for --accuracy


def timings_ms(fn: Callable[[], object], budget_s: float = 1.5, min_reps: int = 20, max_reps: int = 500) -> list[float]:
    """Wall times of `fn` in ms, after one warm-up call."""
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def peak_kib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


# -- the original plan's reference implementations ------------------------------------------------


def reference_set(close):
    import numpy as np
    from hurst import compute_Hc
    from pykalman import KalmanFilter as PyKalman
    from scipy.stats import entropy

    returns = np.diff(close) / close[:-1]

    def hurst_ref():
        with np.errstate():  # compute_Hc sets np.seterr(all='raise') and restores it only on success
            return compute_Hc(close[-100:], kind="price", simplified=True)[0]

    def entropy_ref():
        counts, _ = np.histogram(returns, bins=50)
        return entropy(counts) / math.log(50)

    def regime_ref():
        # Stressed when 24-bar volatility is above its 168-bar moving average.
        squared = returns**2
        vol = np.sqrt(np.convolve(squared, np.ones(24) / 24, mode="valid"))
        average = np.convolve(vol, np.ones(168) / 168, mode="valid")
        return "stressed" if vol[-1] > average[-1] else "calm"

    kalman = PyKalman(
        transition_matrices=[[1.0, 1.0], [0.0, 1.0]], observation_matrices=[[1.0, 0.0]],
        transition_covariance=0.01 * np.eye(2), observation_covariance=1.0,
    )

    def kalman_ref():
        return kalman.filter(close)[0][-1]

    def monte_carlo_ref():
        rng = np.random.default_rng(7)
        sims = rng.normal(returns.mean(), returns.std(), 10_000)
        var = -np.percentile(sims, 5)
        return var, -sims[sims <= -var].mean()

    return {
        "hurst_exponent": ("compute_Hc(kind='price') on 100 bars", hurst_ref),
        "shannon_entropy": ("50-bin histogram + scipy.stats.entropy", entropy_ref),
        "markov_regime": ("moving-average volatility threshold", regime_ref),
        "kalman_filter": ("pykalman filter, Q=0.01·I, R=1, prices", kalman_ref),
        "monte_carlo": ("10,000-path normal Monte Carlo", monte_carlo_ref),
    }


def speed(bars: int = 240) -> None:
    import numpy as np

    from v7.core.candles import read_candles_csv
    from v7.core.engine import limit_threads
    from v7.plugins.theories.hurst_exponent import HurstExponent
    from v7.plugins.theories.kalman_filter import KalmanFilter
    from v7.plugins.theories.markov_regime import MarkovRegime
    from v7.plugins.theories.monte_carlo import MonteCarlo
    from v7.plugins.theories.shannon_entropy import ShannonEntropy

    limit_threads(2)
    history = read_candles_csv(BTC_CSV, "BTC-USD")
    candles = history.tail(1000)
    assert len(candles) == 1000
    theories = [HurstExponent(), ShannonEntropy(), MarkovRegime(), KalmanFilter(), MonteCarlo()]
    references = reference_set(candles.close)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(candles)} BTC-USD hourly candles, {candles.timestamp[0]}..{candles.timestamp[-1]}; numpy {np.__version__}; "
          f"{os.cpu_count()} CPUs, 1-min load average {load:.2f} at start (other work on the machine inflates medians)")
    print("\n1. The same candles, repeated (markov_regime: a warm-started bar, its anchor fit cached after the first call)")
    header = (f"{'theory':<16} {'median ms':>9} {'min ms':>7} {'peak KiB':>8}   {'ref median':>10} {'ref min':>8} "
              f"{'peak KiB':>8} {'ratio':>7}   label / reference")
    print(header)
    print("-" * len(header))
    total_ours = total_ref = 0.0
    for theory in theories:
        finding = theory.analyze(candles)
        ours = timings_ms(lambda theory=theory: theory.analyze(candles))
        ours_mem = peak_kib(lambda theory=theory: theory.analyze(candles))
        what, ref = references[theory.name]
        theirs = timings_ms(ref, budget_s=1.0, min_reps=10)
        ref_mem = peak_kib(ref)
        mine, other = statistics.median(ours), statistics.median(theirs)
        total_ours += mine
        total_ref += other
        print(f"{theory.name:<16} {mine:>9.3f} {min(ours):>7.3f} {ours_mem:>8.0f}   {other:>10.3f} {min(theirs):>8.3f} "
              f"{ref_mem:>8.0f} {other / mine:>7.2f}   {finding.label} / {what}")
    print("-" * len(header))
    print(f"{'sum of medians':<16} {total_ours:>9.3f} {'':>7} {'':>8}   {total_ref:>10.3f} {'':>8} {'':>8} {total_ref / total_ours:>7.2f}")

    def all_five():
        for theory in theories:
            theory.analyze(candles)

    def all_references():
        for _, ref in references.values():
            ref()

    passes = timings_ms(all_five, budget_s=3.0, min_reps=50)
    ref_passes = timings_ms(all_references, budget_s=3.0, min_reps=20)
    together, together_ref = statistics.median(passes), statistics.median(ref_passes)
    print(f"one pass of all five: median {together:.3f} ms, min {min(passes):.3f} ms ({len(passes)} passes)   "
          f"[target median <= 15 ms: {'met' if together <= 15 else 'NOT met'}]")
    print(f"one pass of the reference set: median {together_ref:.3f} ms, min {min(ref_passes):.3f} ms ({len(ref_passes)} passes)   "
          f"[shipped {'faster' if together < together_ref else 'SLOWER'}: x{together_ref / together:.2f}]")
    print(f"peak memory of one pass of all five: {peak_kib(all_five):.0f} KiB; of the reference set: {peak_kib(all_references):.0f} KiB")
    consecutive(history, bars)


def consecutive(history, bars: int) -> None:
    """The per-bar cost as a backtest or a live run pays it: one instance per theory, consecutive bars."""
    import numpy as np

    from v7.plugins.theories.hurst_exponent import HurstExponent
    from v7.plugins.theories.kalman_filter import KalmanFilter
    from v7.plugins.theories.markov_regime import MarkovRegime
    from v7.plugins.theories.monte_carlo import MonteCarlo
    from v7.plugins.theories.shannon_entropy import ShannonEntropy

    lookback = 1000
    last = len(history) - 1
    windows = [history.slice(t + 1 - lookback, t + 1) for t in range(last - bars + 1, last + 1)]
    warmup = [history.slice(t + 1 - lookback, t + 1) for t in range(last - bars - 30, last - bars)]
    hours = [int(w.timestamp[-1] % 86400) // 3600 for w in windows]
    print(f"\n2. Consecutive bars: {bars} hourly bars ({hours.count(0)} of them at 00:00), lookback {lookback}, one instance "
          f"per theory (as in v7 backtest / v7 run), warmed up on the 30 bars before (as in a running backtest)")

    def per_bar(theory, inputs) -> list[float]:
        times = []
        for w in inputs:
            t0 = time.perf_counter()
            theory.analyze(w)
            times.append((time.perf_counter() - t0) * 1000)
        return times

    header = f"{'theory':<16} {'mean ms':>8} {'median':>8} {'max':>8}   notes"
    print(header)
    print("-" * len(header))
    classes = [HurstExponent, ShannonEntropy, MarkovRegime, KalmanFilter, MonteCarlo]
    instances = [cls() for cls in classes]
    for theory in instances:
        per_bar(theory, warmup)
    totals = np.zeros(bars)
    markov_mean = float("nan")
    for theory in instances:
        times = np.array(per_bar(theory, windows))
        totals += times
        note = ""
        if theory.name == "markov_regime":
            anchor = np.array([h == 0 for h in hours])
            markov_mean = float(times.mean())
            note = (f"00:00 anchor bars (full fit) mean {times[anchor].mean():.2f}, warm-started bars mean "
                    f"{times[~anchor].mean():.2f} (median {np.median(times[~anchor]):.2f})")
        print(f"{theory.name:<16} {times.mean():>8.3f} {np.median(times):>8.3f} {times.max():>8.2f}   {note}")
    print("-" * len(header))
    print(f"{'all five':<16} {totals.mean():>8.3f} {np.median(totals):>8.3f} {totals.max():>8.2f}   "
          f"per bar   [target mean <= 15 ms: {'met' if totals.mean() <= 15 else 'NOT met'}]")
    off = MarkovRegime(MarkovRegime.Config(refit_every_bars=0))
    per_bar(off, warmup[-5:])
    full = np.array(per_bar(off, windows))
    sample = windows[1::8]
    cold = np.array([per_bar(MarkovRegime(), [w])[0] for w in sample])
    cold_hours = np.array([int(w.timestamp[-1] % 86400) // 3600 for w in sample])
    print(f"markov_regime, refit_every_bars = 0 (the full fit at every bar): mean {full.mean():.3f}, median {np.median(full):.3f} ms "
          f"(the default schedule's mean is x{full.mean() / markov_mean:.2f} lower)")
    print(f"markov_regime, cold cache (a fresh instance per call, e.g. the first bar of a run or --check-lookahead): "
          f"median {np.median(cold[cold_hours != 0]):.3f} ms on {int((cold_hours != 0).sum())} non-anchor bars (anchor fit + warm start)")


# -- known answers (numbers quoted in docs/theories.md) -------------------------------------------


def accuracy() -> None:
    import numpy as np
    from hurst import compute_Hc
    from scipy.stats import norm

    import synthetic
    from v7.plugins.theories.hurst_exponent import HurstExponent, variogram_hurst
    from v7.plugins.theories.kalman_filter import KalmanFilter
    from v7.plugins.theories.markov_regime import HmmParams, MarkovRegime, forward_filter
    from v7.plugins.theories.monte_carlo import MonteCarlo
    from v7.plugins.theories.shannon_entropy import ShannonEntropy

    def candles(log_returns, start=100.0):
        return synthetic.series(synthetic.prices_from_log_returns(log_returns, start))

    print("\nHurst (variogram of log price, lags 1-10), exact fBm, 200 paths per cell")
    lags = tuple(range(1, 11))
    for n in (250, 500, 1000):
        theory = HurstExponent(HurstExponent.Config(window=n))
        row = []
        for h in (0.3, 0.5, 0.7):
            paths = synthetic.fbm_log_prices(h, n, 200, seed=2024)
            est = variogram_hurst(paths, lags)
            labels = [theory.analyze(synthetic.series(100 * np.exp(p))).label for p in paths]
            want = {0.3: "mean_reverting", 0.5: "random_walk", 0.7: "trending"}[h]
            row.append(f"H={h}: bias {est.mean() - h:+.3f} rmse {np.sqrt(np.mean((est - h) ** 2)):.3f} "
                       f"labelled {want} {labels.count(want) / len(labels):.0%}")
        print(f"  n={n:<5} " + " | ".join(row))
    for h in (0.3, 0.5, 0.7):
        paths = synthetic.fbm_log_prices(h, 2000, 30, seed=5)
        with np.errstate():
            ref = np.array([compute_Hc(p, kind="random_walk", simplified=True)[0] for p in paths])
        ours = variogram_hurst(paths, lags)
        print(f"  n=2000 H={h}: variogram {ours.mean():.3f} (rmse {np.sqrt(np.mean((ours - h) ** 2)):.3f}); "
              f"compute_Hc(random_walk) {ref.mean():.3f} (rmse {np.sqrt(np.mean((ref - h) ** 2)):.3f})")

    print("\nPermutation entropy (order 5, delay 1), 1,000 candles, mean of 20 seeds")
    theory = ShannonEntropy()
    gens = {
        "white noise": lambda s: synthetic.white_noise(1000, s),
        "AR(1) phi=0.9": lambda s: synthetic.ar1(0.9, 1000, s),
        "sine(20 bars)+noise": lambda s: synthetic.sine_plus_noise(1000, s, period=20, amplitude=0.02, noise=0.01),
        "AR(1) phi=0.1": lambda s: synthetic.ar1(0.1, 1000, s),
    }
    for name, gen in gens.items():
        res = [theory.analyze(candles(gen(s))) for s in range(20)]
        shuf = [theory.analyze(candles(np.random.default_rng(s).permutation(gen(s)))) for s in range(20)]
        labels = [r.label for r in res]
        print(f"  {name:<20} entropy {np.mean([r.metrics['entropy'] for r in res]):.4f} "
              f"(shuffled {np.mean([r.metrics['entropy'] for r in shuf]):.4f}), "
              f"entropy_z {np.median([r.metrics['entropy_z'] for r in res]):+.1f}, "
              f"autocorrelation_z {np.median([r.metrics['autocorrelation_z'] for r in res]):+.1f}, "
              f"histogram entropy {np.mean([r.metrics['return_distribution_entropy'] for r in res]):.3f} "
              f"(shuffled {np.mean([r.metrics['return_distribution_entropy'] for r in shuf]):.3f}); "
              f"most common label {max(set(labels), key=labels.count)} ({labels.count(max(set(labels), key=labels.count))}/20)")

    def hourly(series, last_hour):
        """Real hourly stamps (synthetic.START_TIME is off the hour), the last bar at `last_hour`:00 UTC, so the
        refit schedule is exercised: the full fit at the 00:00 anchor, a warm start `last_hour` bars later."""
        n = len(series)
        return dataclasses.replace(series, timestamp=19_676 * 86400 + 3600 * (last_hour - (n - 1) + np.arange(n, dtype=np.int64)))

    print("\nMarkov regime, calm 1% / stressed 3%, 1,000 candles (window 500), last-bar regime; hourly stamps, last bar at "
          "(seed mod 24):00 UTC")
    for every in (24, 0):
        theory = MarkovRegime(MarkovRegime.Config(refit_every_bars=every))
        print(f"  refit_every_bars = {every}" + (" (default: warm start from the 00:00 anchor's fit)" if every else " (full fit)"))
        for p_stay, seeds in ((0.98, 200), (0.99, 200)):
            truth = np.array([[p_stay, 1 - p_stay], [1 - p_stay, p_stay]])
            oracle = HmmParams(np.array([0.5, 0.5]), truth, np.zeros(2), np.array([1e-4, 9e-4]))
            fitted, best, vol = [], [], []
            for seed in range(seeds):
                r, states = synthetic.two_state_regime(1000, seed, (0.01, 0.03), p_stay)
                f = theory.analyze(hourly(candles(r), seed % 24))
                fitted.append(f.label.split("_")[0] == ("stressed" if states[-1] else "calm"))
                vol.append(abs(f.metrics["state_volatility"] / (0.03 if states[-1] else 0.01) - 1) <= 0.25)
                p0, p1, _ = forward_filter(r[-500:], oracle)
                best.append((p1 > p0) == bool(states[-1]))
            print(f"    p_stay={p_stay}: right {np.mean(fitted):.1%} of {seeds} seeds ({np.mean(fitted[:50]):.0%} of the first 50); "
                  f"filter with the TRUE parameters {np.mean(best):.1%} ({np.mean(best[:50]):.0%}); "
                  f"state_volatility within 25% {np.mean(vol):.1%}")

    print("\nKalman, 600 candles, 1% noise per bar, 200 seeds")
    theory = KalmanFilter()
    for drift in (0.0, 0.001, 0.002, -0.002):
        res = [theory.analyze(candles(synthetic.white_noise(600, 400 + s) + drift)) for s in range(200)]
        z = np.array([r.metrics["velocity_z"] for r in res])
        labels = [r.label for r in res]
        sign = np.mean(np.sign([r.metrics["velocity"] for r in res]) == np.sign(drift))
        shown = f"right sign {sign:.0%}" if drift else "no trend"
        print(f"  drift {drift:+.3f}/bar: velocity_z mean {z.mean():+.2f} sd {z.std():.2f}; {shown}; "
              + ", ".join(f"{k} {labels.count(k)}" for k in ("strong_down", "down", "flat", "up", "strong_up")))

    print("\nMonte Carlo, 95% one-bar VaR/CVaR of 499 normal returns (sigma 1%), error vs. the analytic formula, 20 seeds")
    for model in ("normal", "bootstrap"):
        errs = []
        for seed in range(20):
            simple = np.random.default_rng(seed).normal(0.0, 0.01, 499)
            close = 100 * np.concatenate([[1.0], np.cumprod(1 + simple)])
            f = MonteCarlo(MonteCarlo.Config(model=model, seed=seed)).analyze(synthetic.series(close))
            mu, sd = simple.mean(), simple.std(ddof=1)
            z = norm.ppf(0.95)
            errs.append((f.metrics["var"] / (sd * z - mu) - 1, f.metrics["cvar"] / (sd * norm.pdf(z) / 0.05 - mu) - 1))
        errs = np.array(errs)
        print(f"  {model:<9}: VaR error mean {errs[:, 0].mean():+.2%} (max |{np.abs(errs[:, 0]).max():.2%}|), "
              f"CVaR error mean {errs[:, 1].mean():+.2%} (max |{np.abs(errs[:, 1]).max():.2%}|)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", action="store_true", help="also print the known-answer measurements")
    parser.add_argument("--bars", type=int, default=240, help="consecutive bars of the per-bar measurement (a multiple of 24)")
    args = parser.parse_args()
    speed(args.bars)
    if args.accuracy:
        accuracy()


if __name__ == "__main__":
    main()
