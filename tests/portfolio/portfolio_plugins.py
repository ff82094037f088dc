"""Test plugins for the run-time portfolio step: a synthesizer that always buys, a sink that keeps what it is given."""

from __future__ import annotations

import threading

from v7 import Feed, Sink, Synthesis, SynthesisRequest, Synthesizer, hookimpl

WRITTEN: list = []  # every signal the keeping sink was handed, in order
FIRST_STORED = threading.Event()  # set when the keeping sink gets its first signal


class AlwaysBuy(Synthesizer):
    """BUY every bar (an uncalibrated confidence: sized by the conservative rule)."""

    name = "always_buy"
    version = "1.0"

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        return Synthesis(direction="BUY", confidence=0.6, reasoning="always")


class KeepingSink(Sink):
    """Stores in a list: what the sinks were handed, position included."""

    name = "keeping"
    version = "1.0"

    def write(self, signal) -> bool:
        WRITTEN.append(signal)
        FIRST_STORED.set()
        return True


class LateFeed(Feed):
    """The bundled candles one bar further each call; ETH's first fetch waits until a signal was stored
    (so it finishes after its iteration's deadline, whatever the machine's speed)."""

    name = "late_replay"
    version = "1.0"
    live = False

    def __init__(self, config=None):
        super().__init__(config)
        from v7.core.candles import read_candles_csv
        from helpers import REPO

        self.candles = {s: read_candles_csv(REPO / "data" / "candles" / f"{s}.csv", s) for s in ("BTC-USD", "ETH-USD")}
        self.calls = {s: 0 for s in self.candles}

    def fetch_candles(self, symbol, granularity, lookback):
        self.calls[symbol] += 1
        if symbol == "ETH-USD" and self.calls[symbol] == 1:
            FIRST_STORED.wait(timeout=60)
        return self.candles[symbol].slice(0, lookback + self.calls[symbol]).tail(lookback)


class PortfolioPlugins:
    @hookimpl
    def register_feeds(self, register):
        register(LateFeed)

    @hookimpl
    def register_synthesizers(self, register):
        register(AlwaysBuy)

    @hookimpl
    def register_sinks(self, register):
        register(KeepingSink)


def make_registry():
    from v7.core.registry import PluginSource, load_registry

    return load_registry([(PortfolioPlugins(), PluginSource("portfolio-test-plugins", "v7-portfolio-tests", "1.0"))])
