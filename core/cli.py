"""The `v7` command. Heavy modules are imported inside commands so `v7 --help` stays instant."""

from __future__ import annotations

import json
import signal as signals
import sys
import threading
from pathlib import Path
from typing import Any

import click

from .commands.common import CONFIG_HELP, Context, fail, load, parse_symbols, plain_table

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="v7", prog_name="v7")
@click.option("--log-json", is_flag=True, help="Log JSON lines instead of readable text.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None, help="Override the config's log level.")
@click.pass_context
def cli(click_ctx: click.Context, log_json: bool, log_level: str | None) -> None:
    """V7: trading signals for crypto markets from pluggable feeds, theories and synthesizers.

    feeds → theories → prompt formatters → synthesizer → sinks, one pipeline per symbol.
    """
    click_ctx.obj = Context(log_json, log_level)


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Stop after N iterations (default: run until stopped).")
@click.option("--symbols", default=None, help="Comma-separated symbols overriding the config, e.g. BTC-USD,ETH-USD.")
@click.pass_obj
def run(ctx: Context, config_path: str, iterations: int | None, symbols: str | None) -> None:
    """Run the pipeline every `interval_seconds` (replay feeds do not wait)."""
    from .engine import Pipeline, StartupError, limit_threads

    registry, config = load(ctx, config_path)
    chosen = parse_symbols(symbols)
    limit_threads(config.engine.max_threads)
    try:
        pipeline = Pipeline.build(config, registry)
    except StartupError as exc:
        fail(str(exc))

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
        produced = pipeline.run(iterations=iterations, symbols=chosen, stop=stop)
    except StartupError as exc:
        fail(str(exc))
    except Exception as exc:  # opening a sink, for instance: a clear message, no traceback
        fail(f"run failed: {type(exc).__name__}: {exc}")
    click.echo(f"{len(produced)} signal(s) produced.", err=True)


@cli.command()
@click.option("--candles", "candles_path", required=True, type=click.Path(dir_okay=False), help="Candle CSV: timestamp,open,high,low,close,volume.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP + " Default: the five built-in theories.")
@click.option("--symbol", default="UNKNOWN-USD", help="Symbol to label the candles with.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of theory results.")
@click.pass_obj
def analyze(ctx: Context, candles_path: str, config_path: str | None, symbol: str, as_json: bool) -> None:
    """Run the enabled theories on the candles of a CSV file and print each result."""
    from .candles import CandleDataError, read_candles_csv
    from .engine import Pipeline, StartupError, limit_threads

    registry, config = load(ctx, config_path)
    limit_threads(config.engine.max_threads)
    try:
        candles = read_candles_csv(candles_path, symbol, config.engine.granularity)
        pipeline = Pipeline.build(config, registry, kinds=("theory",))
    except (CandleDataError, StartupError) as exc:
        fail(str(exc))
    if len(candles) == 0:
        fail(f"{candles_path}: no valid candles")
    results = pipeline.analyze(candles.tail(config.engine.lookback))
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{symbol}: {len(candles)} candles, last {candles.last_time:%Y-%m-%d %H:%M} UTC, close {candles.last_price:g}")
    for column in ("theory", "status", "label", "bias", "confidence", "metrics", "interpretation"):
        table.add_column(column, overflow="fold")
    for r in results:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items())
        table.add_row(
            r.theory, r.status, r.label, "-" if r.bias is None else f"{r.bias:+.3f}", f"{r.confidence:.2f}",
            metrics, r.interpretation if r.ok else (r.message or ""),
        )
    Console(width=160).print(table)


@cli.command()
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP + " Shows which plugins it enables.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def plugins(ctx: Context, config_path: str | None, as_json: bool) -> None:
    """List every discovered plugin: kind, name, distribution, version, position in the config, load errors."""
    from . import plugin_cache

    # Without a config the listing depends only on what is installed: served from a cache keyed on that.
    key = None if config_path else plugin_cache.fingerprint()
    rows = plugin_cache.read(key)
    if rows is None:
        rows = _plugin_rows(config_path)
        plugin_cache.write(key, rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "ENABLED", "ERROR")]
    for r in rows:
        state = f"#{r['position']}" if r["enabled"] and r["position"] else ("yes" if r["enabled"] else "-")
        table.append((r["kind"] or "?", r["name"], r["distribution"], r["version"], state, r["error"] or ""))
    click.echo(plain_table(table))


