"""The data that crosses plugin boundaries: candles, theory results, market context, signals.

Everything here is light to import (no numpy at module level) so `v7 --help` and
`v7 plugins` stay fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, InstanceOf

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

Direction = Literal["BUY", "SELL", "HOLD"]
TheoryStatus = Literal["ok", "insufficient_data", "error"]
ProblemKind = Literal["feed_failing", "llm_budget", "store_spooling"]

GRANULARITY_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "6h": 21600,
    "1d": 86400,
}


def granularity_seconds(granularity: str) -> int:
    """Seconds per bar of a granularity name (`"1h"` → 3600); ValueError naming the known ones."""
    try:
        return GRANULARITY_SECONDS[granularity]
    except KeyError:
        raise ValueError(f"unsupported granularity {granularity!r}; expected one of {', '.join(GRANULARITY_SECONDS)}") from None


def count_gaps(timestamps: "np.ndarray", step: int | None) -> int:
    """Missing bars between consecutive timestamps (unix seconds) spaced `step` seconds apart."""
    if not step or len(timestamps) < 2:
        return 0
    steps = timestamps[1:] - timestamps[:-1]
    if (steps == step).all():  # the usual case, in half the work
        return 0
    return int((steps // step - 1).clip(min=0).sum())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Candle(BaseModel):
    """One OHLCV bar; `timestamp` is the bar's open in unix seconds (UTC)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


