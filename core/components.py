"""Base classes for the five plugin kinds.

A plugin registers a subclass; the core instantiates it with its validated config model
and calls it. Subclasses set `name` (unique within the kind), `version` and, when they take
settings, a `Config` model (pydantic, unknown keys forbidden).
"""

from __future__ import annotations

from datetime import datetime
import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .models import CandleSeries, CostEstimate, TokenUsage, MarketContext, PromptRequest, RunInfo, RunProblem, Signal, Synthesis, SynthesisRequest, TheoryFinding, TheoryResult
from .synthesis_batch import SynthesisBatch, SynthesisColumns

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import structlog

    from .reading import SignalReader


ENV_NAME_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_NAME_PATTERN = re.compile(ENV_NAME_REGEX)
EnvVarName = Annotated[str, Field(pattern=ENV_NAME_REGEX, description="Name of an environment variable (never the secret itself)")]
"""The type of an `*_env` setting: the name of the variable that holds a secret, checked at startup."""


class PluginConfig(BaseModel):
    """Base for every plugin's config table: unknown keys are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    # Settings that do not shape a signal (timeouts, rate limits, retries, cache files), left out of
    # the config hash (the signals' unique key) so tuning them does not make stored bars look new.
    # Named by exclusion: a new setting is in the hash unless someone says it is transport.
    transport_fields: ClassVar[frozenset[str]] = frozenset()

    def shown(self) -> dict[str, Any]:
        """The settings as `v7 config show` prints them. V7 hides keys named like secrets (`api_key`,
        `token`, …); override to hide what only the plugin knows is one, such as a token inside a URL."""
        return self.model_dump(mode="json", by_alias=True)


class TheoryConfig(PluginConfig):
    min_candles: int | None = Field(
        default=None, ge=2, description="Candles needed before the theory answers; None = the theory's default."
    )


class InsufficientData(Exception):
    """Raised by a theory that cannot answer honestly (too few candles, flat or stale series)."""


class EndOfData(Exception):
    """Raised by a replay-style feed when a symbol has no more bars to replay."""


class UpToDate(EndOfData):
    """Raised by a resuming feed when a symbol has no bar after the last one stored: nothing to do, not a failure."""


class StartupError(Exception):
    """A problem that stops `v7 run` before any data is fetched."""


class NotSupported(Exception):
    """A plugin was asked for an optional capability it does not offer (see `Component.supports`)."""


class SignalSpooled(Exception):
    """Raised by `Sink.write` for a signal it could not store now but kept durably (a spool file) and
    will store later: the run counts it as spooled, not lost. The message says where it waits."""


class SignalHeld(Exception):
    """Raised by `Sink.write` for a signal kept only in memory, to be saved by `close()`; the run asks
    `Sink.unsaved()` after closing which ones are still nowhere durable."""


class SynthesisFailed(Exception):
    """Raised by a synthesizer that gave up; the fallback takes over and the signal keeps these facts."""

    def __init__(self, reason: str, attempts: int = 1, usage: "TokenUsage | None" = None, quiet: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.usage = usage
        self.quiet = quiet
        """True for an expected hand-over (a learner still collecting its first rows): logged at debug, still recorded on the signal."""


class Component:
    """What every plugin component has in common."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def supports(cls, capability: str) -> bool:
        """True when this class implements the optional method `capability` its base class declares."""
        base = KINDS.get(cls.kind)
        default = getattr(base, capability, None) if base is not None else None
        if default is None or capability not in OPTIONAL_CAPABILITIES.get(cls.kind, ()):
            raise ValueError(f"{capability!r} is not an optional capability of a {cls.kind or 'component'}")
        # Compare the functions themselves: a classmethod gives a new bound object on every access.
        return getattr(getattr(cls, capability), "__func__", getattr(cls, capability)) is not getattr(default, "__func__", default)


