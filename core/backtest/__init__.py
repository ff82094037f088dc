"""Backtests: replay history through the same pipeline as `v7 run` and score the signals.

- `history`: the candles, from the candle feed's `fetch_history` capability;
- `compute`: the theories at each bar (feature store, batch paths), the LLM cost guard, the worker pool, `run_backtest`;
- `synthesis`: the window at each bar and the synthesizer's answers on it (bar by bar, or a chunk in one batch call);
- `execution`: when a decision becomes a position (next open or close, a delay) and its costs;
- `scoring`: hit rates, the follow-the-signal strategy, theory correlations, walk-forward folds;
- `portfolio`: every symbol together, sized, through the portfolio step (`--portfolio`; figures in `portfolio_metrics`);
- `lookahead`: signals recomputed in a fresh process from truncated history;
- `store`: results kept through a sink's reader, and two of them compared;
- `report`: summary.json, signals CSV, charts;
- `models`: the result models and the errors.
"""

from __future__ import annotations

from .compute import BacktestRun, available_cores, chunked, compute_signals, resolve_settings, run_backtest, signals_for, theory_results_for
from .llm import estimate_llm, is_llm, llm_usage
from .execution import Execution, Filled, buy_and_hold, decisions, fill, follow, in_force
from .history import history_start, load_histories, load_history, own_copy, signal_range
from .lookahead import check_lookahead, compare_signals, lookahead_sample
from .synthesis import synthesize_bar, synthesize_chunk, window_at
from .models import (
    SPREAD_METRICS, BacktestError, BacktestResult, BarSignal, DirectionScore, LlmCapExceeded, LlmEstimate, LlmUsage,
    LookaheadDifference, LookaheadReport, Performance, Scores, Spread, SymbolResult, TheoryCorrelation, TheoryOutcome,
    metrics_digest,
)
from .portfolio import portfolio_of, portfolio_result
from .portfolio_models import PortfolioPerformance, PortfolioResult, PortfolioWindow
from .report import write_report
from .scoring import (
    correlations, equity_curves, fold_bounds, forward_returns, max_drawdown, performance, periods_per_year,
    score, sharpe_ratio, spread, symbol_result, wilson_interval,
)
from .store import comparison_rows, differing_settings, load_result, open_results, range_warning, result_sink, store_result, stored_backtest

__all__ = [
    "Execution", "Filled", "buy_and_hold", "decisions", "fill", "follow", "in_force",
    "SPREAD_METRICS", "BacktestError", "BacktestResult", "BacktestRun", "BarSignal", "DirectionScore", "LlmCapExceeded",
    "LlmEstimate", "LlmUsage", "LookaheadDifference", "LookaheadReport", "Performance", "Scores", "Spread", "SymbolResult",
    "TheoryCorrelation", "TheoryOutcome", "available_cores", "check_lookahead", "chunked", "compare_signals", "comparison_rows",
    "compute_signals", "correlations", "differing_settings", "equity_curves", "estimate_llm", "fold_bounds", "forward_returns",
    "history_start", "is_llm", "llm_usage", "load_histories", "load_history", "load_result", "lookahead_sample",
    "max_drawdown", "metrics_digest", "open_results", "own_copy", "performance", "periods_per_year",
    "PortfolioPerformance", "PortfolioResult", "PortfolioWindow", "portfolio_of", "portfolio_result",
    "range_warning", "resolve_settings", "result_sink", "run_backtest", "score", "sharpe_ratio", "signal_range",
    "signals_for", "spread", "store_result", "stored_backtest", "symbol_result", "synthesize_bar", "synthesize_chunk",
    "theory_results_for", "window_at", "wilson_interval", "write_report",
]
