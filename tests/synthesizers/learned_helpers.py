"""Candles with planted structure and small learned-synthesizer backtests, for the tests/synthesizers/test_learned_*.py files.

The configs come from tests/backtest/backtest_setup.py and the AR(1) closes from
tests/evaluation/test_known_answers.py (imported, not copied). Backtests here run without theories
unless a test asks for some: the learned synthesizer then learns from its price and volume features
only, which is what the planted structure lives in, and a backtest of a few thousand bars takes
well under a second of theory work.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from backtest.backtest_plugins import make_registry  # noqa: F401 - re-exported: the registry of these tests
from backtest.backtest_setup import make_config
from evaluation.test_known_answers import ar1_close
from v7 import CandleSeries
from v7.core.backtest import resolve_settings, run_backtest

HOUR = 3600
T0 = int(datetime(2022, 1, 1, tzinfo=timezone.utc).timestamp())
LOOKBACK = 40  # ≥ the price features' 25 candles (lags up to 24, volatility and volume over 24 bars)
SYMBOL = "AAA-USD"


def series(close: np.ndarray, seed: int = 0, symbol: str = SYMBOL) -> CandleSeries:
    """Hourly candles around `close`: opens at the previous close, highs/lows a little outside, noisy positive volume."""
    rng = np.random.default_rng(seed + 10_000)
    close = np.asarray(close, dtype=np.float64) * 100
    n = close.shape[0]
    open_ = np.concatenate([[close[0]], close[:-1]])
    return CandleSeries(
        symbol=symbol, granularity="1h", timestamp=T0 + HOUR * np.arange(n, dtype=np.int64), open=open_,
        high=np.maximum(open_, close) * 1.001, low=np.minimum(open_, close) * 0.999, close=close,
        volume=rng.lognormal(3.0, 0.3, n),
    )


def ar1(seed: int, bars: int, phi: float, symbol: str = SYMBOL) -> CandleSeries:
    """Log returns r_t = φ·r_{t−1} + 1% noise (φ = 0: a random walk)."""
    return series(ar1_close(seed, bars - 1, phi), seed, symbol)


def regime(seed: int, bars: int, stay: float = 0.99, drift: float = 0.4, symbol: str = SYMBOL) -> tuple[CandleSeries, np.ndarray]:
    """Returns with drift ±drift·σ (σ = 1%) set by a hidden two-state Markov chain that keeps its state with `stay`.

    Also gives the states (+1 / −1 per bar)."""
    rng = np.random.default_rng(seed)
    flips = rng.random(bars) > stay
    states = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    returns = 0.01 * (drift * states + rng.standard_normal(bars))
    returns[0] = 0.0
    return series(np.exp(np.cumsum(returns)), seed, symbol), states


def learned_config(registry, *, theories=None, fallback="consensus", backtest=None, engine=None, **learned):
    """A config whose synthesizer is `learned` (logistic, horizon 1, small first model unless given) beside `fallback`."""
    options = {"model": "logistic", "horizon": 1, "min_train": 300, "retrain_every": 250, **learned}
    return make_config(
        registry, theories=[] if theories is None else theories,
        synthesizer={"use": "learned", "fallback": fallback, "learned": options},
        engine={"symbols": [SYMBOL], "lookback": LOOKBACK, **(engine or {})},
        backtest={"horizon": options["horizon"], "step": 1, "bootstrap_resamples": 500, **(backtest or {})},
    )


def backtest(config, registry, *histories: CandleSeries, **settings):
    """`run_backtest` over the given candles (one history per symbol), serial, no feature store."""
    settings = resolve_settings(config, **{"workers": 1, **settings})
    return run_backtest(config, registry, settings=settings, symbols=[h.symbol for h in histories], histories={h.symbol: h for h in histories})


def head(run, symbol: str = SYMBOL):
    """The learned synthesizer's out-of-sample scores at the headline horizon (from its first model's bar)."""
    comparison = next(c for c in run.result.learning if c.symbol == symbol)
    assert comparison.learned is not None, comparison
    return comparison, comparison.learned.horizons[0]


def p_up(signal) -> float:
    """P(up) back from a learned signal: BUY's confidence is P(up), SELL's 1 − P(up); HOLD's the likelier side (sign unknown: 0.5 ± it)."""
    if signal.direction == "BUY":
        return signal.confidence
    if signal.direction == "SELL":
        return 1 - signal.confidence
    return float("nan")