class Theory(Component):
    """Turns candles into a `TheoryFinding`.

    Must be causal (only the candles given), deterministic (seed any randomness), and must not
    change process-wide state. Raise `InsufficientData` to abstain.
    """

    kind = "theory"
    Config: ClassVar[type[PluginConfig]] = TheoryConfig
    default_min_candles: ClassVar[int] = 30
    directional: ClassVar[bool] = True
    """False for a theory that never states a direction (`bias` always None: entropy, VaR); the
    backtest then reports it as not directional instead of as silent."""
    loss_metrics: ClassVar[dict[str, str]] = {}
    """For a risk theory: which of its metrics are losses, as positive fractions of a unit position over its
    horizon, under the keys "var" and "cvar" (`{"cvar": "cvar"}`); position sizing reads them for its loss budget."""

    @property
    def min_candles(self) -> int:
        configured = getattr(self.config, "min_candles", None)
        return int(configured) if configured else self.default_min_candles

    def analyze(self, candles: CandleSeries) -> TheoryFinding:  # pragma: no cover - abstract
        raise NotImplementedError

    def analyze_batch(self, history: CandleSeries, ends: "Sequence[int]", lookback: int) -> "list[TheoryFinding | InsufficientData]":
        """Optional: the findings at many consecutive bars at once (a backtest's fast path).

        For each index t of `ends` (ascending), exactly what `analyze(history.slice(max(0, t + 1 -
        lookback), t + 1))` would return, or the `InsufficientData` it would raise: equal to 1e-9 for
        floats, exactly for labels. Use only candles up to t for the finding at t. The core checks
        `min_candles` first, falls back to `analyze` bar by bar when this raises, and
        `v7 backtest --check-lookahead` compares the two.
        """
        raise NotSupported(f"theory {self.name!r} has no batch path (it does not implement analyze_batch)")

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

    def check_symbols(self, symbols: list[str], granularity: str) -> list[str]:
        """Problems, one line each, that make these symbols unusable with this feed (checked by `v7 config check`
        and before `v7 run` fetches anything); [] when the feed cannot tell without fetching."""
        return []

    def fetch_history(self, symbol: str, granularity: str, start: datetime | None, end: datetime | None) -> CandleSeries:
        """Optional: every closed candle from `start` to `end` (UTC, inclusive; None = open), oldest first.

        What `v7 backtest` replays. A feed pages its own API here; validate rows as `fetch_candles` does.
        """
        raise NotSupported(f"feed {self.name!r} cannot provide history (it does not implement fetch_history)")

    @property
    def resumes(self) -> bool:
        """Whether this feed wants `v7 run` to start each symbol after its last stored bar (replay's `resume`)."""
        return False

    def resume_after(self, symbol: str, bar_time: datetime) -> None:
        """Optional: start `symbol` after `bar_time`, the last bar already stored for this config.

        Called once per symbol before the first fetch, when `resumes` is true and a sink can read back.
        """
        raise NotSupported(f"feed {self.name!r} cannot resume (it does not implement resume_after)")

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
    offline: ClassVar[bool] = False
    """True for a synthesizer that needs no network or key: the default, and the fallback of any other."""
    calibrated: ClassVar[bool] = False
    """True when a BUY/SELL confidence is a calibrated probability that the direction is right
    (position sizing may then use it as one); the backtest's calibration table checks the claim."""
    confidence_meaning: ClassVar[str] = "not documented by the synthesizer"
    """What `confidence` means for BUY/SELL and for HOLD, in a sentence (shown by the backtest)."""
    learns: ClassVar[bool] = False
    """True for a synthesizer that learns from the bars it is shown (walk-forward): it must see each
    symbol's bars in time order, in one process, so a backtest synthesizes in its driving process,
    bar by bar, and `--check-lookahead` replays its history truncated at a sampled bar."""

    def synthesize(self, request: SynthesisRequest) -> Synthesis:  # pragma: no cover
        raise NotImplementedError

    def synthesize_batch(self, batch: SynthesisBatch) -> SynthesisColumns:
        """Optional: the answers to many bars of one symbol at once (a backtest's chunk), each what
        `synthesize(batch.request(i))` answers, with the rule over arrays instead of a call per bar.
        Raise (or answer the wrong number) and V7 asks `synthesize` bar by bar instead."""
        raise NotSupported(f"synthesizer {self.name!r} has no batch path (it does not implement synthesize_batch)")

    def estimate_cost(self, prompt: str, calls: int) -> CostEstimate:
        """Optional: what `calls` requests like `prompt` would cost; the backtest's cost guard shows and caps it."""
        raise NotSupported(f"synthesizer {self.name!r} cannot estimate its cost (it does not implement estimate_cost)")

    def importances(self) -> dict[str, dict[str, float]]:
        """Optional: per symbol, how much each feature moved the decisions so far (a learned model's
        importances, normalised to sum to 1); the backtest reports them."""
        raise NotSupported(f"synthesizer {self.name!r} reports no feature importances (it does not implement importances)")

    def model_details(self) -> dict[str, Any] | None:
        """Optional: the `details` kept with the model it loaded (None when it loaded none). V7 checks
        at start that its `theory_keys` match the enabled theories: a model fed other features is refused."""
        raise NotSupported(f"synthesizer {self.name!r} loads no trained model (it does not implement model_details)")

    def save_model(self, path: "Path", details: dict[str, Any]) -> None:
        """Optional: write what it learned from the bars it was shown to `path` (`v7 train`), with
        `details` (training range, config hash of the theories, out-of-sample scores) kept inside."""
        raise NotSupported(f"synthesizer {self.name!r} cannot be trained (it does not implement save_model)")

    def close(self) -> None:
        """Release clients or caches; called once when the run ends."""


