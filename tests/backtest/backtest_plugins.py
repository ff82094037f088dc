"""Test-only plugins for the backtest tests: two that cheat (see the future), a fake LLM, and registries.

Importable from a spawned process (the lookahead check recomputes there): the registry
factories are module-level functions.
"""

from __future__ import annotations

from pydantic import Field

import math

from v7 import CostEstimate, Feed, PluginConfig, Synthesis, SynthesisRequest, Synthesizer, Theory, TheoryFinding, TokenUsage, hookimpl
from v7.plugins.feeds.replay import ReplayFeed

from plugin_samples import ConstantTheory

# Filled by FutureReplayFeed when it loads a history: what a careless plugin might keep around.
FUTURE: dict[str, object] = {}
LLM_CALLS: list[str] = []
ESTIMATED: list[tuple[str, int]] = []  # (prompt, calls) of every estimate_cost call


class PeekingTheory(Theory):
    """Cheats through the memory behind its window: a view's `.base` is the whole history."""

    name = "peeking"
    version = "1.0"
    default_min_candles = 5

    def analyze(self, candles):
        import numpy as np

        def whole(array):
            return array.base if isinstance(array.base, np.ndarray) and array.base.ndim == 1 else array

        stamps, closes = whole(candles.timestamp), whole(candles.close)
        i = int(np.searchsorted(stamps, candles.timestamp[-1]))
        bias = 0.0
        if i + 1 < closes.shape[0]:
            bias = 1.0 if closes[i + 1] > closes[i] else -1.0
        return TheoryFinding(bias=bias, confidence=1.0, label="peeked", interpretation="The next close, read from memory.")


class FutureReplayFeed(ReplayFeed):
    """The replay feed, plus a module global holding every history it loaded."""

    name = "future_replay"

    def fetch_history(self, symbol, granularity, start, end):
        series = super().fetch_history(symbol, granularity, start, end)
        FUTURE[symbol] = series
        return series


class CandlesOnlyFeed(Feed):
    """Live candles only: no `fetch_history`, so it cannot be backtested."""

    name = "candles_only"

    def fetch_candles(self, symbol, granularity, lookback):  # pragma: no cover - never reached by a backtest
        raise AssertionError("a backtest must not fall back to fetch_candles")


class ForesightSynthesizer(Synthesizer):
    """Reads the global future array: BUY when the next close is higher, SELL when lower, else HOLD."""

    name = "foresight"
    version = "1.0"

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        import numpy as np

        history = FUTURE.get(request.symbol)
        if history is None:
            return Synthesis(direction="HOLD", confidence=0.0, reasoning="no future to read")
        i = int(np.searchsorted(history.timestamp, int(request.bar_time.timestamp())))
        if i + 1 >= len(history):
            return Synthesis(direction="HOLD", confidence=0.0, reasoning="end of history")
        up = history.close[i + 1] > history.close[i]
        return Synthesis(direction="BUY" if up else "SELL", confidence=1.0, reasoning="read the next close")


class FakeLLMConfig(PluginConfig):
    price_input_cache_hit: float = Field(default=0.07, ge=0)
    price_input_cache_miss: float = Field(default=0.27, ge=0)
    price_output: float = Field(default=1.10, ge=0)
    max_tokens: int = Field(default=300, ge=16)


class PricelessLLMSynthesizer(Synthesizer):
    """Needs a prompt like an LLM; answers BUY and records every call (so a test sees none were made).

    Cannot estimate its cost (no `estimate_cost`): the backtest still counts and caps its calls.
    """

    name = "priceless_llm"
    version = "1.0"
    needs_prompt = True
    Config = FakeLLMConfig

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        LLM_CALLS.append(request.prompt)
        usage = TokenUsage(prompt_tokens=500, completion_tokens=50, cache_miss_tokens=500, cost=0.0002)
        return Synthesis(direction="BUY", confidence=0.6, reasoning="fake", usage=usage)


class FakeLLMSynthesizer(PricelessLLMSynthesizer):
    """The same, estimating its cost like DeepSeek: 0.3 tokens per prompt character, ~100 completion tokens."""

    name = "fake_llm"

    def estimate_cost(self, prompt: str, calls: int) -> CostEstimate:
        ESTIMATED.append((prompt, calls))
        cfg = self.config
        tokens = max(1, math.ceil(len(prompt) * 0.3))
        completion = min(100, cfg.max_tokens)
        return CostEstimate(
            calls=calls, prompt_tokens_per_call=tokens, completion_tokens_per_call=completion, max_completion_tokens=cfg.max_tokens,
            price_input_per_million=cfg.price_input_cache_miss, price_output_per_million=cfg.price_output,
            estimated_cost=calls * (tokens * cfg.price_input_cache_miss + completion * cfg.price_output) / 1e6,
            max_cost=calls * (tokens * cfg.price_input_cache_miss + cfg.max_tokens * cfg.price_output) / 1e6,
        )


class LeakyPlugins:
    @hookimpl
    def register_theories(self, register):
        register(PeekingTheory)
        register(ConstantTheory)

    @hookimpl
    def register_feeds(self, register):
        register(FutureReplayFeed)
        register(CandlesOnlyFeed)

    @hookimpl
    def register_synthesizers(self, register):
        register(ForesightSynthesizer)
        register(FakeLLMSynthesizer)
        register(PricelessLLMSynthesizer)


def make_registry():
    """The installed plugins plus the ones above (a module-level function: picklable for a spawned process)."""
    from v7.core.registry import PluginSource, load_registry

    return load_registry([(LeakyPlugins(), PluginSource("backtest-test-plugins", "v7-backtest-tests", "1.0"))])

