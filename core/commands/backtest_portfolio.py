"""What `v7 backtest --portfolio` prints after the per-symbol scores: the three books side by side, then each fold."""

from __future__ import annotations

from typing import Any

from .backtest_output import pct

BOOKS = (("portfolio", "sized, portfolio step"), ("unsized", "unsized, equal weight"), ("basket", "buy-and-hold basket"))
COLUMNS = ("total return", "annual return", "annual vol", "Sharpe (ann.)", "max drawdown", "CVaR 95% (daily)", "turnover", "exposure")


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def performance_cells(perf: Any) -> list[str]:
    """A book's figures as table cells, in COLUMNS order."""
    return [
        pct(perf.total_return), pct(perf.annual_return), _number(perf.annual_volatility, "{:.1%}"), _number(perf.sharpe, "{:.2f}"),
        _number(perf.max_drawdown, "{:.1%}"), _number(perf.cvar_95, "{:.2%}"), _number(perf.turnover, "{:.1f}"), _number(perf.exposure, "{:.0%}"),
    ]


def print_portfolio(portfolio: Any, console: Any | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=140)
    s = portfolio.settings
    overall = portfolio.overall
    console.print(
        f"\n[bold]Portfolio[/bold] {', '.join(portfolio.symbols)}  {overall.start:%Y-%m-%d %H:%M} → {overall.end:%Y-%m-%d %H:%M} UTC, "
        f"{portfolio.bars:,} common bars; {s['method']} weights over {s['covariance_bars']} bars, at most {s['max_symbol']:g} per symbol "
        f"and {s['max_gross']:g} gross", highlight=False,
    )
    table = Table(title="books (all pay costs; CVaR: mean loss on the worst 5% of days)", title_justify="left")
    table.add_column("")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for name, label in BOOKS:
        table.add_row(label, *performance_cells(getattr(overall, name)))
    console.print(table)
    held = ", ".join(f"{sym} {portfolio.mean_weight.get(sym, 0):.2f}" for sym in portfolio.symbols)
    positions = ", ".join(f"{sym} {portfolio.mean_position.get(sym, 0):+.2f}" for sym in portfolio.symbols)
    console.print(f"Mean weight when held: {held}; mean position: {positions}.", highlight=False)
    if portfolio.dropped_signals:
        console.print(f"{portfolio.dropped_signals} signal(s) fell on bars another symbol lacks and were left out.", highlight=False)
    if portfolio.folds:
        folds = Table(title=f"walk-forward: {len(portfolio.folds)} folds (each starts flat)", title_justify="left")
        for column in ("fold", "from", "to", "portfolio return", "Sharpe", "max drawdown", "unsized return", "basket return", "basket Sharpe"):
            folds.add_column(column, justify="right")
        for k, fold in enumerate(portfolio.folds, 1):
            folds.add_row(
                str(k), f"{fold.start:%Y-%m-%d}", f"{fold.end:%Y-%m-%d}", pct(fold.portfolio.total_return), _number(fold.portfolio.sharpe, "{:.2f}"),
                _number(fold.portfolio.max_drawdown, "{:.1%}"), pct(fold.unsized.total_return), pct(fold.basket.total_return),
                _number(fold.basket.sharpe, "{:.2f}"),
            )
        console.print(folds)
