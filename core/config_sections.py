"""The fixed sections of `config.toml`, one pydantic model each: `[engine]`, `[logging]`, `[backtest]`, `[plugins]`, `[stats]`.

(`[sizing]` and `[portfolio]` live beside the code they configure; the plugin sections are validated
by each plugin's own `Config`; core/config.py puts them together.)
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .models import GRANULARITY_SECONDS

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,15}-[A-Z0-9]{2,15}$")


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    symbols: list[str] = Field(default_factory=lambda: ["BTC-USD", "ETH-USD"], min_length=1)
    granularity: Literal["1m", "5m", "15m", "1h", "6h", "1d"] = "1h"
    lookback: int = Field(default=1000, ge=10, le=100_000, description="candles handed to the theories")
    interval_seconds: float = Field(default=900, gt=0)
    max_threads: int = Field(default=2, ge=1, le=256, description="caps numpy/BLAS/OpenMP threads")
    theory_timeout_seconds: float = Field(default=10.0, gt=0, description="a theory running longer is an error")
    symbol_workers: int = Field(default=4, ge=1, le=64, description="symbols processed concurrently (their synthesizer calls overlap)")
    theory_workers: int = Field(
        default=1, ge=1, le=64,
        description="symbols whose theories compute at the same time in one process: CPython runs their Python one thread at a "
        "time, so more add thread switching, not speed; more cores: executor = \"dask\"",
    )
    fetch_workers: int = Field(default=16, ge=1, le=256, description="symbols fetched concurrently (feeds respect their own rate limits)")
    context_timeout_seconds: float = Field(
        default=5.0, gt=0, description="how long, from the start of an iteration, a symbol waits for market context before going on without it",
    )
    iteration_timeout_seconds: float | None = Field(
        default=None, gt=0,
        description="an iteration's deadline: symbols still running then are stored when done and skipped until they are; "
        "None = interval_seconds when a feed is live, no deadline for replays",
    )
    executor: Literal["local", "dask"] = Field(default="local", description="where symbols are evaluated: this machine, or a Dask cluster (docs/scaling.md)")
    dask_address: str | None = Field(
        default=None, pattern=r"^(tcp|tls|ws|wss|ucx)://[^\s/:]+:\d+$", description="scheduler of a running Dask cluster; None = start a LocalCluster",
    )
    dask_workers: int | None = Field(default=None, ge=1, le=256, description="worker processes of the LocalCluster; None = the available cores")

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if not SYMBOL_PATTERN.match(symbol):
                raise ValueError(f"symbol {symbol!r} is not of the form BASE-QUOTE, e.g. BTC-USD")
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must not repeat")
        return symbols

    @model_validator(mode="after")
    def _dask_settings(self) -> "EngineConfig":
        if self.executor != "dask" and (self.dask_address is not None or self.dask_workers is not None):
            raise ValueError('dask_address and dask_workers need executor = "dask"')
        return self

    @property
    def granularity_seconds(self) -> int:
        return GRANULARITY_SECONDS[self.granularity]


class LoggingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    level: Literal["debug", "info", "warning", "error"] = "info"
    json_lines: bool = Field(default=False, alias="json")


class BacktestConfig(BaseModel):
    """`[backtest]`: how `v7 backtest` replays and scores history. Stored with each backtest result,
    but not part of the config hash: these settings score signals, they do not shape them."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    horizon: int = Field(default=24, ge=1, le=100_000, description="bars ahead over which a signal's forward return is scored")
    step: int = Field(default=1, ge=1, le=100_000, description="compute a signal every `step` bars; the position is kept in between")
    fees_bps: float = Field(default=10.0, ge=0, le=10_000, description="fee per unit of position traded, in basis points")
    slippage_bps: float = Field(default=5.0, ge=0, le=10_000, description="slippage per unit of position traded, in basis points")
    short_on_sell: bool = Field(default=False, description="SELL goes short (true) or flat (false)")
    hold_keeps_position: bool = Field(default=True, description="HOLD keeps the current position (true) or goes flat (false)")
    start: datetime | None = Field(default=None, description="first signal bar (UTC); default: the first bar with a full lookback")
    end: datetime | None = Field(default=None, description="last bar (UTC); default: the last bar of the history")
    folds: int = Field(default=1, ge=1, le=1000, description="consecutive out-of-sample windows scored separately (walk-forward)")
    workers: int = Field(default=0, ge=0, le=256, description="processes computing theories; 0 = one per available CPU core")
    llm_call_cap: int = Field(default=200, ge=0, description="refuse a backtest estimated to make more LLM calls than this (unless --yes)")
    lookahead_sample: int = Field(default=12, ge=1, le=100_000, description="signals recomputed by --check-lookahead")
    horizons: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        default_factory=list, description="more horizons scored from the same signals (`--horizon 1,6,24`); `horizon` is the headline one"
    )
    execution: Literal["next_open", "close"] = Field(
        default="next_open", description="where a decision on a closed bar is filled: the next bar's open (default) or that bar's close"
    )
    delay_bars: int = Field(default=0, ge=0, le=10_000, description="bars between the decision and the fill, on top of `execution`")
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100_000, description="block-bootstrap resamples behind every interval")
    block_length: int = Field(
        default=0, ge=0, le=100_000,
        description="signals per bootstrap block; 0 = 4 × ceil(horizon / step), what kept 95% intervals at ~95% on random walks",
    )
    seed: int = Field(default=7, description="seed of the bootstrap and of the circular-shift null: the same seed gives the same intervals")
    feature_cache: str = Field(
        default=".v7-cache/features",
        description="folder where theory results per bar are kept (Parquet) and read back by later backtests; \"\" = off",
    )

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class PluginsConfig(BaseModel):
    """`[plugins]`: plugins never imported (by entry-point name), as pytest's `-p no:NAME`; also `V7_BLOCK_PLUGINS`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    blocked: list[str] = Field(default_factory=list, description="entry-point names to skip before import")


class StatsConfig(BaseModel):
    """`[stats]`: what `v7 stats` compares the stored signals with. Not part of the config hash."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    hold_target_min: float = Field(default=0.4, ge=0, le=1, description="lowest healthy share of HOLD signals")
    hold_target_max: float = Field(default=0.7, ge=0, le=1, description="highest healthy share of HOLD signals")

    @model_validator(mode="after")
    def _ordered(self) -> "StatsConfig":
        if self.hold_target_min > self.hold_target_max:
            raise ValueError(f"hold_target_min ({self.hold_target_min}) must not exceed hold_target_max ({self.hold_target_max})")
        return self
