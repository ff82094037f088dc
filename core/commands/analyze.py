"""`v7 analyze`: the enabled theories on one candle CSV, printed as a table or JSON."""

from __future__ import annotations

import json

import click

from .common import CONFIG_HELP, Context, fail, load, terminal_width


@click.command()
@click.option("--candles", "candles_path", required=True, type=click.Path(dir_okay=False), help="Candle CSV: timestamp,open,high,low,close,volume.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP + " Default: the five built-in theories.")
@click.option("--symbol", default="UNKNOWN-USD", help="Symbol to label the candles with.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of theory results.")
@click.pass_obj
def analyze(ctx: Context, candles_path: str, config_path: str | None, symbol: str, as_json: bool) -> None:
    """Run the enabled theories on the candles of a CSV file and print each result."""
    from ..candles import CandleDataError, check_spacing, read_candles_csv
    from ..engine import Pipeline, StartupError, limit_threads

    registry, config = load(ctx, config_path)
    limit_threads(config.engine.max_threads)
    try:
        candles = read_candles_csv(candles_path, symbol, config.engine.granularity)
        pipeline = Pipeline.build(config, registry, kinds=("theory",))
    except (CandleDataError, StartupError) as exc:
        fail(str(exc))
    if len(candles) == 0:
        fail(f"{candles_path}: no valid candles")
    try:
        check_spacing(candles, config.engine.granularity, candles_path)
    except CandleDataError as exc:
        fail(str(exc))
    results = pipeline.analyze(candles.tail(config.engine.lookback))
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=terminal_width(), highlight=False)
    # Below 120 columns metrics and interpretation leave the table and follow it, one theory per paragraph.
    wide = console.width >= 120
    table = Table(title=f"{symbol}: {len(candles)} candles, last {candles.last_time:%Y-%m-%d %H:%M} UTC, close {candles.last_price:g}")
    columns = ("theory", "status", "label", "bias", "confidence", *(("metrics", "interpretation") if wide else ()))
    for column in columns:
        table.add_column(column, overflow="fold")
    details = []
    for r in results:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items())
        reading = r.interpretation if r.ok else (r.message or "")
        row = [r.theory, r.status, r.label, "-" if r.bias is None else f"{r.bias:+.3f}", f"{r.confidence:.2f}"]
        table.add_row(*(row + [metrics, reading] if wide else row))
        details.append(f"{r.theory}: {reading}" + (f"\n  {metrics}" if metrics else ""))
    console.print(table)
    if not wide:
        for text in details:
            console.print(text)