@dataclass(frozen=True)
class CandleSeries:
    """A validated, oldest-first run of candles for one symbol, held as numpy arrays.

    Theories get this rather than a DataFrame because slicing arrays is what keeps five
    theories on 1,000 candles inside a few milliseconds.
    """

    symbol: str
    granularity: str
    timestamp: "np.ndarray"
    open: "np.ndarray"
    high: "np.ndarray"
    low: "np.ndarray"
    close: "np.ndarray"
    volume: "np.ndarray"
    gaps: int = 0
    # Rows the feed's validation dropped, by reason; only on the series as read, not on slices.
    dropped: dict[str, int] = field(default_factory=dict)
    # Set by live feeds whose last bar is still forming: unix seconds of the data it holds.
    as_of: int | None = None

    def __len__(self) -> int:
        return int(self.close.shape[0])

    @property
    def last_time(self) -> datetime:
        return datetime.fromtimestamp(int(self.timestamp[-1]), timezone.utc)

    @property
    def signal_time(self) -> datetime:
        """What a signal on this series is as of: the last bar's open, or for a forming bar the data's time.

        A forming hour analysed at :15 and again at :30 gives two signals, not one stored twice.
        """
        if self.as_of is not None:
            return datetime.fromtimestamp(int(self.as_of), timezone.utc)
        return self.last_time

    @property
    def last_price(self) -> float:
        return float(self.close[-1])

    def tail(self, n: int) -> "CandleSeries":
        """The last `n` candles (all of them when there are fewer)."""
        return self.slice(max(0, len(self) - n), len(self))

    def slice(self, start: int, stop: int, gaps: int | None = None) -> "CandleSeries":
        """Bars `start:stop`; `gaps` is recounted inside the slice so it says nothing about later bars
        (pass it when known: `gap_counts` answers it for any slice in O(1))."""
        timestamp = self.timestamp[start:stop]
        return CandleSeries(
            symbol=self.symbol,
            granularity=self.granularity,
            timestamp=timestamp,
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            close=self.close[start:stop],
            volume=self.volume[start:stop],
            gaps=count_gaps(timestamp, GRANULARITY_SECONDS.get(self.granularity)) if gaps is None else gaps,
            as_of=self.as_of if stop >= len(self) else None,
        )

    def gap_counts(self) -> "np.ndarray":
        """Missing bars before each bar, cumulated: `slice(a, b)` holds `g[b - 1] - g[a]` gaps (b > a)."""
        import numpy as np

        step = GRANULARITY_SECONDS.get(self.granularity)
        out = np.zeros(len(self), dtype=np.int64)
        if step and len(self) > 1:
            np.cumsum((np.diff(self.timestamp) // step - 1).clip(min=0), out=out[1:])
        return out

    def to_frame(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame(
            {
                "timestamp": self.timestamp,
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
            }
        )


class TheoryFinding(BaseModel):
    """What a theory's `analyze` returns; the core adds name, version, status and timing."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    bias: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="-1 strongly bearish … +1 strongly bullish; None when the theory is not directional.",
    )
    confidence: float = Field(ge=0.0, le=1.0)
    label: str = Field(min_length=1, max_length=40)
    interpretation: str = Field(min_length=1)
    metrics: dict[str, float] = Field(default_factory=dict)

    @field_validator("bias", "confidence")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("metrics")
    @classmethod
    def _finite_metrics(cls, metrics: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"metrics must be finite numbers; not finite: {', '.join(bad)}")
        return metrics


class TheoryResult(BaseModel):
    """One theory's verdict on one symbol at one bar, as stored and shown everywhere."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    theory: str
    version: str
    status: TheoryStatus
    bias: float | None = Field(default=None, ge=-1.0, le=1.0)
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    label: str = ""
    interpretation: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    elapsed_ms: float = 0.0
    message: str | None = Field(default=None, description="Why the theory abstained or failed.")

    @property
    def ok(self) -> bool:
        return self.status == "ok"



class MarketContext(BaseModel):
    """Market-wide facts for a symbol from a context feed such as CoinGecko; every field optional."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    source: str
    price: float | None = None
    market_cap: float | None = None
    market_cap_rank: int | None = None
    volume_24h: float | None = None
    change_1h_pct: float | None = None
    change_24h_pct: float | None = None
    change_7d_pct: float | None = None
    total_market_cap: float | None = None
    total_market_cap_change_24h_pct: float | None = None
    btc_dominance_pct: float | None = None
    eth_dominance_pct: float | None = None
    fetched_at: datetime = Field(default_factory=utc_now)


class PromptRequest(BaseModel):
    """What prompt formatters see: the theory results in config order and the market."""

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    symbol: str
    granularity: str
    bar_time: datetime
    price: float
    results: list[TheoryResult]
    context: MarketContext | None = None
    candles: InstanceOf[CandleSeries] | None = Field(
        default=None, exclude=True,
        description="the candles the theories saw, up to this bar (never later ones): what a learning synthesizer reads prices from",
    )


class TokenUsage(BaseModel):
    """Tokens and USD an LLM call cost; `a + b` sums two (None counts as nothing)."""

    model_config = ConfigDict(defer_build=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: "TokenUsage | None") -> "TokenUsage":
        if other is None:
            return self.model_copy()
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cache_hit_tokens=self.cache_hit_tokens + other.cache_hit_tokens,
            cache_miss_tokens=self.cache_miss_tokens + other.cache_miss_tokens,
            cost=round(self.cost + other.cost, 10),
        )

    def __radd__(self, other: "TokenUsage | int | None") -> "TokenUsage":
        # `sum(usages)` starts from 0; None + usage is the usage.
        return self.model_copy() if other is None or other == 0 else self + other  # type: ignore[operator]


class CostEstimate(BaseModel):
    """What a synthesizer expects a batch of calls to cost (`Synthesizer.estimate_cost`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    calls: int = Field(ge=0)
    prompt_tokens_per_call: int = Field(ge=0)
    completion_tokens_per_call: int = Field(ge=0)
    max_completion_tokens: int | None = None
    price_input_per_million: float | None = None
    price_output_per_million: float | None = None
    estimated_cost: float | None = Field(default=None, description="USD, every prompt token priced as a cache miss")
    max_cost: float | None = Field(default=None, description="USD, every answer as long as max_completion_tokens allows")


class SynthesisRequest(PromptRequest):
    """What a synthesizer sees: the prompt request plus the composed prompt text."""

    prompt: str = ""

    @classmethod
    def of(cls, request: PromptRequest, prompt: str) -> "SynthesisRequest":
        """`request` with its prompt. Its fields were validated when it was built: they are handed
        over as they are (no dump and re-validation per bar). A request that already is one, with
        this prompt, is returned as it is (a backtest builds its requests so)."""
        if type(request) is cls and request.prompt == prompt:  # type: ignore[attr-defined]
            return request  # type: ignore[return-value]
        return cls.model_construct(**{name: getattr(request, name) for name in PromptRequest.model_fields}, prompt=prompt)


class Synthesis(BaseModel):
    """A synthesizer's answer; the core turns it into a `Signal`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    direction: Direction
    confidence: float = Field(ge=0.0, le=1.0)
    reasoning: str = ""
    decided_by: str | None = Field(
        default=None, description="the rule that chose the direction, in a few words ('no-trade band', 'risk veto'); backtest reports show it",
    )
    attempts: int = 1
    usage: TokenUsage | None = None
    learned_until: datetime | None = Field(
        default=None,
        description="a synthesizer that learns: when the newest outcome its answering model was trained on became known (the end of its "
        "last training label); an answer for a bar before it used the future, and `--check-lookahead` flags it",
    )
    payoff: float | None = Field(
        default=None, gt=0,
        description="b of this synthesizer's own past signals in this direction: mean gain / mean loss of their forward returns over "
        "its horizon; position sizing's Kelly payoff (None: the window's unconditional ratio)",
    )

    @classmethod
    def checked(cls, answer: Any) -> "Synthesis":
        """A synthesizer's answer validated again, as a new model: a plugin may have changed a field
        after building it. Its field values are validated as they are, without dumping the whole model."""
        if isinstance(answer, Synthesis):
            usage = answer.__dict__.get("usage")
            answer = {**answer.__dict__, "usage": usage.model_dump() if isinstance(usage, BaseModel) else usage}
        return cls.model_validate(answer)


class Signal(BaseModel):
    """The engine's output for one symbol at one bar."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    symbol: str
    granularity: str
    bar_time: datetime
    created_at: datetime = Field(default_factory=utc_now)
    direction: Direction
    confidence: float = Field(ge=0.0, le=1.0)
    price: float
    reasoning: str = ""
    synthesizer: str
    fallback_reason: str | None = None
    attempts: int = 1
    usage: TokenUsage | None = None
    theory_results: list[TheoryResult] = Field(default_factory=list)
    context: MarketContext | None = None
    context_error: str | None = None
    prompt: str | None = None
    run_id: str | None = None
    config_hash: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    position: float = Field(default=0.0, ge=-1.0, le=1.0, description="suggested signed fraction of capital (docs/sizing.md); 0 for HOLD")
    sizing: str | None = Field(default=None, description="how the position was sized, in a line")


class RunInfo(BaseModel):
    """What sinks learn when a run starts."""

    model_config = ConfigDict(defer_build=True)

    run_id: str
    config_hash: str
    started_at: datetime = Field(default_factory=utc_now)
    v7_version: str
    plugin_versions: dict[str, str] = Field(default_factory=dict)
    config_path: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class RunProblem(BaseModel):
    """Something wrong in a running `v7 run` that a person may want to hear about, handed to sinks
    that take notices (`Sink.notice`) each time it happens, with how many times in a row it has."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: ProblemKind = Field(
        description="feed_failing: a feed raised for a symbol; llm_budget: the synthesizer's budget is used up and the "
        "fallback answers; store_spooling: a sink could not store a signal and spooled or held it",
    )
    plugin: str = Field(description="the feed, synthesizer or sink concerned (its name in the config)")
    symbol: str | None = Field(default=None, description="the symbol concerned, for a feed")
    message: str = Field(description="what happened, as the run logged it")
    count: int = Field(default=1, ge=1, description="times in a row: iterations the feed failed for this symbol, signals since it began")
    run_id: str | None = None
    at: datetime = Field(default_factory=utc_now)
