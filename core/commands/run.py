"""`v7 run`: the pipeline every `interval_seconds`, until stopped or N iterations."""

from __future__ import annotations

import signal as signals
import sys
import threading
from typing import Any

import click

from .common import CONFIG_HELP, Context, fail, load, parse_symbols, warn_config


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Stop after N iterations (default: run until stopped).")
@click.option("--symbols", default=None, help="Comma-separated symbols overriding the config, e.g. BTC-USD,ETH-USD.")
@click.pass_obj
def run(ctx: Context, config_path: str, iterations: int | None, symbols: str | None) -> None:
    """Run the pipeline every `interval_seconds` (replay feeds do not wait)."""
    from ..engine import Pipeline, StartupError, limit_threads
    from ..outcome import EXIT_NO_SIGNAL, EXIT_SPOOLED

    registry, config = load(ctx, config_path)
    warn_config(config)
    chosen = parse_symbols(symbols)
    limit_threads(config.engine.max_threads)
    try:
        pipeline = Pipeline.build(config, registry)
    except StartupError as exc:
        fail(str(exc))
    problems = pipeline.check_symbols(chosen)
    if problems:
        pipeline.close()
        fail("the feeds cannot serve these symbols:\n  - " + "\n  - ".join(problems))

    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        # Only set a flag: logging here could deadlock on the log stream's lock if the signal
        # lands while the main thread is writing a line. The run loop logs the stop.
        if stop.is_set() and signum == signals.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    signals.signal(signals.SIGINT, request_stop)
    signals.signal(signals.SIGTERM, request_stop)
    try:
        outcome = pipeline.run(iterations=iterations, symbols=chosen, stop=stop)
    except StartupError as exc:
        fail(str(exc))
    except Exception as exc:  # opening a sink, for instance: a clear message, no traceback
        fail(f"run failed: {type(exc).__name__}: {exc}")
    click.echo(f"{outcome.describe()}.", err=True)
    if outcome.already_stored and not outcome.stored:
        click.echo(
            f"Note: every signal of this run was already stored for this config (hash {pipeline.config_hash}): "
            "these bars were run before with the same settings, so nothing new was written.", err=True,
        )
    if outcome.up_to_date:
        click.echo(
            f"Note: resume: every bar of {', '.join(sorted(outcome.up_to_date))} is already stored for this config "
            f"(hash {pipeline.config_hash}); nothing new to replay.", err=True,
        )
    if outcome.lost:
        click.echo(
            f"Error: {outcome.lost} signal(s) lost: no sink could store or spool them; their JSON lines are on stdout "
            "(the log above says why).", err=True,
        )
    silent = outcome.silent_symbols if not stop.is_set() else []
    if silent:
        # The run finished but did not do its job for these symbols (see the log for why).
        click.echo(f"Error: no signal for {', '.join(silent)}: the feed gave no usable data or no synthesizer answered (see the log above)", err=True)
    if outcome.spooled:
        click.echo(f"Note: {outcome.spooled} signal(s) wait in a spool, not yet in the store; they are stored at the next run.", err=True)
    code = outcome.exit_code
    if code == EXIT_NO_SIGNAL and not silent:  # stopped on request before every symbol had its turn
        code = EXIT_SPOOLED if outcome.spooled else 0
    sys.exit(code)
