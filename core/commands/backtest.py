"""`v7 backtest`: replay history through the configured pipeline, bar by bar, and score the signals;
`v7 backtest compare A B`: two stored runs side by side.

Only click is imported here; the backtest machinery (numpy, the plugins) loads inside the command.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from .common import CONFIG_HELP, fail, load, parse_symbols, plain_table

SINK_HELP = "Sink that keeps the results (default: the first enabled sink that can read back)."
DB_HELP = "Store of that sink to use instead of the configured one (a path; its meaning is the sink's, e.g. a database file)."


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    from ..timefmt import parse_utc

    try:
        return parse_utc(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--symbols", default=None, help="Comma-separated symbols overriding the config, e.g. BTC-USD,ETH-USD.")
@click.option("--start", default=None, help="First signal bar, ISO UTC (default: [backtest] start, else the first bar with a full lookback).")
@click.option("--end", default=None, help="Last bar, ISO UTC (default: [backtest] end, else the end of the history).")
@click.option("--bars", type=click.IntRange(min=1), default=None, help="Only the last N bars of the range.")
@click.option("--horizon", type=click.IntRange(min=1), default=None, help="Bars ahead over which a signal is scored ([backtest] horizon).")
@click.option("--step", type=click.IntRange(min=1), default=None, help="A signal every N bars ([backtest] step).")
@click.option("--folds", type=click.IntRange(min=1), default=None, help="Walk-forward: score K consecutive windows separately.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Processes computing theories (0 = one per CPU core).")
@click.option("--check-lookahead", is_flag=True, help="Recompute a sample of signals from truncated history in a fresh process; exit 1 on any difference.")
@click.option("--yes", is_flag=True, help="Go ahead even when the LLM call estimate is above llm_call_cap.")
@click.option("--llm-call-cap", type=click.IntRange(min=0), default=None, help="Override [backtest] llm_call_cap.")
@click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False), help="Write summary.json, signals CSV and charts (PNG) here.")
@click.option("--no-store", is_flag=True, help="Do not store the result.")
@click.option("--sink", "sink_name", default=None, help=SINK_HELP)
@click.option("--db", "db_location", default=None, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
@click.pass_context
def backtest(
    click_ctx: click.Context, config_path: str | None, symbols: str | None, start: str | None, end: str | None, bars: int | None,
    horizon: int | None, step: int | None, folds: int | None, workers: int | None, check_lookahead: bool, yes: bool,
    llm_call_cap: int | None, report_dir: str | None, no_store: bool, sink_name: str | None, db_location: str | None,
    as_json: bool,
) -> None:
    """Replay history through the same pipeline as `v7 run` (no lookahead) and score the signals.

    Hit rates per direction with 95% Wilson intervals, a follow-the-signal strategy against
    buy-and-hold (fees and slippage included), and how each theory's bias correlated with the
    forward return. Each run is stored with its config hash; `v7 backtest compare A B` shows two
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
        settings = resolve_settings(
            config, start=_moment(start, "--start"), end=_moment(end, "--end"), horizon=horizon, step=step, folds=folds,
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
        _print_result(run.result)
    if run.result.lookahead is not None and not run.result.lookahead.ok:
        sys.exit(1)


@backtest.command()
@click.argument("first", metavar="A")
@click.argument("second", metavar="B")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=f"{CONFIG_HELP} Its sinks name where results are kept.")
@click.option("--sink", "sink_name", default=None, help=SINK_HELP)
@click.option("--db", "db_location", default=None, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print both results, and how they differ, as JSON.")
@click.pass_obj
def compare(ctx: Any, first: str, second: str, config_path: str | None, sink_name: str | None, db_location: str | None, as_json: bool) -> None:
    """Two stored backtests side by side: A and B are ids or config hashes (a unique prefix will do).

    After the table: every setting in which they differ, and a warning when they cover different
    date ranges.
    """
    from ..backtest import BacktestError, comparison_rows, differing_settings, load_result, open_results, range_warning

    parent = click.get_current_context().parent
    given = parent.params if parent is not None else {}  # `v7 backtest --config c.toml compare A B` works too
    config_path = config_path or given.get("config_path")
    sink_name = sink_name or given.get("sink_name")
    db_location = db_location or given.get("db_location")
    as_json = as_json or bool(given.get("as_json"))
    registry, config = load(ctx, config_path)  # without --config: the defaults (their sinks)
    try:
        with open_results(config, registry, sink_name, db_location) as reader:
            a, b = (load_result(reader, key) for key in (first, second))
    except BacktestError as exc:
        fail(str(exc))
    differ = differing_settings(a, b)
    warning = range_warning(a, b)
    if as_json:
        click.echo(json.dumps({
            "a": a.model_dump(mode="json"), "b": b.model_dump(mode="json"),
            "differences": [{"setting": name, "a": x, "b": y} for name, x, y in differ], "warning": warning,
        }, indent=2))
        return
    click.echo(plain_table([("", f"A ({first})", f"B ({second})"), *comparison_rows(a, b)]))
    click.echo("")
    if differ:
        click.echo("Settings that differ:")
        click.echo(plain_table([("setting", "A", "B"), *differ]))
    else:
        click.echo("Settings that differ: none (same config hash, granularity, lookback, synthesizer, theories and [backtest] settings).")
    if warning:
        click.echo(f"Warning: {warning}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2%}"


def _print_result(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    console.print(
        f"[bold]Backtest[/bold] {'#' + str(result.id) if result.id else '(not stored)'}  config {result.config_hash}  "
        f"{result.granularity}, lookback {result.lookback}, synthesizer {result.synthesizer}, horizon {result.settings['horizon']} bars, "
        f"step {result.settings['step']}, costs {result.settings['fees_bps']:g}+{result.settings['slippage_bps']:g} bps, "
        f"SELL → {'short' if result.settings['short_on_sell'] else 'flat'}"
    )
    console.print(
        f"{result.bars:,} signals in {result.elapsed_seconds:.1f} s ({result.bars_per_second:.1f} bars/s, {result.workers} worker(s)); "
        "theory ms/bar: " + ", ".join(f"{k} {v:.1f}" for k, v in result.theory_ms.items())
    )
    if result.llm_usage is not None:
        u = result.llm_usage
        console.print(f"LLM: {u.requests} request(s), {u.cached_answers} cached answer(s), {u.fallbacks} fallback(s), "
                      f"{u.prompt_tokens:,}+{u.completion_tokens:,} tokens, {u.cost:.4f} USD")
    for item in result.symbols:
        s = item.scores
        console.print(f"\n[bold]{item.symbol}[/bold]  {s.start:%Y-%m-%d %H:%M} → {s.end:%Y-%m-%d %H:%M} UTC, {s.signals:,} signals "
                      f"({s.scored:,} scored{', ' + str(s.failed) + ' failed' if s.failed else ''})")
        table = Table(title="signals", title_justify="left")
        for column in ("direction", "count", "share", "hit rate", "95% CI", "mean fwd return"):
            table.add_column(column, justify="right")
        for d in s.directions.values():
            table.add_row(
                d.direction, f"{d.count:,}", f"{d.share:.1%}", "-" if d.hit_rate is None else f"{d.hit_rate:.1%} of {d.scored:,}",
                "-" if d.ci_low is None else f"{d.ci_low:.1%} – {d.ci_high:.1%}",
                "-" if d.mean_forward_return is None else f"{d.mean_forward_return:+.3%}",
            )
        console.print(table)
        table = Table(title="strategy vs buy-and-hold", title_justify="left")
        for column in ("", "total return", "Sharpe (ann.)", "max drawdown", "trades", "exposure"):
            table.add_column(column, justify="right")
        for label, p in (("follow the signal", s.strategy), ("buy and hold", s.buy_and_hold)):
            table.add_row(label, _pct(p.total_return), "-" if p.sharpe is None else f"{p.sharpe:.2f}", f"{p.max_drawdown:.1%}", f"{p.trades:,}", f"{p.exposure:.0%}")
        console.print(table)
        table = Table(title="theory bias vs forward return", title_justify="left")
        for column in ("theory", "n", "with a bias", "Spearman ρ", "p", "Pearson r", "p"):
            table.add_column(column, justify="right")
        for t in s.theories:
            table.add_row(
                t.theory, f"{t.n:,}", f"{t.answered:.1%}" if t.answered else "never (not directional)",
                "-" if t.spearman is None else f"{t.spearman:+.3f}", "-" if t.spearman_p is None else f"{t.spearman_p:.3g}",
                "-" if t.pearson is None else f"{t.pearson:+.3f}", "-" if t.pearson_p is None else f"{t.pearson_p:.3g}",
            )
        console.print(table)
        if item.folds:
            table = Table(title=f"walk-forward: {len(item.folds)} folds", title_justify="left")
            for column in ("fold", "range", "signals", "strategy", "buy & hold", "Sharpe", "max DD", "trades", "BUY hit", "SELL hit", "HOLD"):
                table.add_column(column, justify="right")
            for k, f in enumerate(item.folds, 1):
                buy, sell = f.directions["BUY"].hit_rate, f.directions["SELL"].hit_rate
                table.add_row(
                    str(k), f"{f.start:%Y-%m-%d} → {f.end:%Y-%m-%d}", f"{f.signals:,}", _pct(f.strategy.total_return),
                    _pct(f.buy_and_hold.total_return), "-" if f.strategy.sharpe is None else f"{f.strategy.sharpe:.2f}",
                    f"{f.strategy.max_drawdown:.1%}", str(f.strategy.trades), "-" if buy is None else f"{buy:.1%}",
                    "-" if sell is None else f"{sell:.1%}", f"{f.hold_share:.0%}",
                )
            console.print(table)
            table = Table(title="spread across folds", title_justify="left")
            for column in ("metric", "n", "mean", "std", "min", "max"):
                table.add_column(column, justify="right")
            for name, sp in item.fold_spread.items():
                if name in ("strategy_sharpe", "trades"):
                    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
                elif name.endswith("_return"):
                    fmt = _pct
                else:
                    fmt = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
                spread_fmt = (lambda v: "-" if v is None else f"{v:.2%}") if name.endswith("_return") else fmt  # noqa: E731
                table.add_row(name, str(sp.n), fmt(sp.mean), spread_fmt(sp.std), fmt(sp.min), fmt(sp.max))
            console.print(table)
    if result.lookahead is not None:
        report = result.lookahead
        if report.error:
            console.print(f"\n[bold red]Lookahead check failed to run:[/bold red] {report.error}")
        elif report.ok:
            console.print(f"\nLookahead check: {report.checked} signal(s) recomputed from truncated history in a fresh process; no difference.")
        else:
            console.print(f"\n[bold red]Lookahead check: {len(report.differences)} difference(s) in {report.checked} recomputed signal(s):[/bold red]")
            for d in report.differences[:50]:
                console.print(f"  {d.symbol} {d.bar_time:%Y-%m-%d %H:%M}  {d.field}: backtest {d.backtest} ≠ recomputed {d.recomputed}")
