"""`--report DIR` with `--portfolio`: chart-portfolio.png, the books' equity beside the per-symbol charts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .compute import BacktestRun

LABELS = {"portfolio": "sized, portfolio step", "unsized": "unsized signals, equal weight", "basket": "equal-weight buy and hold"}
COLOURS = {"portfolio": "#2166ac", "unsized": "#f4a582", "basket": "#999999"}


def portfolio_chart(path: Path, run: "BacktestRun") -> Path:
    """Equity of the sized portfolio, the unsized signals and the basket (log scale), walk-forward boundaries dashed."""
    from .report import save_chart

    return save_chart(portfolio_figure(run), path)


def portfolio_figure(run: "BacktestRun") -> Any:
    """The chart's figure: the legend below the plot, where it hides neither a curve nor a fold's label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    from .portfolio import equity_of
    from .report import mark_folds

    result = run.result.portfolio
    assert result is not None
    stamps, equity = equity_of(run)
    times = np.array(stamps, dtype="datetime64[s]")
    figure, axis = plt.subplots(figsize=(16, 6.5))
    overall = result.overall
    for name, curve in equity.items():
        perf = getattr(overall, name)
        sharpe = "-" if perf.sharpe is None else f"{perf.sharpe:.2f}"
        axis.plot(times, curve, color=COLOURS[name], linewidth=1.0,
                  label=f"{LABELS[name]} ({perf.total_return:+.1%}, Sharpe {sharpe}, max drawdown {perf.max_drawdown:.1%})")
    axis.set_yscale("log")
    mark_folds((axis,), result.folds)  # after the log scale: the labels sit at the top of the final range
    settings = result.settings
    axis.set_title(
        f"portfolio of {', '.join(result.symbols)} ({run.result.granularity}): {settings['method']}, covariance over "
        f"{settings['covariance_bars']} bars, max {settings['max_symbol']:g} per symbol, {settings['max_gross']:g} gross; "
        f"config {run.result.config_hash}", fontsize=10,
    )
    axis.set_ylabel("equity (start = 1, log scale)")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=3, fontsize=8.5, frameon=False, handlelength=1.5, columnspacing=1.2)
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    return figure
