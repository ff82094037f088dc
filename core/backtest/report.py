"""`--report DIR`: summary.json, every signal as CSV, a chart per symbol and, with `--portfolio`, the portfolio's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import create_private
from ..timefmt import format_utc
from .compute import BacktestRun
from .scoring import equity_curves


def write_report(directory: Path, run: BacktestRun) -> list[Path]:
    """summary.json, signals-<SYMBOL>.csv and chart-<SYMBOL>.png (price with signals and fold boundaries,
    equity curves, and the calibration of confidence beside them)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    summary = directory / "summary.json"
    create_private(summary)
    summary.write_text(run.result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    written.append(summary)
    for symbol, signals in run.signals.items():
        if not signals:
            continue
        written.append(_signals_csv(directory / f"signals-{symbol}.csv", run.result.theories, signals))
        written.append(_chart(directory / f"chart-{symbol}.png", run, symbol))
    if run.result.portfolio is not None:
        from .portfolio_report import portfolio_chart

        written.append(portfolio_chart(directory / "chart-portfolio.png", run))
    return written


def _signals_csv(path: Path, theories: list[str], signals: list) -> Path:
    """One row per signal bar: the decision, why, and each theory's status, label and bias at full precision."""
    import csv

    create_private(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([
            "bar_time", "price", "direction", "confidence", "position", "synthesizer", "reason", "fallback_reason",
            *(f"{t}_{field}" for t in theories for field in ("status", "label", "bias")),
        ])
        for s in signals:
            reason = f"fallback: {s.fallback_reason}" if s.fallback_reason else s.decided_by
            cells = []
            for position, _ in enumerate(theories):
                o = s.theories[position] if position < len(s.theories) else None
                cells += ["", "", ""] if o is None else [o.status, o.label, "" if o.bias is None else repr(float(o.bias))]
            writer.writerow([
                format_utc(s.timestamp), repr(float(s.price)), s.direction or "", repr(float(s.confidence)), repr(float(s.position)), s.synthesizer,
                reason, s.fallback_reason or "", *cells,
            ])
    return path


def _chart(path: Path, run: BacktestRun, symbol: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    history, signals, last = run.histories[symbol], run.signals[symbol], run.lasts[symbol]
    stamps, strategy, hold = equity_curves(history, signals, last, run.settings)
    times = np.array(stamps, dtype="datetime64[s]")
    figure = plt.figure(figsize=(16, 7))
    grid = figure.add_gridspec(2, 2, width_ratios=[3, 1], height_ratios=[3, 2])
    top = figure.add_subplot(grid[0, 0])
    bottom = figure.add_subplot(grid[1, 0], sharex=top)
    top.plot(times, history.close[signals[0].index:last + 1], color="#444444", linewidth=0.8, label="close")
    for direction, marker, colour in (("BUY", "^", "#1a9850"), ("SELL", "v", "#d73027")):
        chosen = [s for s in signals if s.direction == direction]
        if chosen:
            top.scatter(
                np.array([s.timestamp for s in chosen], dtype="datetime64[s]"), [s.price for s in chosen],
                marker=marker, color=colour, s=14, label=f"{direction} ({len(chosen)})", zorder=3,
            )
    item = next(s for s in run.result.symbols if s.symbol == symbol)
    scores = item.scores
    verdict = scores.verdict.text if scores.verdict else ""
    top.set_title(
        f"{symbol} {run.result.granularity}: {scores.signals} signals, horizon {run.settings.horizon} bars; "
        f"config {run.result.config_hash}\n{verdict}", fontsize=10,
    )
    mark_folds((top, bottom), item.folds)
    _calibration_panel(figure.add_subplot(grid[:, 1]), scores.horizons[0].calibration if scores.horizons else None)
    top.set_ylabel("price")
    top.legend(loc="upper left")
    bottom.plot(times, strategy, color="#2166ac", label=f"follow the signal ({scores.strategy.total_return:+.1%})")
    bottom.plot(times, hold, color="#999999", label=f"buy and hold ({scores.buy_and_hold.total_return:+.1%})")
    bottom.set_ylabel("equity (start = 1)")
    bottom.legend(loc="upper left")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    return save_chart(figure, path)


def mark_folds(axes: tuple[Any, ...], folds: list[Any]) -> None:
    """The walk-forward boundaries: a dashed line on each axis where a fold after the first starts, labelled on the first axis."""
    import numpy as np

    for k, fold in enumerate(folds[1:], 2):
        when = np.datetime64(int(fold.start.timestamp()), "s")
        for axis in axes:
            axis.axvline(when, color="#7570b3", linestyle="--", linewidth=0.8)
        axes[0].text(when, axes[0].get_ylim()[1], f" fold {k}", color="#7570b3", fontsize=8, va="top")


def save_chart(figure: Any, path: Path) -> Path:
    """Every report chart is written the same way, and its figure freed (a long report draws many)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _calibration_panel(axis, calibration) -> None:
    """Hit rate by confidence bin (Wilson bars) against the diagonal a calibrated confidence would follow."""
    axis.set_title("calibration of BUY/SELL confidence", fontsize=10)
    axis.set_xlabel("mean confidence in bin")
    axis.set_ylabel("hit rate")
    axis.plot([0, 1], [0, 1], color="#bbbbbb", linestyle=":", label="calibrated")
    if calibration is None or not calibration.bins:
        axis.text(0.5, 0.5, "too few BUY/SELL signals", ha="center", va="center")
        return
    x = [b.mean_confidence for b in calibration.bins]
    y = [b.hit_rate for b in calibration.bins]
    errors = [[b.hit_rate - b.ci_low for b in calibration.bins], [b.ci_high - b.hit_rate for b in calibration.bins]]
    axis.errorbar(x, y, yerr=errors, fmt="o-", color="#2166ac", capsize=3, label="hit rate (Wilson 95%)")
    slope = "-" if calibration.slope is None else f"{calibration.slope:+.2f}"
    brier = "-" if calibration.brier is None else f"{calibration.brier:.3f}"
    base = "-" if calibration.base_rate_brier is None else f"{calibration.base_rate_brier:.3f}"
    axis.text(0.02, 0.98, f"slope {slope}\nBrier {brier} (base rate {base})", transform=axis.transAxes, va="top", fontsize=9)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(loc="lower right", fontsize=8)
