"""The LLM cost guard: the synthesizer's own estimate, the cap refusing before any call, usage summed."""

from __future__ import annotations

import math

import pytest

import backtest_plugins
from backtest_setup import LOOKBACK, make_config
from v7.core.backtest import LlmCapExceeded, run_backtest
from v7.core.engine import Pipeline


def test_llm_backtest_estimates_cost_and_refuses_above_the_cap_before_any_call(registry, btc):
    backtest_plugins.LLM_CALLS.clear()
    backtest_plugins.ESTIMATED.clear()
    config = make_config(
        registry, theories=["constant"], synthesizer={"use": "fake_llm", "fallback": "consensus"},
        backtest={"step": 1, "llm_call_cap": 25},
    )
    seen = []
    with pytest.raises(LlmCapExceeded) as caught:
        run_backtest(config, registry, histories={"BTC-USD": btc}, bars=30, on_estimate=seen.append)
    assert backtest_plugins.LLM_CALLS == []
    estimate = caught.value.estimate
    assert seen == [estimate]
    assert estimate.calls == 30 and estimate.cap == 25
    assert "llm_call_cap = 25" in str(caught.value) and "--yes" in str(caught.value)
    # Tokens from the first prompt's length; prices from the synthesizer's config (USD per million tokens).
    pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter"))
    window = btc.slice(len(btc) - 30 - LOOKBACK + 1, len(btc) - 30 + 1)
    from v7.core.models import PromptRequest

    prompt = pipeline.build_prompt(PromptRequest(
        symbol="BTC-USD", granularity="1h", bar_time=window.last_time, price=window.last_price, results=pipeline.analyze(window),
    ))
    # The synthesizer's own estimate_cost was asked, with the first bar's prompt and every call.
    assert backtest_plugins.ESTIMATED == [(prompt, 30)]
    assert estimate.prompt_tokens_per_call == math.ceil(len(prompt) * 0.3)
    assert estimate.completion_tokens_per_call == 100
    assert estimate.estimated_cost == pytest.approx(30 * (estimate.prompt_tokens_per_call * 0.27 + 100 * 1.10) / 1e6, rel=1e-5)
    assert estimate.max_cost == pytest.approx(30 * (estimate.prompt_tokens_per_call * 0.27 + 300 * 1.10) / 1e6, rel=1e-5)

    # Confirmed (--yes), it runs: one call per bar, usage summed.
    run = run_backtest(config, registry, histories={"BTC-USD": btc}, bars=30, confirm_llm=True)
    assert len(backtest_plugins.LLM_CALLS) == 30
    usage = run.result.llm_usage
    assert usage.requests == 30 and usage.cost == pytest.approx(30 * 0.0002) and usage.prompt_tokens == 30 * 500
    assert run.result.symbols[0].scores.directions["BUY"].count == 30
    # Under the cap, no confirmation is needed.
    backtest_plugins.LLM_CALLS.clear()
    run_backtest(config, registry, histories={"BTC-USD": btc}, bars=20)
    assert len(backtest_plugins.LLM_CALLS) == 20


def test_an_llm_that_cannot_estimate_its_cost_is_still_capped(registry, btc):
    backtest_plugins.LLM_CALLS.clear()
    config = make_config(registry, theories=["constant"], synthesizer={"use": "priceless_llm"}, backtest={"step": 1, "llm_call_cap": 5})
    with pytest.raises(LlmCapExceeded) as caught:
        run_backtest(config, registry, histories={"BTC-USD": btc}, bars=12)
    assert backtest_plugins.LLM_CALLS == []
    estimate = caught.value.estimate
    assert (estimate.synthesizer, estimate.calls, estimate.cap) == ("priceless_llm", 12, 5)
    assert estimate.estimated_cost is None and estimate.prompt_tokens_per_call is None
    assert "cost unknown" in str(caught.value) and "does not estimate its cost" in estimate.describe()


def test_deepseek_pointed_at_nothing_is_refused_before_any_request(registry, btc, tmp_path):
    cache = tmp_path / "llm-cache.db"
    config = make_config(
        registry, theories=["constant"],
        synthesizer={"use": "deepseek", "deepseek": {"base_url": "http://127.0.0.1:9", "cache_path": str(cache), "price_output": 2.0}},
        backtest={"step": 1, "llm_call_cap": 5},
    )
    with pytest.raises(LlmCapExceeded) as caught:
        run_backtest(config, registry, histories={"BTC-USD": btc}, bars=12)
    estimate = caught.value.estimate
    assert estimate.synthesizer == "deepseek" and estimate.calls == 12
    assert estimate.price_input_per_million == 0.27 and estimate.price_output_per_million == 2.0
    assert estimate.max_completion_tokens == 300
    assert not cache.exists()  # the synthesizer was never asked anything
