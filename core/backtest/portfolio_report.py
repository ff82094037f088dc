"""`--report DIR` with `--portfolio`: chart-portfolio.png, the books' equity beside the per-symbol charts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .compute import BacktestRun

LABELS = {"portfolio": "sized, portfolio step", "unsized": "unsized signals, equal weight", "basket": "equal-weight buy and hold"}
COLOURS = {"portfolio": "#2166ac", "unsized": "#f4a582", "basket": "#999999"}


def portfolio_chart(path: Path, run: "BacktestRun") -> Path:
    """Equity of the sized portfolio, the unsized signals and the basket (log scale), walk-forward boundaries dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    from .portfolio import equity_of

    result = run.result.portfolio
    assert result is not None
    stamps, equity = equity_of(run)
    times = np.array(stamps, dtype="datetime64[s]")
    figure, axis = plt.subplots(figsize=(16, 6))
    overall = result.overall
    for name, curve in equity.items():
        perf = getattr(overall, name)
        sharpe = "-" if perf.sharpe is None else f"{perf.sharpe:.2f}"
        axis.plot(times, curve, color=COLOURS[name], linewidth=1.0,
                  label=f"{LABELS[name]} ({perf.total_return:+.1%}, Sharpe {sharpe}, max drawdown {perf.max_drawdown:.1%})")
    for k, fold in enumerate(result.folds[1:], 2):
        when = np.datetime64(int(fold.start.timestamp()), "s")
        axis.axvline(when, color="#7570b3", linestyle="--", linewidth=0.8)
        axis.text(when, axis.get_ylim()[1], f" fold {k}", color="#7570b3", fontsize=8, va="top")
    settings = result.settings
    axis.set_title(
        f"portfolio of {', '.join(result.symbols)} ({run.result.granularity}): {settings['method']}, covariance over "
        f"{settings['covariance_bars']} bars, max {settings['max_symbol']:g} per symbol, {settings['max_gross']:g} gross; "
        f"config {run.result.config_hash}", fontsize=10,
    )
    axis.set_yscale("log")
    axis.set_ylabel("equity (start = 1, log scale)")
    axis.legend(loc="upper left")
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
