"""`v7 backtest --portfolio` end to end: the printed books, the stored result, the report's chart, the dashboard's block."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from helpers import run_v7


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portfolio")
    db = folder / "v7.db"
    (folder / "config.toml").write_text(
        '[engine]\nsymbols = ["BTC-USD", "ETH-USD"]\nlookback = 300\n'
        '[theories]\nenabled = ["hurst_exponent", "kalman_filter"]\n'
        f'[sinks]\nenabled = ["sqlite"]\n[sinks.sqlite]\npath = "{db}"\n'
        '[backtest]\nstep = 6\nworkers = 1\nfeature_cache = ""\n'
        '[portfolio]\nmethod = "min_variance"\ncovariance_bars = 240\nmax_symbol = 0.6\nmax_gross = 1.0\n',
        encoding="utf-8",
    )
    out = run_v7("backtest", "--config", "config.toml", "--bars", "1500", "--folds", "2", "--portfolio", "--report", "report", cwd=folder)
    return folder, db, out


def test_the_command_prints_stores_and_charts_the_portfolio(done):
    folder, db, out = done
    assert out.returncode == 0, out.stderr
    assert "Portfolio BTC-USD, ETH-USD" in out.stdout and "buy-and-hold basket" in out.stdout and "walk-forward: 2 folds" in out.stdout
    assert (folder / "report" / "chart-portfolio.png").stat().st_size > 10_000
    summary = json.loads((folder / "report" / "summary.json").read_text())
    portfolio = summary["portfolio"]
    assert portfolio["symbols"] == ["BTC-USD", "ETH-USD"] and len(portfolio["folds"]) == 2
    assert portfolio["settings"] == {"method": "min_variance", "covariance_bars": 240, "max_symbol": 0.6, "max_gross": 1.0}
    for book in ("portfolio", "unsized", "basket"):
        perf = portfolio["overall"][book]
        assert perf["bars"] == portfolio["bars"] and perf["annual_volatility"] > 0 and perf["cvar_95"] is not None
    assert portfolio["overall"]["basket"]["turnover"] == pytest.approx(1.0)


def test_without_the_flag_there_is_no_portfolio(done, tmp_path):
    folder, _, _ = done
    out = run_v7("backtest", "--config", "config.toml", "--bars", "300", "--no-store", "--json", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["portfolio"] is None


def test_the_dashboard_shows_the_portfolio_block(done):
    from v7.core.dashboard.app import Dashboard, create_app
    from v7.core.dashboard.store import Store
    from v7.core.dashboard.views import Settings
    from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

    _, db, _ = done
    reader = SqliteSink(SqliteConfig(path=db)).reader()
    dash = Dashboard(store=Store(reader), settings=Settings(location=reader.location, sink="sqlite"), candles=None, plugin_rows=lambda: [])
    with TestClient(create_app(dash)) as client:
        html = client.get("/backtests").text
    assert "<h3>Portfolio" in html and "sized, portfolio step" in html and "buy-and-hold basket" in html and "CVaR 95% (daily)" in html
    (charts,) = [json.loads(m) for m in re.findall(r'<script type="application/json" class="backtest-data">(.*?)</script>', html)]
    assert [c["symbol"] for c in charts] == ["BTC-USD", "ETH-USD", "portfolio"]
    portfolio = charts[-1]["equity"]
    assert len(portfolio["strategy"]) == len(portfolio["buy_and_hold"]) > 100  # the stored curve, bar by bar
    assert portfolio["strategy"][0]["value"] == 1.0 and portfolio["strategy"][-1]["time"] > portfolio["strategy"][0]["time"]
    assert 'class="chart small equity portfolio" data-symbol-index="2"' in html
