"""What a backtest produces: the result models (stored, printed as JSON), the per-bar signal, the errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from ..evaluation import Calibration, Interval, ShiftNull, Verdict
from ..features.keys import metrics_digest, metrics_digests  # noqa: F401 - re-exported: v7.core.backtest.metrics_digest
from ..models import CostEstimate, TheoryResult, TokenUsage
from .equity import EquityCurve
from .portfolio_models import PortfolioResult

if TYPE_CHECKING:  # pragma: no cover
    from ..theory_columns import TheoryColumns

SPREAD_METRICS = (
    "strategy_return", "buy_and_hold_return", "excess_return", "strategy_sharpe", "max_drawdown",
    "trades", "buy_hit_rate", "sell_hit_rate", "hold_share",
)


class BacktestError(Exception):
    """A backtest that cannot start or finish; `str()` is the message shown to the user."""


class LlmCapExceeded(BacktestError):
    """The estimated LLM calls exceed `llm_call_cap` and nobody said --yes."""

    def __init__(self, estimate: "LlmEstimate") -> None:
        self.estimate = estimate
        super().__init__(
            f"this backtest would make up to {estimate.calls:,} LLM calls to {estimate.synthesizer!r} "
            f"({estimate.describe_cost()}), above llm_call_cap = {estimate.cap:,}. Narrow it (--start/--end, --bars, "
            f"a larger --step or fewer --symbols), raise the cap (--llm-call-cap or [backtest] llm_call_cap), "
            f"or confirm with --yes."
        )


# -- result models ----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class DirectionScore(_Model):
    """How one direction's signals did: hit rate (BUY up / SELL down) over `horizon` bars, with a 95% Wilson interval."""

    direction: str
    count: int
    share: float
    scored: int = Field(description="signals whose forward return is known (the horizon ends inside the history)")
    hits: int | None = None
    hit_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    mean_forward_return: float | None = None


class Performance(_Model):
    """An equity curve's summary; returns are fractions (0.12 = +12%)."""

    total_return: float
    sharpe: float | None = Field(description="annualised: mean / std of per-bar returns × sqrt(bars per year)")
    max_drawdown: float = Field(description="largest fall from a running peak, as a fraction of the peak")
    trades: int = Field(description="bars at which the position changed")
    turnover: float = Field(description="sum of |position change|; costs are charged on it")
    exposure: float = Field(description="share of bars with a position")
    bars: int
    sharpe_per_bar: float | None = Field(default=None, description="mean / std of per-bar returns (the deflated Sharpe's input)")
    skewness: float | None = None
    kurtosis: float | None = Field(default=None, description="non-excess (3 for a normal distribution)")


class TheoryCorrelation(_Model):
    """How a theory's `bias` lined up with the forward return (p-values assume independent pairs:
    with step < horizon the forward returns overlap and the p-values are too small)."""

    theory: str
    n: int
    answered: float = Field(description="share of signal bars where the theory answered ok with a bias")
    spearman: float | None = None
    spearman_p: float | None = None
    pearson: float | None = None
    pearson_p: float | None = None


class DirectionEvidence(_Model):
    """One direction against what the market did over the same scored bars, with block-bootstrap intervals."""

    direction: str
    scored: int
    hit_rate: Interval | None = Field(default=None, description="BUY: share of up-moves after it; SELL: of down-moves")
    base_rate: float | None = Field(default=None, description="share of up-moves (BUY) / down-moves (SELL) over every scored bar")
    edge: Interval | None = Field(default=None, description="hit rate minus base rate, in fraction units (0.012 = 1.2 points)")
    mean_return: Interval | None = None
    mean_confidence: float | None = Field(default=None, description="this direction's own mean confidence (HOLD's is on its own scale)")


class TheoryEvidence(_Model):
    """A theory's bias against the forward return: rank IC on the bars where it spoke."""

    theory: str
    directional: bool
    spoke: float = Field(description="share of signal bars with a bias (answered ok, directional)")
    ic: Interval | None = None


class HorizonScores(_Model):
    """Every honest score at one horizon: directions against base rates, IC, calibration, the verdict."""

    horizon: int
    block: int = Field(description="signals per bootstrap block")
    scored: int
    up_share: float | None = Field(default=None, description="share of scored bars whose forward return was > 0")
    directions: dict[str, DirectionEvidence]
    ic: Interval | None = Field(default=None, description="Spearman rank IC of direction × confidence with the forward return")
    theories: list[TheoryEvidence] = Field(default_factory=list)
    calibration: Calibration | None = None
    verdict: Verdict


