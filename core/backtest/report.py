"""`--report DIR`: summary.json, every signal as CSV, and a chart per symbol."""

from __future__ import annotations

from pathlib import Path

from ..files import create_private
from ..timefmt import format_utc
from .compute import BacktestRun
from .scoring import equity_curves


def write_report(directory: Path, run: BacktestRun) -> list[Path]:
    """summary.json, signals-<SYMBOL>.csv and chart-<SYMBOL>.png (price with signals, equity curves)."""
    import csv

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    summary = directory / "summary.json"
    create_private(summary)
    summary.write_text(run.result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    written.append(summary)
    for symbol, signals in run.signals.items():
        if not signals:
            continue
        path = directory / f"signals-{symbol}.csv"
        theories = run.result.theories
        create_private(path)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["bar_time", "price", "direction", "confidence", "synthesizer", "fallback_reason", *(f"{t}_bias" for t in theories)])
            for s in signals:
                biases = [("" if o.bias is None else f"{o.bias:.6g}") for o in s.theories]
                writer.writerow([format_utc(s.timestamp), f"{s.price:.10g}", s.direction or "", f"{s.confidence:.6g}", s.synthesizer, s.fallback_reason or "", *biases])
        written.append(path)
        written.append(_chart(directory / f"chart-{symbol}.png", run, symbol))
    return written


def _chart(path: Path, run: BacktestRun, symbol: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    history, signals, last = run.histories[symbol], run.signals[symbol], run.lasts[symbol]
    stamps, strategy, hold = equity_curves(history, signals, last, run.settings)
    times = np.array(stamps, dtype="datetime64[s]")
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.plot(times, history.close[signals[0].index:last + 1], color="#444444", linewidth=0.8, label="close")
    for direction, marker, colour in (("BUY", "^", "#1a9850"), ("SELL", "v", "#d73027")):
        chosen = [s for s in signals if s.direction == direction]
        if chosen:
            top.scatter(
                np.array([s.timestamp for s in chosen], dtype="datetime64[s]"), [s.price for s in chosen],
                marker=marker, color=colour, s=14, label=f"{direction} ({len(chosen)})", zorder=3,
            )
    scores = next(s.scores for s in run.result.symbols if s.symbol == symbol)
    top.set_title(
        f"{symbol} {run.result.granularity}: {scores.signals} signals, horizon {run.settings.horizon} bars; "
        f"config {run.result.config_hash}"
    )
    top.set_ylabel("price")
    top.legend(loc="upper left")
    bottom.plot(times, strategy, color="#2166ac", label=f"follow the signal ({scores.strategy.total_return:+.1%})")
    bottom.plot(times, hold, color="#999999", label=f"buy and hold ({scores.buy_and_hold.total_return:+.1%})")
    bottom.set_ylabel("equity (start = 1)")
    bottom.legend(loc="upper left")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
