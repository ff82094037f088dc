"""chart-portfolio.png: the legend sits below the plot, clear of the curves and of every fold's label."""

from __future__ import annotations

import pytest

from v7.core.backtest import run_backtest
from v7.core.backtest.portfolio import portfolio_of
from v7.core.backtest.portfolio_report import portfolio_figure
from v7.core.config import validate_config
from v7.core.registry import load_registry


@pytest.fixture(scope="module")
def run():
    registry = load_registry()
    config = validate_config({
        "engine": {"symbols": ["BTC-USD", "ETH-USD"], "lookback": 300},
        "theories": {"enabled": ["hurst_exponent", "kalman_filter"]},
        "sinks": {"enabled": []},
        "backtest": {"step": 6, "workers": 1, "feature_cache": "", "folds": 4},
    }, registry)
    done = run_backtest(config, registry, bars=1500)
    done.result.portfolio = portfolio_of(done)
    return done


def test_the_legend_hides_no_fold_label(run):
    import matplotlib.pyplot as plt

    figure = portfolio_figure(run)
    try:
        figure.tight_layout()  # as save_chart lays it out
        figure.canvas.draw()
        axis = figure.axes[0]
        legend = axis.get_legend().get_window_extent()
        labels = [t for t in axis.texts if t.get_text().strip().startswith("fold")]
        assert [t.get_text().strip() for t in labels] == ["fold 2", "fold 3", "fold 4"]
        assert not any(legend.overlaps(t.get_window_extent()) for t in labels)
        assert legend.y1 <= axis.get_window_extent().y0  # below the plot: over no curve either
        assert legend.x0 >= 0 and legend.x1 <= figure.bbox.x1  # and inside the picture
    finally:
        plt.close(figure)
