"""What every `v7` command shares: the context object, loading the config, failing cleanly.

Commands import this module, never `core.cli` (which imports the commands): no import cycle.
Only click is imported at module level, so `v7 --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime

CONFIG_HELP = "Path of the TOML config file."
BLOCK_ENV = "V7_BLOCK_PLUGINS"
"""Environment variable: comma-separated entry-point names never imported (like pytest's `-p no:NAME`)."""


class Context:
    """The global options, handed to every command as `click.pass_obj`."""

    def __init__(self, log_json: bool = False, log_level: str | None = None) -> None:
        self.log_json = log_json
        self.log_level = log_level

    def setup_logging(self, config: Any = None) -> None:
        from ..logs import configure_logging

        level = self.log_level or (config.logging.level if config is not None else "info")
        json_lines = self.log_json or (config.logging.json_lines if config is not None else False)
        configure_logging(level, json_lines)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `Error: message` on stderr and exit with `code` (2: bad input; 1: the work failed)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def blocked_plugins(raw_config: dict[str, Any] | None = None) -> set[str]:
    """Entry-point names to skip before import: `V7_BLOCK_PLUGINS` plus the config's `[plugins] blocked`."""
    names = {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}
    table = (raw_config or {}).get("plugins")
    if isinstance(table, dict) and isinstance(table.get("blocked"), list):
        names.update(n for n in table["blocked"] if isinstance(n, str))
    return names


def raw_config(config_path: str | None) -> dict[str, Any]:
    """The config file as plain TOML data ({} without a file or when it cannot be read: validation reports that)."""
    if config_path is None:
        return {}
    from ..config import ConfigError, read_toml

    try:
        return read_toml(Path(config_path))
    except ConfigError:
        return {}


def load(ctx: Context, config_path: str | None) -> tuple[Any, Any]:
    """Registry and validated config, or a clean exit with every problem listed."""
    from ..config import ConfigError, load_config
    from ..registry import load_registry

    registry = load_registry(blocked=blocked_plugins(raw_config(config_path)))
    try:
        config = load_config(config_path, registry)
    except ConfigError as exc:
        ctx.setup_logging()
        report_load_errors(registry)
        click.echo("Invalid configuration:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(2)
    ctx.setup_logging(config)
    report_load_errors(registry)
    return registry, config


def report_load_errors(registry: Any) -> None:
    from ..logs import get_logger

    for error in registry.errors:
        get_logger(plugin=error.name or error.source.plugin, distribution=error.source.distribution).warning(
            "plugin failed to load", error=error.error
        )


def parse_symbols(value: str | None, option: str = "--symbols") -> list[str] | None:
    """`BTC-USD,ETH-USD` as a list (None when not given); exits naming the option on bad or repeated symbols."""
    if value is None:
        return None
    from ..config_sections import SYMBOL_PATTERN

    chosen = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in chosen if not SYMBOL_PATTERN.match(s)]
    if bad or not chosen or len(set(chosen)) != len(chosen):
        fail(f"{option}: got {value!r}; expected distinct comma-separated BASE-QUOTE symbols such as BTC-USD,ETH-USD")
    return chosen


def parse_moment(value: str | None, option: str) -> "datetime | None":
    """`--start` / `--end`: an ISO date or time (UTC unless it says otherwise); None when not given."""
    if value is None:
        return None
    from ..timefmt import parse_utc

    try:
        return parse_utc(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def plain_table(rows: list[tuple[str, ...]]) -> str:
    """Aligned columns without rich, which costs more to import than `v7 plugins` may take."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def terminal_width(default: int = 100) -> int:
    """Columns of the terminal (`COLUMNS` wins); `default` when output is not a terminal. Tables fold to fit."""
    import shutil

    return max(40, shutil.get_terminal_size((default, 24)).columns)


def warn_config(config: Any) -> None:
    """Print what `config_warnings` finds, one `Warning:` line each (`v7 config check` and `v7 run`)."""
    from ..config import config_warnings

    for warning in config_warnings(config):
        click.echo(f"Warning: {warning}", err=True)
