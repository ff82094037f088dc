"""`v7 backtest`: replay history through the configured pipeline, bar by bar, and score the signals;
`v7 backtest compare A B`: two stored runs side by side.

Only click is imported here; the backtest machinery (numpy, the plugins) loads inside the command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .common import CONFIG_HELP, fail, load, parse_moment, parse_symbols, plain_table

SINK_HELP = "Sink that keeps the results (default: the first enabled sink that can read back)."
DB_HELP = "Store of that sink to use instead of the configured one (a path; its meaning is the sink's, e.g. a database file)."


def _horizons(value: str | None) -> list[int] | None:
    """`--horizon 24` or `--horizon 1,6,24`: positive whole numbers of bars."""
    if value is None:
        return None
    try:
        horizons = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of bar counts, e.g. 1,6,24", param_hint="--horizon") from None
    if not horizons or min(horizons) < 1:
        raise click.BadParameter(f"{value!r}: every horizon is at least 1 bar", param_hint="--horizon")
    return horizons


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--symbols", default=None, help="Comma-separated symbols overriding the config, e.g. BTC-USD,ETH-USD.")
@click.option("--start", default=None, help="First signal bar, ISO UTC (default: [backtest] start, else the first bar with a full lookback).")
@click.option("--end", default=None, help="Last bar, ISO UTC (default: [backtest] end, else the end of the history).")
@click.option("--bars", type=click.IntRange(min=1), default=None, help="Only the last N bars of the range.")
@click.option("--horizon", default=None, help="Bars ahead over which a signal is scored ([backtest] horizon); several, e.g. 1,6,24, are scored from one computation (the first is the headline).")
@click.option("--execution", type=click.Choice(["next_open", "close"]), default=None, help="Fill at the next bar's open (default) or at the decision bar's close ([backtest] execution).")
@click.option("--delay-bars", type=click.IntRange(min=0), default=None, help="Bars between decision and fill ([backtest] delay_bars).")
@click.option("--step", type=click.IntRange(min=1), default=None, help="A signal every N bars ([backtest] step).")
@click.option("--folds", type=click.IntRange(min=1), default=None, help="Walk-forward: score K consecutive windows separately.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Processes computing theories (0 = one per CPU core).")
@click.option("--check-lookahead", is_flag=True, help="Recompute a sample of signals from truncated history in a fresh process; exit 1 on any difference.")
@click.option("--yes", is_flag=True, help="Go ahead even when the LLM call estimate is above llm_call_cap.")
@click.option("--llm-call-cap", type=click.IntRange(min=0), default=None, help="Override [backtest] llm_call_cap.")
@click.option("--portfolio", "with_portfolio", is_flag=True, help="Also run every symbol together: sized positions, the [portfolio] step, costs (docs/portfolio.md).")
@click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False), help="Write summary.json, signals CSV and charts (PNG) here.")
@click.option("--no-store", is_flag=True, help="Do not store the result.")
@click.option("--sink", "sink_name", default=None, help=SINK_HELP)
@click.option("--db", "db_location", default=None, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
@click.pass_context
def backtest(
    click_ctx: click.Context, config_path: str | None, symbols: str | None, start: str | None, end: str | None, bars: int | None,
    horizon: str | None, execution: str | None, delay_bars: int | None, step: int | None, folds: int | None, workers: int | None, check_lookahead: bool, yes: bool,
    llm_call_cap: int | None, report_dir: str | None, no_store: bool, sink_name: str | None, db_location: str | None,
    as_json: bool, with_portfolio: bool = False,
) -> None:
    """Replay history through the same pipeline as `v7 run` (no lookahead) and score the signals.

    The verdict first (does direction × confidence rank the forward returns? 95% block-bootstrap
    interval), then per direction the hit rate against the base rate, the IC of each theory, the
    calibration of confidence, and a follow-the-signal strategy against buy-and-hold (both paying
    costs) with a circular-shift null. Each run is stored with its config hash; `v7 backtest compare A B` shows two
    side by side.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.obj
    from pathlib import Path

    if config_path is None:
        fail("give --config (the pipeline to backtest)")
    registry, config = load(ctx, config_path)
    if ctx.log_level is None:
        # Per-bar info lines (cache hits, fallbacks) would bury the progress bar; warnings still show.
        from ..logs import configure_logging

        configure_logging("warning" if config.logging.level in ("debug", "info") else config.logging.level, ctx.log_json or config.logging.json_lines)

    from pydantic import ValidationError

    from ..errors import one_line

    from ..backtest import (
        BacktestError, LlmCapExceeded, check_lookahead as run_check, open_results, resolve_settings, result_sink, run_backtest,
        store_result, write_report,
    )
    from ..engine import limit_threads

    chosen = parse_symbols(symbols)
    try:
        horizons = _horizons(horizon)
        settings = resolve_settings(
            config, start=parse_moment(start, "--start"), end=parse_moment(end, "--end"), horizon=horizons[0] if horizons else None,
            horizons=horizons[1:] if horizons else None, execution=execution, delay_bars=delay_bars, step=step, folds=folds,
            workers=workers, llm_call_cap=llm_call_cap,
        )
    except click.BadParameter as exc:
        fail(exc.format_message())
    except ValidationError as exc:
        fail(one_line(exc, limit=20))
    if not no_store and (sink_name or db_location):
        try:  # a wrong --sink is a mistake to report before the work, not after
            result_sink(config, registry, sink_name)
        except BacktestError as exc:
            fail(str(exc))
    limit_threads(config.engine.max_threads)

    show_progress = not as_json and sys.stderr.isatty()
    progress_state: dict[str, Any] = {}

    def on_plan(counts: dict[str, int]) -> None:
        total = sum(counts.values())
        click.echo(f"Backtesting {', '.join(f'{s} ({n:,} signal bars)' for s, n in counts.items())}; config {config.config_hash()}.", err=True)
        if show_progress:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            )
            progress_state["bar"] = progress
            progress_state["task"] = progress.add_task("bars", total=total)

    def on_progress(_symbol: str, done: int) -> None:
        bar = progress_state.get("bar")
        if bar is None:
            return
        if not progress_state.get("started"):
            bar.start()  # only now: worker processes are forked before any progress thread exists
            progress_state["started"] = True
        bar.advance(progress_state["task"], done)

    def on_estimate(estimate: Any) -> None:
        click.echo(estimate.describe(), err=True)

    try:
        try:
            run = run_backtest(
                config, registry, settings=settings, symbols=chosen, bars=bars, confirm_llm=yes,
                on_estimate=on_estimate, progress=on_progress, on_plan=on_plan,
            )
        finally:
            if progress_state.get("started"):
                progress_state["bar"].stop()
    except LlmCapExceeded as exc:
        fail(f"refused: {exc}")
    except BacktestError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)

    if with_portfolio:
        from ..backtest.portfolio import portfolio_of

        try:
            run.result.portfolio = portfolio_of(run)
        except BacktestError as exc:
            fail(str(exc))
    if check_lookahead:
        click.echo(f"Checking for lookahead: recomputing {settings.lookahead_sample} signal(s) in a fresh process…", err=True)
        run.result.lookahead = run_check(run)
    if not no_store:
        try:
            with open_results(config, registry, sink_name, db_location) as reader:
                store_result(reader, run.result)
                where = reader.location or db_location or "the result sink"
        except Exception as exc:  # the result is still printed; only storing failed
            click.echo(f"Warning: could not store the backtest: {type(exc).__name__}: {exc}", err=True)
        else:
            click.echo(f"Stored as backtest {run.result.id} in {where}.", err=True)
    if report_dir:
        written = write_report(Path(report_dir), run)
        click.echo(f"Report: {', '.join(str(p) for p in written)}", err=True)

    if as_json:
        click.echo(run.result.model_dump_json(indent=2))
    else:
        from .backtest_output import print_result

        print_result(run.result)
        if run.result.portfolio is not None:
            from .backtest_portfolio import print_portfolio

            print_portfolio(run.result.portfolio)
    if run.result.lookahead is not None and not run.result.lookahead.ok:
        sys.exit(1)