class Sink(Component):
    """Stores or forwards signals. `write` must store a signal whole or not at all."""

    kind = "sink"
    stores: ClassVar[bool] = True
    """False for a sink that only forwards signals (notifications): what its `write` answers does not
    count a signal as stored, so it never hides one the stores spooled or lost."""

    def open(self, run: RunInfo, log: "structlog.stdlib.BoundLogger") -> None:
        """Called once before the first signal."""

    def write(self, signal: Signal) -> bool:  # pragma: no cover
        """Store one signal; return False when it was already stored (idempotent re-run)."""
        raise NotImplementedError

    def write_many(self, signals: list[Signal]) -> list[bool]:
        """Optional: store several signals at once, as `write` would each (its answers, in order), all or
        none: one transaction and one sync to disk instead of one per signal. On any exception nothing
        may be stored; V7 then hands the signals to `write` one by one, which spools what it must."""
        raise NotSupported(f"sink {self.name!r} stores one signal at a time (it does not implement write_many)")

    def close(self) -> None:
        """Called once when the run ends, also after errors."""

    def reader(self) -> "SignalReader":
        """Optional: read back what this sink stored (`v7 stats`, `v7 export`, backtest storage, dashboards).

        Must work while another process writes, and without `open()` having been called.
        """
        raise NotSupported(f"sink {self.name!r} cannot be read back (it does not implement reader)")

    @classmethod
    def reader_at(cls, location: str) -> "SignalReader":
        """Optional: a reader for a store named on the command line (`v7 stats --db FILE`)."""
        raise NotSupported(f"sink {cls.name!r} cannot open a store by location (it does not implement reader_at)")

    def notice(self, problem: RunProblem) -> None:
        """Optional: hear about a run problem (a feed failing, the LLM budget reached, a store spooling)
        each time it happens. Called from the run's thread: return at once (queue any sending), never raise."""
        raise NotSupported(f"sink {self.name!r} takes no notices of run problems (it does not implement notice)")

    def unsaved(self) -> list[Signal]:
        """Optional: after `close()`, the signals `write` raised `SignalHeld` for that are still in memory only.

        The run writes them to stdout as JSON lines, the last resort, and counts them as lost.
        """
        raise NotSupported(f"sink {self.name!r} holds no signals in memory (it does not implement unsaved)")


KINDS: dict[str, type[Component]] = {
    "theory": Theory,
    "feed": Feed,
    "formatter": PromptFormatter,
    "synthesizer": Synthesizer,
    "sink": Sink,
}

# Methods a kind's base class declares with a "not supported" default; `supports()` knows only these.
OPTIONAL_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "theory": ("analyze_batch",),
    "feed": ("fetch_history", "fetch_context", "fetch_candles", "resume_after"),
    "synthesizer": ("synthesize_batch", "estimate_cost", "importances", "model_details", "save_model"),
    "sink": ("reader", "reader_at", "unsaved", "notice", "write_many"),
}
