"""`[portfolio]`: the step that adjusts the positions of an iteration's symbols together."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

METHODS = ("min_variance", "equal", "inverse_vol")


class PortfolioConfig(BaseModel):
    """How positions proposed per symbol become one book: weights over the recent covariance, then caps.

    Off by default: every signal keeps the position sized for its own symbol, exactly as without
    this section. See docs/portfolio.md for the formulas."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    enabled: bool = Field(default=False, description="adjust the positions of each iteration's symbols together before they are stored")
    method: Literal["min_variance", "equal", "inverse_vol"] = Field(
        default="min_variance",
        description="min_variance: long-only minimum-variance weights over the covariance; inverse_vol: 1/σ; equal: 1/n (caps only)",
    )
    covariance_bars: int = Field(
        default=720, ge=3, le=100_000,
        description="bars of closes (at most; the candles the theories saw) behind the covariance of the symbols' returns",
    )
    max_symbol: float = Field(default=0.5, gt=0, le=1, description="largest |position| of one symbol, as a fraction of capital")
    max_gross: float = Field(default=1.0, gt=0, le=100, description="largest sum of |position| over the symbols (1 = no leverage)")

    @model_validator(mode="after")
    def _caps(self) -> "PortfolioConfig":
        if self.max_symbol > self.max_gross:
            raise ValueError(f"max_symbol ({self.max_symbol}) must not exceed max_gross ({self.max_gross})")
        return self