class PooledScores(_Model):
    """Over every symbol at once, resampling calendar blocks shared by all symbols (assets move together)."""

    horizon: int
    block: int
    scored: int
    ic: Interval | None = None
    theories: list[TheoryEvidence] = Field(default_factory=list)
    verdict: Verdict


class Scores(_Model):
    start: datetime
    end: datetime
    signals: int
    failed: int = Field(default=0, description="bars where no synthesizer produced a signal (the position was kept)")
    scored: int
    hold_share: float
    directions: dict[str, DirectionScore]
    strategy: Performance
    buy_and_hold: Performance
    excess_return: float = Field(description="strategy total return minus buy-and-hold total return")
    theories: list[TheoryCorrelation] = Field(default_factory=list)
    horizons: list[HorizonScores] = Field(default_factory=list, description="the headline horizon first, then `horizons`")
    null: ShiftNull | None = Field(default=None, description="the strategy's Sharpe against the same signals circularly shifted")

    @property
    def verdict(self) -> Verdict | None:
        return self.horizons[0].verdict if self.horizons else None

    def metric(self, name: str) -> float | None:
        """The value of one of SPREAD_METRICS."""
        values: dict[str, float | None] = {
            "strategy_return": self.strategy.total_return,
            "buy_and_hold_return": self.buy_and_hold.total_return,
            "excess_return": self.excess_return,
            "strategy_sharpe": self.strategy.sharpe,
            "max_drawdown": self.strategy.max_drawdown,
            "trades": float(self.strategy.trades),
            "buy_hit_rate": self.directions["BUY"].hit_rate,
            "sell_hit_rate": self.directions["SELL"].hit_rate,
            "hold_share": self.hold_share,
        }
        return values[name]


class Spread(_Model):
    """A metric across folds (folds where it is undefined are left out; `n` says how many count)."""

    n: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


class LlmEstimate(_Model):
    """The cost guard's estimate: the synthesizer's `CostEstimate` fields, with its name, the calls and the cap.

    The token and price fields are None when the synthesizer cannot estimate its cost
    (`supports("estimate_cost")` is False); `cost_note` then says why the cost is unknown.
    """

    synthesizer: str
    calls: int = Field(description="upper bound: one call per signal bar and symbol (cached answers cost nothing)")
    cap: int
    prompt_tokens_per_call: int | None = None
    completion_tokens_per_call: int | None = None
    max_completion_tokens: int | None = None
    price_input_per_million: float | None = None
    price_output_per_million: float | None = None
    estimated_cost: float | None = Field(default=None, description="USD, as the synthesizer estimates it")
    max_cost: float | None = Field(default=None, description="USD, every answer as long as the synthesizer allows")
    cost_note: str | None = Field(default=None, description="why the cost is unknown, when it is")

    @classmethod
    def of(cls, synthesizer: str, cap: int, cost: CostEstimate) -> "LlmEstimate":
        return cls(synthesizer=synthesizer, cap=cap, **cost.model_dump())

    def describe_cost(self) -> str:
        if self.estimated_cost is None:
            return f"cost unknown: {self.cost_note or 'the estimate has no prices'}"
        if self.max_cost is None:
            return f"about {self.estimated_cost:.4f} USD"
        return f"about {self.estimated_cost:.4f} USD, at most {self.max_cost:.4f} USD"

    def describe(self) -> str:
        tokens = ""
        if self.prompt_tokens_per_call is not None:
            tokens = f", ~{self.prompt_tokens_per_call:,} prompt + ~{self.completion_tokens_per_call or 0:,} completion tokens each"
        return (
            f"LLM synthesizer {self.synthesizer!r}: up to {self.calls:,} calls{tokens}; {self.describe_cost()} "
            f"(answers already in the response cache cost nothing); cap {self.cap:,}."
        )


class LlmUsage(_Model):
    requests: int = 0
    cached_answers: int = 0
    fallbacks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class LookaheadDifference(_Model):
    symbol: str
    bar_time: datetime
    field: str
    backtest: str
    recomputed: str


class LookaheadReport(_Model):
    """Signals recomputed in a fresh process from copies of the candles up to their bar only."""

    checked: int
    differences: list[LookaheadDifference] = Field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.differences


class SymbolResult(_Model):
    symbol: str
    history_bars: int
    first_history_bar: datetime
    last_history_bar: datetime
    scores: Scores
    folds: list[Scores] = Field(default_factory=list)
    fold_spread: dict[str, Spread] = Field(default_factory=dict)
    theory_status: dict[str, dict[str, int]] = Field(default_factory=dict, description="per theory: count of each status")
    synthesizers: dict[str, int] = Field(default_factory=dict, description="signals per synthesizer that produced them")
    equity: EquityCurve | None = Field(default=None, description="strategy and buy-and-hold equity over the run (None in results stored before it was kept)")


