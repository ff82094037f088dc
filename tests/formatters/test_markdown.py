"""The default prompt: config order, cache-friendly layout, determinism, size, custom sections, composition.

Token counts are estimated, not measured: DeepSeek's tokenizer is not available offline (tiktoken
downloads its encodings at run time). `estimate_tokens` takes the larger of two deliberately
pessimistic counts: characters / 3.5 (BPE tokenizers average about 4 characters per token on
English text), and one token per word, per group of up to three digits and per punctuation mark
(numbers and symbols are what such prompts are full of, and tokenizers split them finely).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from helpers import BTC_CSV
from plugin_samples import SamplePlugin
from v7 import MarketContext, PromptFormatter, PromptRequest, Theory, TheoryFinding, hookimpl
from v7.core.candles import read_candles_csv
from v7.core.config import DEFAULT_THEORIES, validate_config
from v7.core.engine import Pipeline
from v7.core.logs import configure_logging
from v7.core.registry import PluginSource, load_registry
from v7.plugins.formatters.markdown import INSTRUCTIONS

TOKEN_BUDGET = 1000


def estimate_tokens(text: str) -> int:
    pieces = len(re.findall(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]", text))
    return max(pieces, int(len(text) / 3.5) + 1)


class OwnSectionTheory(Theory):
    """Writes its own prompt text (without a heading: the formatter adds it)."""

    name = "own_section"
    default_min_candles = 5

    def analyze(self, candles):
        return TheoryFinding(bias=0.2, confidence=0.5, label="custom", interpretation="ignored in the prompt",
                             metrics={"value": 1.5})

    def prompt_section(self, result):
        return f"Custom text: value {result.metrics['value']:.1f}, label {result.label}."


class PlainTheory(Theory):
    """A third-party theory with no `prompt_section`: gets the generic section."""

    name = "plain"
    default_min_candles = 5

    def analyze(self, candles):
        return TheoryFinding(bias=-0.25, confidence=0.4, label="leaning_down",
                             interpretation="Closes lean lower than opens.",
                             metrics={"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0})


class BrokenSectionTheory(PlainTheory):
    name = "broken_section"

    def prompt_section(self, result):
        raise KeyError("metric_that_is_not_there")


class FooterFormatter(PromptFormatter):
    """Appends a section to whatever came before it."""

    name = "footer"

    def format(self, request, prompt, theories):
        return f"{prompt}\n\n## Notes\nfooter for {request.symbol}" if prompt else f"## Notes\nfooter for {request.symbol}"


class FailingFormatter(PromptFormatter):
    name = "failing_formatter"

    def format(self, request, prompt, theories):
        raise RuntimeError("cannot format")


class TestPlugins:
    @hookimpl
    def register_theories(self, register):
        for cls in (OwnSectionTheory, PlainTheory, BrokenSectionTheory):
            register(cls)

    @hookimpl
    def register_formatters(self, register):
        register(FooterFormatter)
        register(FailingFormatter)


@pytest.fixture(scope="module")
def registry():
    registry = load_registry()
    registry.add_plugin(SamplePlugin(), PluginSource("samples", "v7-test-samples", "1.0"))
    registry.add_plugin(TestPlugins(), PluginSource("formatter-tests", "v7-test-formatters", "1.0"))
    return registry


@pytest.fixture(scope="module")
def candles():
    return read_candles_csv(BTC_CSV, "BTC-USD")


CONTEXT = MarketContext(
    source="coingecko", price=67187.33, market_cap=1.32e12, market_cap_rank=1, volume_24h=3.1e10,
    change_1h_pct=0.12, change_24h_pct=3.63, change_7d_pct=-1.2, total_market_cap=2.5e12,
    total_market_cap_change_24h_pct=2.1, btc_dominance_pct=52.1, eth_dominance_pct=16.9,
)


def pipeline(registry, theories, formatters=("markdown",), lookback=400):
    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": lookback, "theory_timeout_seconds": 30},
        "theories": {"enabled": list(theories)},
        "formatters": {"enabled": list(formatters)},
    }
    return Pipeline.build(validate_config(raw, registry), registry, kinds=("theory", "formatter"))


def prompt_at(pipe: Pipeline, candles, stop: int, context: MarketContext | None = CONTEXT) -> str:
    """The prompt for the bar at index `stop - 1`, from the lookback candles ending there."""
    window = candles.slice(stop - pipe.config.engine.lookback, stop)
    request = PromptRequest(symbol="BTC-USD", granularity="1h", bar_time=window.last_time, price=window.last_price,
                            results=pipe.analyze(window), context=context)
    return pipe.build_prompt(request)


@pytest.fixture(scope="module")
def five(registry):
    """The five built-in theories at the default lookback: what a default run sends."""
    return pipeline(registry, DEFAULT_THEORIES, lookback=1000)


@pytest.fixture(scope="module")
def five_prompts(five, candles):
    return [prompt_at(five, candles, stop) for stop in (5000, 5001, 15000)]


def headings(prompt: str) -> list[str]:
    return re.findall(r"^### (\S+)", prompt, re.MULTILINE)


def test_sections_follow_the_config_order(registry, candles):
    order = ["kalman_filter", "plain", "monte_carlo", "own_section", "hurst_exponent"]
    for theories in (order, list(reversed(order))):
        prompt = prompt_at(pipeline(registry, theories), candles, 3000)
        assert headings(prompt) == theories


def test_static_instructions_first_market_data_last(five_prompts):
    for prompt in five_prompts:
        assert prompt.startswith(INSTRUCTIONS.strip())
        market = prompt.index("## Market: BTC-USD 1h")
        assert market > max(prompt.index(f"### {name}") for name in DEFAULT_THEORIES)
        assert "## Notes" not in prompt and prompt.rstrip().endswith("ETH dominance %: 16.9")
    # Different bars and prices: the provider-cacheable prefix is everything up to the theory sections.
    shared = os.path.commonprefix(five_prompts)
    assert shared.startswith(INSTRUCTIONS.strip() + "\n\n## Theories\n\n### " + DEFAULT_THEORIES[0])
    assert len(set(five_prompts)) == 3


def test_the_same_inputs_give_the_same_prompt(registry, five, five_prompts, candles):
    again = pipeline(registry, DEFAULT_THEORIES, lookback=1000)  # fresh theory instances
    assert prompt_at(again, candles, 5000) == five_prompts[0]
    assert prompt_at(five, candles, 5000) == five_prompts[0]


def test_five_theories_and_market_context_fit_the_token_budget(five_prompts):
    for prompt in five_prompts:
        assert "json" in prompt  # DeepSeek's JSON mode requires it
        assert headings(prompt) == DEFAULT_THEORIES
        assert "unavailable (" not in prompt, prompt
        assert estimate_tokens(prompt) <= TOKEN_BUDGET, (estimate_tokens(prompt), prompt)


def test_even_failed_theories_and_long_messages_stay_in_budget(registry, candles):
    # Too few candles for every theory: five "unavailable" sections plus the market.
    prompt = prompt_at(pipeline(registry, DEFAULT_THEORIES, lookback=10), candles, 3000)
    assert prompt.count("unavailable (insufficient_data") == 5
    assert estimate_tokens(prompt) <= TOKEN_BUDGET


def test_a_long_third_party_section_is_cut(registry, candles):
    from v7.core.models import TheoryResult
    from v7.plugins.formatters.markdown import MarkdownConfig, MarkdownFormatter

    wordy = TheoryResult(theory="wordy", version="1", status="ok", bias=0.1, confidence=0.5, label="verbose",
                         interpretation="blah " * 2000)
    request = PromptRequest(symbol="BTC-USD", granularity="1h", bar_time=candles.last_time, price=67187.33,
                            results=[wordy], context=CONTEXT)
    prompt = MarkdownFormatter(MarkdownConfig()).format(request, "", {})
    section = prompt.split("### wordy\n", 1)[1].split("\n\n## Market", 1)[0]
    assert len(section.splitlines()[-1]) == 400 and section.endswith("…")
    assert estimate_tokens(prompt) <= TOKEN_BUDGET


def test_market_numbers_are_readable(candles):
    from v7.plugins.formatters.markdown import context_section

    request = PromptRequest(symbol="BTC-USD", granularity="1h", bar_time=candles.last_time, price=67187.33,
                            results=[], context=CONTEXT)
    text = context_section(request)
    assert "price 67187.33" in text
    assert "market cap: 1.32T; rank: 1; 24h volume: 31B;" in text


def test_the_estimate_is_pessimistic():
    # Compared with typical BPE counts (~4 chars/token on prose, numbers split in 1–3 digit groups).
    assert estimate_tokens("The quick brown fox jumps over the lazy dog.") >= 10
    assert estimate_tokens("67187.33 1.32e+12 -0.033%") >= 12


def test_a_theory_may_write_its_own_section_and_others_get_the_generic_one(registry, candles):
    prompt = prompt_at(pipeline(registry, ["own_section", "plain", "hurst_exponent"]), candles, 3000)
    own = prompt.split("### own_section\n", 1)[1].split("\n\n", 1)[0]
    assert own == "Custom text: value 1.5, label custom."
    plain = prompt.split("### plain\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert plain == [
        "label: leaning_down; bias: -0.25; confidence: 0.40",
        "metrics: a=1, b=2, c=3, d=4",  # max_metrics = 4 by default
        "Closes lean lower than opens.",
    ]
    hurst = prompt.split("### hurst_exponent\n", 1)[1].split("\n\n", 1)[0]
    assert hurst.startswith("**Hurst exponent**")  # the built-in's own text


def test_a_failing_prompt_section_falls_back_to_the_generic_section(registry, candles, capsys):
    configure_logging("info", json_lines=True)
    prompt = prompt_at(pipeline(registry, ["broken_section", "own_section"]), candles, 3000)
    assert headings(prompt) == ["broken_section", "own_section"]
    assert "label: leaning_down; bias: -0.25" in prompt
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert any(line["event"] == "prompt_section failed; generic section used" and line["plugin"] == "broken_section"
               for line in lines)


def test_a_failed_theory_is_marked_unavailable(registry, candles):
    prompt = prompt_at(pipeline(registry, ["raising", "own_section"]), candles, 3000)
    assert "### raising\nunavailable (error: ZeroDivisionError: boom in analyze)" in prompt


def test_no_market_context_is_said_not_hidden(registry, candles):
    prompt = prompt_at(pipeline(registry, ["plain"]), candles, 3000, context=None)
    assert prompt.rstrip().endswith("market context: unavailable")


def test_formatters_run_in_config_order_and_compose(registry, candles):
    markdown_only = prompt_at(pipeline(registry, ["plain"]), candles, 3000)
    after = prompt_at(pipeline(registry, ["plain"], formatters=["markdown", "footer"]), candles, 3000)
    assert after == markdown_only + "\n\n## Notes\nfooter for BTC-USD"
    before = prompt_at(pipeline(registry, ["plain"], formatters=["footer", "markdown"]), candles, 3000)
    assert before == "## Notes\nfooter for BTC-USD\n\n" + markdown_only


def test_a_failing_formatter_is_skipped_and_the_rest_compose(registry, candles):
    markdown_only = prompt_at(pipeline(registry, ["plain"]), candles, 3000)
    prompt = prompt_at(pipeline(registry, ["plain"], formatters=["markdown", "failing_formatter", "footer"]), candles, 3000)
    assert prompt == markdown_only + "\n\n## Notes\nfooter for BTC-USD"


def test_custom_instructions_replace_the_static_part(registry, candles):
    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": 400},
        "theories": {"enabled": ["plain"]},
        "formatters": {"markdown": {"instructions": "Reply in json: BUY, SELL or HOLD with a confidence.", "max_metrics": 1}},
    }
    pipe = Pipeline.build(validate_config(raw, registry), registry, kinds=("theory", "formatter"))
    prompt = prompt_at(pipe, candles, 3000)
    assert prompt.startswith("Reply in json: BUY, SELL or HOLD with a confidence.\n\n## Theories")
    assert "metrics: a=1\n" in prompt
