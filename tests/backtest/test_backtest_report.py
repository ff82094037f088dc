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
    import csv

    with (tmp_path / "report" / "signals-BTC-USD.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(run.signals["BTC-USD"])
    assert list(rows[0])[:8] == ["bar_time", "price", "direction", "confidence", "position", "synthesizer", "reason", "fallback_reason"]
    theories = run.result.theories
    assert list(rows[0])[8:] == [f"{t}_{field}" for t in theories for field in ("status", "label", "bias")]
    for row, signal in zip(rows, run.signals["BTC-USD"]):
        # Full precision: every number reads back bit for bit; the reason is the synthesizer's rule.
        assert float(row["price"]) == signal.price and float(row["confidence"]) == signal.confidence
        assert float(row["position"]) == signal.position
        assert row["reason"] == signal.decided_by and row["reason"] in ("buy threshold", "sell threshold", "no-trade band", "risk veto", "no directional theory")
        for position, name in enumerate(theories):
            outcome = signal.theories[position]
            assert row[f"{name}_status"] == outcome.status and row[f"{name}_label"] == outcome.label
            assert (row[f"{name}_bias"] == "") if outcome.bias is None else (float(row[f"{name}_bias"]) == outcome.bias)