def _plugin_rows(config_path: str | None) -> list[dict[str, Any]]:
    from .registry import load_registry

    registry = load_registry()
    enabled: dict[str, list[str]] = {}
    if config_path:
        from .config import ConfigError, load_config

        try:
            enabled = load_config(config_path, registry).enabled
        except ConfigError as exc:
            # Still list the plugins; the config's problems are shown too.
            for problem in exc.problems:
                click.echo(f"config: {problem}", err=True)
            enabled = _enabled_from_raw(config_path)
    rows = []
    for component in registry.all():
        names = enabled.get(component.kind, [])
        rows.append({
            "kind": component.kind, "name": component.name, "plugin": component.source.plugin,
            "distribution": component.source.distribution, "version": component.version,
            "enabled": component.name in names,
            "position": names.index(component.name) + 1 if component.name in names else None, "error": None,
        })
    for error in registry.errors:
        names = enabled.get(error.kind or "", []) if error.kind else [n for v in enabled.values() for n in v]
        name = error.name or error.source.plugin
        rows.append({
            "kind": error.kind, "name": name, "plugin": error.source.plugin,
            "distribution": error.source.distribution, "version": error.source.version,
            "enabled": name in names, "position": None, "error": error.error,
        })
    order = {"feed": 0, "theory": 1, "formatter": 2, "synthesizer": 3, "sink": 4}
    rows.sort(key=lambda r: (order.get(r["kind"] or "", 9), r["position"] or 999, r["name"]))
    return rows


def _enabled_from_raw(config_path: str) -> dict[str, list[str]]:
    from .config import ConfigError, read_toml
    from .registry import KIND_SECTION

    try:
        raw = read_toml(Path(config_path))
    except ConfigError:
        return {}
    enabled: dict[str, list[str]] = {}
    for kind, section in KIND_SECTION.items():
        table = raw.get(section, {})
        if isinstance(table, dict):
            value = [table.get("use"), table.get("fallback")] if kind == "synthesizer" else table.get("enabled", [])
            enabled[kind] = [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
    return enabled


@cli.group()
def config() -> None:
    """Check or show a config file."""


@config.command("check")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.pass_obj
def config_check(ctx: Context, config_path: str) -> None:
    """Validate a config against the installed plugins; exit status 2 on any problem."""
    _, cfg = load(ctx, config_path)
    summary = ", ".join(f"{kind}: {' → '.join(names) or '-'}" for kind, names in cfg.enabled.items())
    click.echo(f"{config_path}: OK ({summary}; config hash {cfg.config_hash()})")


@config.command("show")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@click.pass_obj
def config_show(ctx: Context, config_path: str, as_json: bool) -> None:
    """Print the effective config (defaults filled in), secrets redacted."""
    from .config import redact

    _, cfg = load(ctx, config_path)
    data = redact(cfg.effective())
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(to_toml(data))


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the effective config (tables, arrays, scalars)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        return json.dumps(str(value))

    def table(prefix: str, values: dict[str, Any]) -> None:
        simple = {k: v for k, v in values.items() if v is not None and not isinstance(v, dict)}
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {scalar(v)}" for k, v in simple.items())
        lines.append("")
        for key, value in nested.items():
            table(f"{prefix}.{key}", value)

    for key, value in data.items():
        table(key, value)
    return "\n".join(lines).rstrip() + "\n"


# Commands that live in their own modules (each imports only click at module level).
from .commands import register_commands  # noqa: E402

register_commands(cli)


def main() -> None:
    cli(prog_name="v7")


if __name__ == "__main__":
    main()
