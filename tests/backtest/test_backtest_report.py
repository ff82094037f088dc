"""`--report DIR`: summary.json, the signals as CSV, a chart per symbol."""

from __future__ import annotations

import json

from backtest_setup import make_config
from v7.core.backtest import run_backtest, write_report


def test_report_writes_summary_signals_and_chart(registry, btc, tmp_path):
    config = make_config(registry, backtest={"step": 30, "folds": 2})
    run = run_backtest(config, registry, histories={"BTC-USD": btc})
    written = write_report(tmp_path / "report", run)
    names = sorted(p.name for p in written)
    assert names == ["chart-BTC-USD.png", "signals-BTC-USD.csv", "summary.json"]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["symbols"][0]["scores"]["signals"] == len(run.signals["BTC-USD"]) and len(summary["symbols"][0]["folds"]) == 2
    png = (tmp_path / "report" / "chart-BTC-USD.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    lines = (tmp_path / "report" / "signals-BTC-USD.csv").read_text().splitlines()
    assert lines[0].startswith("bar_time,price,direction,confidence,synthesizer,fallback_reason,hurst_exponent_bias")
    assert len(lines) == 1 + len(run.signals["BTC-USD"])