@backtest.command()
@click.argument("keys", metavar="A B [C ...]", nargs=-1, required=True)
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=f"{CONFIG_HELP} Its sinks name where results are kept.")
@click.option("--sink", "sink_name", default=None, help=SINK_HELP)
@click.option("--db", "db_location", default=None, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the results, and how they differ, as JSON.")
@click.pass_obj
def compare(ctx: Any, keys: tuple[str, ...], config_path: str | None, sink_name: str | None, db_location: str | None, as_json: bool) -> None:
    """Stored backtests side by side: ids or config hashes (a unique prefix will do), two or more.

    After the table: every setting in which they differ, and a warning when they cover different
    date ranges. With three or more, each strategy Sharpe is deflated for the number of runs
    compared (the more configurations tried, the more a good Sharpe owes to luck).
    """
    from ..backtest import BacktestError, comparison_rows, differing_settings, load_result, open_results, range_warning

    if len(keys) < 2:
        fail("give at least two backtests to compare (ids or config hashes)")
    parent = click.get_current_context().parent
    given = parent.params if parent is not None else {}  # `v7 backtest --config c.toml compare A B` works too
    config_path = config_path or given.get("config_path")
    sink_name = sink_name or given.get("sink_name")
    db_location = db_location or given.get("db_location")
    as_json = as_json or bool(given.get("as_json"))
    registry, config = load(ctx, config_path)  # without --config: the defaults (their sinks)
    try:
        with open_results(config, registry, sink_name, db_location) as reader:
            results = [load_result(reader, key) for key in keys]
    except BacktestError as exc:
        fail(str(exc))
    differ = differing_settings(*results)
    warning = range_warning(*results)
    labels = [chr(ord("A") + i) if i < 26 else str(i + 1) for i in range(len(results))]
    if as_json:
        payload: dict[str, Any] = {label.lower(): r.model_dump(mode="json") for label, r in zip(labels, results)}
        payload["differences"] = [{"setting": row[0], **{label.lower(): v for label, v in zip(labels, row[1:])}} for row in differ]
        payload["warning"] = warning
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(plain_table([("", *(f"{label} ({key})" for label, key in zip(labels, keys))), *comparison_rows(*results)]))
    click.echo("")
    if differ:
        click.echo("Settings that differ:")
        click.echo(plain_table([("setting", *labels), *differ]))
    else:
        click.echo("Settings that differ: none (same config hash, granularity, lookback, synthesizer, theories and [backtest] settings).")
    if warning:
        click.echo(f"Warning: {warning}")
