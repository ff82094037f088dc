"""`[sizing]`: the per-signal position rule's settings (docs/sizing.md). Part of the config hash:
they shape a signal's `position`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SizingConfig(BaseModel):
    """Fractional Kelly × volatility target, under a loss budget; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    enabled: bool = Field(default=True, description="false = every signal's position is 0 (no sizing)")
    kelly_fraction: float = Field(
        default=0.5, gt=0, le=1, description="share of the Kelly fraction f* taken (half Kelly: about 3/4 of the growth for half the variance)",
    )
    max_position: float = Field(default=1.0, gt=0, le=1, description="largest |position|, a fraction of capital (at most 1: no leverage)")
    horizon: int = Field(
        default=24, ge=1, le=100_000,
        description="bars ahead of the payoff ratio's forward returns: the horizon the synthesizer's probability is about",
    )
    target_volatility: float = Field(
        default=0.5, gt=0, le=10, description="annualised volatility a full position is scaled to (0.5 = 50% a year)",
    )
    volatility_bars: int = Field(default=168, ge=10, le=100_000, description="recent one-bar log returns the realised volatility is measured on")
    max_volatility_scale: float = Field(
        default=1.0, gt=0, le=10, description="cap of target / realised volatility; above 1 a calm market scales a small position up (never past max_position)",
    )
    loss_budget: float = Field(
        default=0.02, gt=0, le=1,
        description="largest CVaR of the position over the risk theory's horizon, a fraction of capital: |position| ≤ loss_budget / CVaR",
    )
    uncalibrated_fraction: float = Field(
        default=0.1, ge=0, le=1, description="for a synthesizer whose confidence is no calibrated probability: this fraction × the volatility scale",
    )
    short_enabled: bool = Field(default=False, description="SELL suggests a short (negative position); false: SELL is flat (0)")
