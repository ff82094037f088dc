"""Honest statistics for a backtest's signals, as pure functions of arrays (numpy/scipy, no I/O).

Hourly crypto direction is close to a coin flip, so a signal earns trust only with intervals that
are right and comparisons that are fair:

- `bootstrap`: moving-block and calendar-block resampling (overlapping forward returns are not
  independent; assets move together), percentile `Interval`s;
- `information`: hit rate, base rate and edge over it, mean return, rank IC (per symbol and pooled);
- `null`: strategy returns, Sharpe, the circular-shift null and the deflated Sharpe ratio;
- `calibration`: reliability bins, Brier skill against the base rate, calibration slope;
- `verdict`: one sentence per scope from the IC's interval.

Methods and sources: the evaluation design note (Künsch 1989; Politis & Romano 1994;
Bailey & López de Prado 2014).
"""

from __future__ import annotations

from .bootstrap import Interval, block_length, block_resample_indices, calendar_resample_indices, percentile_interval
from .calibration import Calibration, CalibrationBin, calibration, wilson_interval
from .information import base_rate, edge, hit_rate, mean_return, pooled_rank_ic, rank_ic, signed_score
from .null import ShiftNull, circular_shift_pvalue, deflated_sharpe, deflated_sharpe_of, sharpe, strategy_returns
from .verdict import Verdict, verdict

__all__ = [
    "Calibration", "CalibrationBin", "Interval", "ShiftNull", "Verdict", "base_rate", "block_length",
    "block_resample_indices", "calendar_resample_indices", "calibration", "circular_shift_pvalue", "deflated_sharpe",
    "edge", "hit_rate", "mean_return", "percentile_interval", "pooled_rank_ic", "rank_ic", "sharpe", "signed_score",
    "strategy_returns", "verdict", "wilson_interval", "deflated_sharpe_of",
]
