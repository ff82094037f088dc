"""What `v7 backtest` prints for a synthesizer that learns: its out-of-sample scores beside its fallback's, on the same bars."""

from __future__ import annotations

from typing import Any

from .backtest_output import interval, points

IMPORTANCES_SHOWN = 8


def score_cells(scores: Any) -> list[str]:
    """Verdict, IC, BUY/SELL edge over the base rate, calibration and the fair null of one Scores."""
    if scores is None or not scores.horizons:
        return ["-"] * 7
    head = scores.horizons[0]
    buy, sell = head.directions.get("BUY"), head.directions.get("SELL")
    cal = head.calibration
    return [
        head.verdict.text.split(" (")[0], interval(head.ic),
        "-" if buy is None else points(buy.edge), "-" if sell is None else points(sell.edge),
        "-" if cal is None or cal.brier is None else f"{cal.brier:.4f} vs {cal.base_rate_brier:.4f}",
        "-" if cal is None or cal.slope is None else f"{cal.slope:+.2f}",
        "-" if scores.null is None or scores.null.p_value is None else f"{scores.null.p_value:.3f}",
    ]


def print_learning(console: Any, comparisons: list[Any]) -> None:
    from rich.table import Table

    for item in comparisons:
        if not item.bars:
            console.print(f"\n[bold]{item.symbol}[/bold]: {item.learner} never answered (no model: too few labelled bars); "
                          f"every signal came from {item.baseline or 'no fallback'}.")
            continue
        console.print(
            f"\n[bold]{item.symbol}[/bold]: {item.learner} out of sample against {item.baseline} on the same {item.bars:,} bars "
            f"(from {item.first_model_bar:%Y-%m-%d %H:%M} UTC, its first model; {item.model_answered:,} answered by the model)"
        )
        table = Table(title_justify="left")
        for column in ("synthesizer", "verdict", "IC [95% CI]", "BUY edge", "SELL edge", "Brier vs base rate", "calib. slope", "fair-null p"):
            table.add_column(column, justify="right")
        table.add_row(item.learner, *score_cells(item.learned))
        table.add_row(item.baseline, *score_cells(item.baseline_scores))
        console.print(table)
        if item.importances:
            top = list(item.importances.items())[:IMPORTANCES_SHOWN]
            console.print("feature importances (final model): " + ", ".join(f"{name} {value:.2f}" for name, value in top), highlight=False)
