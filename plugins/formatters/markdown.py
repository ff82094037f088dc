"""The default prompt: static instructions first (DeepSeek caches shared prefixes), market data last."""

from __future__ import annotations

from pydantic import Field

from v7 import PluginConfig, PromptFormatter, PromptRequest, Theory, TheoryResult, get_logger, hookimpl, one_line

INSTRUCTIONS = """You are a quantitative crypto analyst. Combine the theory results below into one trading signal.
Rules: weigh each theory by its confidence; ignore theories marked unavailable; prefer HOLD when the evidence conflicts or the market looks random; a high or extreme risk level argues against a new position.
Answer with a json object only, exactly of this form:
{"signal": "BUY", "confidence": 0.62, "reasoning": "One or two sentences."}
where "signal" is one of "BUY", "SELL" or "HOLD" and "confidence" is a number from 0 to 1."""


class MarkdownConfig(PluginConfig):
    instructions: str = Field(default=INSTRUCTIONS, min_length=20, description="The static part of the prompt")
    max_metrics: int = Field(default=4, ge=0, le=20, description="Metrics shown per theory in the generic section")
    max_section_chars: int = Field(
        default=400, ge=40, le=5000, description="Longer theory sections are cut: keeps the prompt within its token budget"
    )


def _number(value: float) -> str:
    return f"{value:.4g}"


def _price(value: float) -> str:
    """Prices keep their cents (67187.33, not 6.719e+04); tiny prices keep 6 significant digits."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.6g}"


def _amount(value: float) -> str:
    """Market caps and volumes in T / B / M, the way people (and models) read them."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return _number(value)


def _cut(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def generic_section(result: TheoryResult, max_metrics: int, max_chars: int = 400) -> str:
    """The section of a theory that does not write its own."""
    if not result.ok:
        return f"### {result.theory}\nunavailable ({_cut(f'{result.status}: {result.message}', max_chars)})"
    bias = "n/a" if result.bias is None else f"{result.bias:+.2f}"
    metrics = ", ".join(f"{k}={_number(v)}" for k, v in list(result.metrics.items())[:max_metrics])
    lines = [
        f"### {result.theory}",
        f"label: {result.label}; bias: {bias}; confidence: {result.confidence:.2f}",
    ]
    if metrics:
        lines.append(f"metrics: {metrics}")
    lines.append(_cut(result.interpretation, max_chars))
    return "\n".join(lines)


def context_section(request: PromptRequest) -> str:
    context = request.context
    lines = [f"## Market: {request.symbol} {request.granularity} bar {request.bar_time:%Y-%m-%d %H:%M} UTC, price {_price(request.price)}"]
    if context is None:
        lines.append("market context: unavailable")
        return "\n".join(lines)
    fields = {
        "market cap": _amount(context.market_cap) if context.market_cap is not None else None,
        "rank": context.market_cap_rank,
        "24h volume": _amount(context.volume_24h) if context.volume_24h is not None else None,
        "change 1h %": context.change_1h_pct,
        "change 24h %": context.change_24h_pct,
        "change 7d %": context.change_7d_pct,
        "total market cap": _amount(context.total_market_cap) if context.total_market_cap is not None else None,
        "total cap change 24h %": context.total_market_cap_change_24h_pct,
        "BTC dominance %": context.btc_dominance_pct,
        "ETH dominance %": context.eth_dominance_pct,
    }
    shown = "; ".join(f"{k}: {v if isinstance(v, str) else _number(v)}" for k, v in fields.items() if v is not None)
    lines.append(f"context ({context.source}): {shown or 'none'}")
    return "\n".join(lines)


class MarkdownFormatter(PromptFormatter):
    """One section per theory, in config order, then the market; a theory may write its own section."""

    name = "markdown"
    version = "1.0"
    Config = MarkdownConfig

    def format(self, request: PromptRequest, prompt: str, theories: dict[str, Theory]) -> str:
        # Static text first and market data last: providers such as DeepSeek cache shared prefixes.
        sections = [self.config.instructions.strip(), "## Theories"]
        for result in request.results:
            custom = self._custom_section(theories.get(result.theory), result, request.symbol, self.config.max_section_chars)
            sections.append(custom or generic_section(result, self.config.max_metrics, self.config.max_section_chars))
        sections.append(context_section(request))
        body = "\n\n".join(sections)
        return f"{prompt.rstrip()}\n\n{body}" if prompt.strip() else body

    @staticmethod
    def _custom_section(theory: Theory | None, result: TheoryResult, symbol: str, max_chars: int) -> str | None:
        """A theory's own section under its `###` heading; None = use the generic one.

        A broken `prompt_section` costs that theory its custom text, not the whole prompt.
        """
        if theory is None or not result.ok:
            return None
        try:
            custom = theory.prompt_section(result)
        except Exception as exc:
            get_logger(symbol=symbol, plugin=result.theory).warning(
                "prompt_section failed; generic section used", error=one_line(exc)
            )
            return None
        if not isinstance(custom, str) or not custom.strip():
            return None
        custom = _cut(custom, max_chars)
        return custom if custom.startswith("#") else f"### {result.theory}\n{custom}"


@hookimpl
def register_formatters(register):
    register(MarkdownFormatter)