class LearnedComparison(_Model):
    """A learning synthesizer against its fallback, both scored from the first bar its model answered."""

    symbol: str
    learner: str
    baseline: str
    first_model_bar: datetime | None = None
    bars: int = Field(description="bars compared: from the first the model answered to the end")
    model_answered: int = Field(description="of those, the bars the model answered itself (the rest: the fallback, with its reason)")
    learned: Scores | None = None
    baseline_scores: Scores | None = None
    importances: dict[str, float] = Field(default_factory=dict, description="the final model's feature importances, largest first")


class BacktestResult(_Model):
    id: int | None = None
    created_at: datetime
    v7_version: str
    config_hash: str
    config_path: str | None = None
    granularity: str
    lookback: int
    synthesizer: str
    theories: list[str]
    settings: dict[str, Any]
    symbols: list[SymbolResult]
    bars: int = Field(description="signals computed, all symbols")
    elapsed_seconds: float
    bars_per_second: float
    workers: int
    theory_ms: dict[str, float] = Field(default_factory=dict, description="mean time per bar of each theory, in ms")
    llm_estimate: LlmEstimate | None = None
    llm_usage: LlmUsage | None = None
    lookahead: LookaheadReport | None = None
    pooled: list[PooledScores] = Field(default_factory=list, description="over every symbol; the headline horizon first")
    confidence_meaning: str | None = Field(default=None, description="what the synthesizer's confidence means, in its own words")
    learning: list[LearnedComparison] = Field(default_factory=list, description="a learning synthesizer against its fallback, per symbol")
    portfolio: PortfolioResult | None = Field(default=None, description="`--portfolio`: every symbol together, sized, through the portfolio step")


# -- signals per bar ----------------------------------------------------------------------------


class TheoryOutcome(NamedTuple):
    """The parts of a TheoryResult a backtest keeps per bar (metrics only as a digest).

    A named tuple: immutable like a frozen dataclass, and made in a fifth of its time (a backtest
    makes one per theory and bar)."""

    theory: str
    status: str
    bias: float | None
    confidence: float
    label: str
    metrics_digest: str
    elapsed_ms: float

    @classmethod
    def of(cls, result: TheoryResult, digest: str | None = None) -> "TheoryOutcome":
        """`digest` = `metrics_digest(result.metrics)` when the caller computed it already (`metrics_digests`)."""
        return cls(
            result.theory, result.status, result.bias, result.confidence, result.label,
            metrics_digest(result.metrics) if digest is None else digest, result.elapsed_ms,
        )

    @classmethod
    def column(cls, columns: "TheoryColumns") -> "list[TheoryOutcome]":
        """One theory's outcome at every bar of its columns, made from the arrays (no TheoryResult per bar)."""
        bias = [None if b != b else b for b in columns.bias.tolist()]  # NaN is how the columns say None
        return list(map(cls._make, zip(
            repeat(columns.theory), columns.status, bias, columns.confidence.tolist(), columns.label, columns.metrics_digests,
            columns.elapsed_ms.tolist(),
        )))


def theory_biases(signals: "list[BarSignal] | Any", theories: "list[str] | Any") -> "dict[str, Any]":
    """Each theory's bias at every signal as a float array, NaN where it did not answer `ok` with one
    (a result's bias is finite or None, so NaN means exactly that)."""
    import numpy as np

    out = {}
    for position, name in enumerate(theories):
        column = [s.theories[position] if position < len(s.theories) else None for s in signals]
        out[name] = np.array([np.nan if o is None or o.status != "ok" or o.bias is None else o.bias for o in column], dtype=np.float64)
    return out


@dataclass
class BarSignal:
    """One backtest signal. `direction` is None when no synthesizer produced a signal."""

    index: int
    timestamp: int
    price: float
    direction: str | None
    confidence: float
    synthesizer: str
    fallback_reason: str | None
    theories: tuple[TheoryOutcome, ...]
    attempts: int = 1
    usage: TokenUsage | None = None
    decided_by: str = ""  # the synthesizer's rule for this direction (`Synthesis.decided_by`), for the report
    baseline: tuple[str, float, str] | None = None  # beside a learning synthesizer: the fallback's (direction, confidence, rule)
    position: float = 0.0  # the suggested signed fraction of capital (core/sizing), 0 when flat or no signal
    limit: float = 1.0  # the largest |position| its sizing allows, min(max_position, loss limit): the portfolio step's bound
    learned_until: int | None = None  # `Synthesis.learned_until` (unix seconds): the newest outcome the answering model learned from

    @property
    def bar_time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, timezone.utc)
