"""`[synthesizer.learned]`: what the model learns, how often and from how much history."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from v7 import PluginConfig


MIN_INDEPENDENT_CALIBRATION = 20  # a rolling window must leave the calibration slice at least this many independent outcomes


class LearnedConfig(PluginConfig):
    horizon: int = Field(default=24, ge=1, le=10_000, description="bars ahead whose return the model predicts (its label)")
    target: Literal["sign", "quantile"] = Field(
        default="sign",
        description='what the model is fitted on: "sign": the close `horizon` bars later is above this close; "quantile": the forward '
        "return is above the `target_quantile` of the fitting rows' forward returns. Either way its score is calibrated to P(up)",
    )
    target_quantile: float = Field(default=0.5, gt=0, lt=1, description='the quantile of `target = "quantile"` (0.5: the median, drift removed)')
    model: Literal["lightgbm", "logistic"] = Field(default="lightgbm", description="LightGBM gradient boosting, or scikit-learn's logistic regression (the baseline)")
    retrain_every: int = Field(default=720, ge=1, le=1_000_000, description="bars shown between two trainings (720 hourly bars ≈ a month)")
    window: int = Field(default=0, ge=0, le=10_000_000, description="training rows: 0 = every row so far (expanding), N = the last N (rolling)")
    min_train: int = Field(default=500, ge=50, le=1_000_000, description="labelled rows needed before the first model; before it the fallback answers")
    embargo: int | None = Field(default=None, ge=0, le=100_000, description="bars between the end of the last training label and the bar answered; None = `horizon`")
    threshold: float = Field(default=0.55, gt=0.5, lt=1, description="BUY when P(up) ≥ threshold, SELL when P(up) ≤ 1 − threshold, HOLD between")
    calibration: Literal["auto", "isotonic", "platt"] = Field(
        default="auto", description='"auto": isotonic with at least 5,000 independent calibration labels (rows ÷ horizon), Platt scaling below'
    )
    calibration_share: float = Field(default=0.25, gt=0, lt=0.9, description="the last share of each training window that calibrates the model (never fits it)")
    lags: list[int] = Field(default_factory=lambda: [1, 6, 24], description="log returns over these many bars, as price features")
    volatility_bars: int = Field(default=24, ge=2, le=10_000, description="bars of the realised-volatility feature")
    volume_bars: int = Field(default=24, ge=2, le=10_000, description="bars of the volume z-score feature")
    seed: int = Field(default=7, description="LightGBM's seed: the same bars give the same model")
    trees: int = Field(default=100, ge=1, le=10_000, description="LightGBM boosting rounds")
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    leaves: int = Field(default=7, ge=2, le=4096, description="LightGBM leaves per tree (small: market features are mostly noise)")
    min_leaf_rows: int = Field(default=200, ge=1, description="LightGBM's min_data_in_leaf: rows a leaf needs")
    l2: float = Field(default=1.0, ge=0, description="L2 penalty (LightGBM lambda_l2; 1/C of the logistic regression)")
    threads: int | None = Field(
        default=None, ge=1, le=256,
        description="LightGBM training threads, capped by engine.max_threads; None = 1 (GNU OpenMP's pool would hang later forks of the process)",
    )
    model_path: str = Field(default="", description="a model file from `v7 train`: loaded at start, so the first bars are answered by it")
    retrain_live: bool = Field(default=True, description="keep learning from the bars a run shows (every `retrain_every`); false = the loaded model only")
    exclude_features: list[str] = Field(
        default_factory=lambda: ["*.metric.filtered_price"],
        description="feature names (fnmatch patterns) left out: by default the Kalman filter's price level, which is not comparable across time",
    )
    explain: int = Field(default=3, ge=0, le=50, description="features named in each signal's reasoning (the largest contributions)")

    @model_validator(mode="after")
    def _lags(self) -> "LearnedConfig":
        if not self.lags or any(lag < 1 for lag in self.lags):
            raise ValueError(f"lags: got {self.lags}; expected a non-empty list of bar counts ≥ 1")
        return self

    @model_validator(mode="after")
    def _calibration_slice(self) -> "LearnedConfig":
        if self.window and self.window * self.calibration_share / self.horizon < MIN_INDEPENDENT_CALIBRATION:
            raise ValueError(
                f"window: {self.window} rows leave {self.window * self.calibration_share:.0f} calibration rows, about "
                f"{self.window * self.calibration_share / self.horizon:.1f} independent outcomes at horizon {self.horizon}; "
                f"give at least {MIN_INDEPENDENT_CALIBRATION} (window ≥ {int(MIN_INDEPENDENT_CALIBRATION * self.horizon / self.calibration_share)})"
            )
        return self

    @property
    def gap(self) -> int:
        """The embargo in bars."""
        return self.horizon if self.embargo is None else self.embargo
