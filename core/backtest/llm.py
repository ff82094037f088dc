"""An LLM synthesizer in a backtest: its calls estimated and capped before any is made, and what they cost."""

from __future__ import annotations

from typing import Iterable

from ..components import Synthesizer
from ..models import TokenUsage
from .models import BarSignal, LlmEstimate, LlmUsage


def is_llm(synthesizer: Synthesizer | None) -> bool:
    """A synthesizer that needs a prompt (an LLM): its calls are estimated and capped."""
    return synthesizer is not None and synthesizer.needs_prompt


def estimate_llm(synthesizer: Synthesizer, first_prompt: str, calls: int, cap: int) -> LlmEstimate:
    """Calls and cost of an LLM backtest: the synthesizer's own `estimate_cost` of `calls` prompts like the first.

    A synthesizer without that capability (or whose estimate fails) gets an estimate with the cost
    unknown; the cap still counts its calls.
    """
    if type(synthesizer).supports("estimate_cost"):
        try:
            cost = synthesizer.estimate_cost(first_prompt, calls)
        except Exception as exc:
            note = f"{synthesizer.name!r} could not estimate it ({type(exc).__name__}: {exc})"
        else:
            return LlmEstimate.of(synthesizer.name, cap, cost.model_copy(update={"calls": calls}))
    else:
        note = f"{synthesizer.name!r} does not estimate its cost (no estimate_cost)"
    return LlmEstimate(synthesizer=synthesizer.name, calls=calls, cap=cap, cost_note=note)


def llm_usage(signals: Iterable[BarSignal], llm_name: str) -> LlmUsage:
    usage = LlmUsage()
    tokens = TokenUsage()
    for s in signals:
        usage.requests += s.attempts if s.synthesizer == llm_name or s.fallback_reason else 0
        if s.synthesizer == llm_name and s.attempts == 0:
            usage.cached_answers += 1
        if s.fallback_reason and s.synthesizer != llm_name:
            usage.fallbacks += 1
        tokens = tokens + s.usage
    usage.prompt_tokens, usage.completion_tokens, usage.cost = tokens.prompt_tokens, tokens.completion_tokens, tokens.cost
    return usage