def calibration_of(runs, horizon: int = 1):
    """The calibration table (v7.core.evaluation.calibration) of the learned BUY/SELL signals of several runs pooled:
    a hit when the close `horizon` bars later is on the named side; the base rate of a BUY is the pooled up share, of a SELL 1 − it."""
    from v7.core.evaluation import calibration

    confidence, hit, buy, up = [], [], [], []
    for run in runs:
        for symbol, signals in run.signals.items():
            close = run.histories[symbol].close
            for s in signals:
                if s.synthesizer != "learned" or s.index + horizon >= close.shape[0]:
                    continue
                went_up = bool(close[s.index + horizon] > close[s.index])
                up.append(went_up)
                if s.direction in ("BUY", "SELL"):
                    confidence.append(s.confidence)
                    hit.append(went_up == (s.direction == "BUY"))
                    buy.append(s.direction == "BUY")
    share = float(np.mean(up))
    base = np.where(np.array(buy), share, 1 - share)
    return calibration(np.array(confidence), np.array(hit, dtype=float), base)


# -- test-only plugins ----------------------------------------------------------------------------

from v7 import InsufficientData, Synthesis, SynthesisFailed, SynthesisRequest, Synthesizer, Theory, TheoryFinding, hookimpl  # noqa: E402


class PeekingLearner(Synthesizer):
    """Declares that it learns, and cheats: reads the next close through the memory behind its window (a view's `.base`)."""

    name = "peeking_learner"
    version = "1.0"
    learns = True

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        candles = request.candles
        stamps, closes = candles.timestamp, candles.close
        if isinstance(closes.base, np.ndarray) and closes.base.ndim == 1 and isinstance(stamps.base, np.ndarray):
            stamps, closes = stamps.base, closes.base
        i = int(np.searchsorted(stamps, candles.timestamp[-1]))
        if i + 1 >= closes.shape[0]:
            return Synthesis(direction="HOLD", confidence=0.5, reasoning="nothing after this bar")
        up = closes[i + 1] > closes[i]
        return Synthesis(direction="BUY" if up else "SELL", confidence=0.9, reasoning="read the next close")


class GappyTheory(Theory):
    """Answers on most bars; insufficient data on every 7th hour, so the learned synthesizer's features go missing there."""

    name = "gappy"
    version = "1.0"
    default_min_candles = 5

    def analyze(self, candles):
        hour = int(candles.timestamp[-1]) // HOUR
        if hour % 7 == 0:
            raise InsufficientData("every 7th hour")
        step = float(np.log(candles.close[-1] / candles.close[-2]))
        return TheoryFinding(bias=max(-1.0, min(1.0, step * 50)), confidence=0.5, label="up" if step > 0 else "down",
                             interpretation="The last step.", metrics={"step": step})


class LearnedTestPlugins:
    @hookimpl
    def register_theories(self, register):
        register(GappyTheory)

    @hookimpl
    def register_synthesizers(self, register):
        register(PeekingLearner)


def make_learned_registry():
    """The installed plugins, tests/plugin_samples.py's and the two above (module level: a spawned process can rebuild it)."""
    from plugin_samples import SamplePlugin
    from v7.core.registry import PluginSource, load_registry

    return load_registry([
        (SamplePlugin(), PluginSource("sample-plugins", "v7-sample-tests", "1.0")),
        (LearnedTestPlugins(), PluginSource("learned-test-plugins", "v7-learned-tests", "1.0")),
    ])


def request_at(candles: CandleSeries, t: int, results=(), lookback: int = LOOKBACK) -> SynthesisRequest:
    """The request a backtest makes at bar t: the window of `lookback` candles up to t, own copies (nothing after t exists)."""
    window = candles.slice(max(0, t + 1 - lookback), t + 1)
    window = CandleSeries(symbol=window.symbol, granularity=window.granularity,
                          **{k: np.array(getattr(window, k), copy=True) for k in ("timestamp", "open", "high", "low", "close", "volume")})
    return SynthesisRequest(symbol=candles.symbol, granularity=candles.granularity, bar_time=window.last_time,
                            price=window.last_price, results=list(results), candles=window)


def drive(synthesizer, candles: CandleSeries, start: int = LOOKBACK - 1, on_bar=None):
    """Show the synthesizer every bar from `start` in order; per bar (t, Synthesis or the SynthesisFailed)."""
    out = []
    for t in range(start, len(candles)):
        try:
            answer = synthesizer.synthesize(request_at(candles, t))
        except SynthesisFailed as exc:
            answer = exc
        out.append((t, answer))
        if on_bar is not None:
            on_bar(t, answer)
    return out
