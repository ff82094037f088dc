"""The default prompt: static instructions first (DeepSeek caches shared prefixes), market data last."""

from __future__ import annotations

from pydantic import Field

from v7 import PluginConfig, PromptFormatter, PromptRequest, Theory, TheoryResult, hookimpl

INSTRUCTIONS = """You are a quantitative crypto analyst. Combine the theory results below into one trading signal.
Rules: weigh each theory by its confidence; ignore theories marked unavailable; prefer HOLD when the evidence conflicts or the market looks random; a high or extreme risk level argues against a new position.
Answer with a json object only, exactly of this form:
{"signal": "BUY", "confidence": 0.62, "reasoning": "One or two sentences."}
where "signal" is one of "BUY", "SELL" or "HOLD" and "confidence" is a number from 0 to 1."""


class MarkdownConfig(PluginConfig):
    instructions: str = Field(default=INSTRUCTIONS, min_length=20, description="The static part of the prompt")
    max_metrics: int = Field(default=4, ge=0, le=20, description="Metrics shown per theory in the generic section")


def _number(value: float) -> str:
    return f"{value:.4g}"


def generic_section(result: TheoryResult, max_metrics: int) -> str:
    """The section of a theory that does not write its own."""
    if not result.ok:
        return f"### {result.theory}\nunavailable ({result.status}: {result.message})"
    bias = "n/a" if result.bias is None else f"{result.bias:+.2f}"
    metrics = ", ".join(f"{k}={_number(v)}" for k, v in list(result.metrics.items())[:max_metrics])
    lines = [
        f"### {result.theory}",
        f"label: {result.label}; bias: {bias}; confidence: {result.confidence:.2f}",
    ]
    if metrics:
        lines.append(f"metrics: {metrics}")
    lines.append(result.interpretation)
    return "\n".join(lines)


def context_section(request: PromptRequest) -> str:
    context = request.context
    lines = [f"## Market: {request.symbol} {request.granularity} bar {request.bar_time:%Y-%m-%d %H:%M} UTC, price {_number(request.price)}"]
    if context is None:
        lines.append("market context: unavailable")
        return "\n".join(lines)
    fields = {
        "market cap": context.market_cap,
        "rank": context.market_cap_rank,
        "24h volume": context.volume_24h,
        "change 1h %": context.change_1h_pct,
        "change 24h %": context.change_24h_pct,
        "change 7d %": context.change_7d_pct,
        "total market cap": context.total_market_cap,
        "total cap change 24h %": context.total_market_cap_change_24h_pct,
        "BTC dominance %": context.btc_dominance_pct,
        "ETH dominance %": context.eth_dominance_pct,
    }
    shown = "; ".join(f"{k}: {_number(v)}" for k, v in fields.items() if v is not None)
    lines.append(f"context ({context.source}): {shown or 'none'}")
    return "\n".join(lines)


class MarkdownFormatter(PromptFormatter):
    """One section per theory, in config order, then the market; a theory may write its own section."""

    name = "markdown"
    version = "1.0"
    Config = MarkdownConfig

    def format(self, request: PromptRequest, prompt: str, theories: dict[str, Theory]) -> str:
        sections = [self.config.instructions.strip(), "## Theories"]
        for result in request.results:
            theory = theories.get(result.theory)
            custom = theory.prompt_section(result) if theory is not None and result.ok else None
            if custom and not custom.lstrip().startswith("#"):
                custom = f"### {result.theory}\n{custom.strip()}"
            sections.append(custom.strip() if custom else generic_section(result, self.config.max_metrics))
        sections.append(context_section(request))
        body = "\n\n".join(sections)
        return f"{prompt.rstrip()}\n\n{body}" if prompt.strip() else body


@hookimpl
def register_formatters(register):
    register(MarkdownFormatter)
