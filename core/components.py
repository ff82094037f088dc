"""Base classes for the five plugin kinds.

A plugin registers a subclass; the core instantiates it with its validated config model
and calls it. Subclasses set `name` (unique within the kind), `version` and, when they take
settings, a `Config` model (pydantic, unknown keys forbidden).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from .models import CandleSeries, TokenUsage, MarketContext, PromptRequest, RunInfo, Signal, Synthesis, SynthesisRequest, TheoryFinding, TheoryResult

if TYPE_CHECKING:  # pragma: no cover
    import structlog


class PluginConfig(BaseModel):
    """Base for every plugin's config table: unknown keys are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    # The settings that shape a signal, for the config hash (the signals' unique key); None = all.
    # Transport knobs (timeouts, rate limits, retries, cache files) leave it out, so tuning them
    # does not make already-stored bars look new.
    signal_fields: ClassVar[frozenset[str] | None] = None


class TheoryConfig(PluginConfig):
    min_candles: int | None = Field(
        default=None, ge=2, description="Candles needed before the theory answers; None = the theory's default."
    )


class InsufficientData(Exception):
    """Raised by a theory that cannot answer honestly (too few candles, flat or stale series)."""


class EndOfData(Exception):
    """Raised by a replay-style feed when a symbol has no more bars to replay."""


class StartupError(Exception):
    """A problem that stops `v7 run` before any data is fetched."""


class SynthesisFailed(Exception):
    """Raised by a synthesizer that gave up; the fallback takes over and the signal keeps these facts."""

    def __init__(self, reason: str, attempts: int = 1, usage: "TokenUsage | None" = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.usage = usage


class Component:
    """What every plugin component has in common."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()


class Theory(Component):
    """Turns candles into a `TheoryFinding`.

    Must be causal (only the candles given), deterministic (seed any randomness), and must not
    change process-wide state. Raise `InsufficientData` to abstain.
    """

    kind = "theory"
    Config: ClassVar[type[PluginConfig]] = TheoryConfig
    default_min_candles: ClassVar[int] = 30
    directional: ClassVar[bool] = False

    @property
    def min_candles(self) -> int:
        configured = getattr(self.config, "min_candles", None)
        return int(configured) if configured else self.default_min_candles

    def analyze(self, candles: CandleSeries) -> TheoryFinding:  # pragma: no cover - abstract
        raise NotImplementedError

    def prompt_section(self, result: TheoryResult) -> str | None:
        """Optional text of this theory's section in the LLM prompt; None = the generic section."""
        return None


class Feed(Component):
    """Supplies candles and/or market context.

    `provides` says which; `live` feeds make `v7 run` wait `interval_seconds` between iterations,
    replay feeds do not.
    """

    kind = "feed"
    provides: ClassVar[frozenset[str]] = frozenset({"candles"})
    live: ClassVar[bool] = True

    def fetch_candles(self, symbol: str, granularity: str, lookback: int) -> CandleSeries | None:
        raise NotImplementedError(f"feed {self.name!r} does not provide candles")

    def fetch_context(self, symbol: str) -> MarketContext | None:
        raise NotImplementedError(f"feed {self.name!r} does not provide market context")

    def close(self) -> None:
        """Release connections; called once when the run ends."""


class PromptFormatter(Component):
    """Builds (part of) the LLM prompt; enabled formatters run in config order, each given the text so far."""

    kind = "formatter"

    def format(self, request: PromptRequest, prompt: str, theories: dict[str, Theory]) -> str:  # pragma: no cover
        raise NotImplementedError


class Synthesizer(Component):
    """Turns theory results (and the prompt) into BUY / SELL / HOLD.

    Raise any exception to hand over to the configured fallback; the core records why.
    """

    kind = "synthesizer"
    needs_prompt: ClassVar[bool] = False

    def synthesize(self, request: SynthesisRequest) -> Synthesis:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        """Release clients or caches; called once when the run ends."""


class Sink(Component):
    """Stores or forwards signals. `write` must store a signal whole or not at all."""

    kind = "sink"

    def open(self, run: RunInfo, log: "structlog.stdlib.BoundLogger") -> None:
        """Called once before the first signal."""

    def write(self, signal: Signal) -> bool:  # pragma: no cover
        """Store one signal; return False when it was already stored (idempotent re-run)."""
        raise NotImplementedError

    def close(self) -> None:
        """Called once when the run ends, also after errors."""


KINDS: dict[str, type[Component]] = {
    "theory": Theory,
    "feed": Feed,
    "formatter": PromptFormatter,
    "synthesizer": Synthesizer,
    "sink": Sink,
}
