"""A backtest's chunk of bars for a synthesizer's batch path, and its answers as columns (`Synthesizer.synthesize_batch`)."""

from __future__ import annotations

from typing import Annotated, Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, InstanceOf, PrivateAttr, model_validator

from .models import CandleSeries, Direction, Synthesis, SynthesisRequest, TheoryResult
from .theory_columns import TheoryColumns


class SynthesisBatch(BaseModel):
    """Many bars of one symbol at once, for `Synthesizer.synthesize_batch` (a backtest's chunk).

    Bar i is `ends[i]`, an index into `history`; its candles are `history.slice(max(0, ends[i] + 1 -
    lookback), ends[i] + 1)`, as in the request `request(i)` makes. The theory results are
    `theories`, one `TheoryColumns` per theory in config order (`column(name)`), each a value per
    bar: read those, the fast way; `results[i]` (bar i's TheoryResults) is made when first asked
    for. Built from `results=` rows instead, every bar must name the same theories in the same
    order. `history` ends at the chunk's last bar: bar i must be answered from the candles up to
    `ends[i]` only, never the later ones it could reach."""

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    symbol: str
    granularity: str
    history: InstanceOf[CandleSeries]
    ends: list[int]
    lookback: int = Field(ge=1)
    theories: list[InstanceOf[TheoryColumns]]
    reasoning: bool = Field(default=True, description="False when the caller keeps no reasoning (a backtest): it may be left empty")
    _rows: list[list[TheoryResult]] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _rows_as_columns(cls, data: Any) -> Any:
        """`results=` (a list of TheoryResults per bar) becomes one column per theory."""
        if not isinstance(data, dict) or "results" not in data:
            return data
        if "theories" in data:
            raise ValueError("give the bars' results as theories (columns) or as results (rows), not both")
        data = dict(data)
        rows = [[r if isinstance(r, TheoryResult) else TheoryResult.model_validate(r) for r in row] for row in data.pop("results")]
        order = [r.theory for r in rows[0]] if rows else []  # a theory named twice: refused with the columns, below
        for i, row in enumerate(rows):
            if [r.theory for r in row] != order:
                raise ValueError(f"results: bar {i} names the theories {[r.theory for r in row]}, bar 0 {order}: every bar needs the same, in order")
        data["theories"] = [TheoryColumns.of(name, [row[k] for row in rows]) for k, name in enumerate(order)]
        return data

    @model_validator(mode="after")
    def _one_value_per_bar(self) -> "SynthesisBatch":
        names = [c.theory for c in self.theories]
        if len(set(names)) < len(names):
            raise ValueError(f"theories: a theory appears twice ({names})")
        wrong = next((c for c in self.theories if len(c) != len(self.ends)), None)
        if wrong is not None:
            raise ValueError(f"theories: {wrong.theory!r} has {len(wrong)} bars, ends {len(self.ends)}")
        return self

    def __len__(self) -> int:
        return len(self.ends)

    def column(self, theory: str) -> TheoryColumns | None:
        """The named theory's results at every bar, or None when it is not enabled."""
        return next((c for c in self.theories if c.theory == theory), None)

    @property
    def results(self) -> list[list[TheoryResult]]:
        """Each bar's TheoryResults (config order), made from the columns on first use and kept."""
        if self._rows is None:
            from .theory_columns import rows_of

            self._rows = rows_of(self.theories, len(self.ends))
        return self._rows

    def request(self, i: int) -> SynthesisRequest:
        """Bar i as the request `synthesize` would get (no prompt, no market context)."""
        t = self.ends[i]
        window = self.history.slice(max(0, t + 1 - self.lookback), t + 1)
        return SynthesisRequest(
            symbol=self.symbol, granularity=self.granularity, bar_time=window.last_time, price=window.last_price,
            results=[c.result(i) for c in self.theories], context=None, candles=window,
        )


class SynthesisColumns(BaseModel):
    """The answers to a `SynthesisBatch`, in bar order: a list per field of `Synthesis` that an offline
    rule states (no attempts, token usage or training range: a synthesizer with those answers bar by bar)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    direction: list[Direction]
    confidence: list[Annotated[float, Field(ge=0.0, le=1.0)]]
    decided_by: list[str | None]
    reasoning: list[str] = Field(default_factory=list, description="empty when the batch asked for no reasoning")
    payoff: list[Annotated[float, Field(gt=0)] | None] = Field(default_factory=list, description="each answer's `Synthesis.payoff`; empty: none states one")

    @model_validator(mode="after")
    def _same_lengths(self) -> "SynthesisColumns":
        optional = {len(column) for column in (self.reasoning, self.payoff) if column}
        if len({len(self.direction), len(self.confidence), len(self.decided_by)} | optional) > 1:
            raise ValueError(f"columns of different lengths: direction {len(self.direction)}, confidence {len(self.confidence)}, "
                             f"decided_by {len(self.decided_by)}, reasoning {len(self.reasoning)}, payoff {len(self.payoff)}")
        return self

    @classmethod
    def of(cls, answers: "Sequence[Synthesis]") -> "SynthesisColumns":
        """Answers made one by one, as columns (a synthesizer whose batch path is a loop)."""
        return cls(
            direction=[a.direction for a in answers], confidence=[a.confidence for a in answers],
            decided_by=[a.decided_by for a in answers], reasoning=[a.reasoning for a in answers],
            payoff=[a.payoff for a in answers] if any(a.payoff is not None for a in answers) else [],
        )

    def answer(self, i: int) -> "Synthesis":
        return Synthesis(
            direction=self.direction[i], confidence=self.confidence[i], decided_by=self.decided_by[i],
            reasoning=self.reasoning[i] if self.reasoning else "", payoff=self.payoff[i] if self.payoff else None,
        )
