"""`v7 config check` / `v7 config show`: validate a config, or print it as it will run with secrets redacted."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import CONFIG_HELP, Context, fail, load, warn_config


@click.group()
def config() -> None:
    """Check or show a config file."""


@config.command("check")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.pass_obj
def config_check(ctx: Context, config_path: str) -> None:
    """Validate a config against the installed plugins; exit status 2 on any problem."""
    registry, cfg = load(ctx, config_path)
    warn_config(cfg)
    from ..engine import Pipeline, StartupError

    try:
        feeds = Pipeline.build(cfg, registry, kinds=("feed",))
    except StartupError as exc:
        fail(str(exc))
    try:
        problems = feeds.check_symbols()
    finally:
        feeds.close()
    if problems:
        fail(f"{config_path}: the feeds cannot serve the configured symbols:\n  - " + "\n  - ".join(problems))
    summary = ", ".join(f"{kind}: {' → '.join(names) or '-'}" for kind, names in cfg.enabled.items())
    click.echo(f"{config_path}: OK ({summary}; config hash {cfg.config_hash()})")


@config.command("show")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@click.pass_obj
def config_show(ctx: Context, config_path: str, as_json: bool) -> None:
    """Print the effective config (defaults filled in), secrets redacted."""
    from ..config import redact

    _, cfg = load(ctx, config_path)
    data = redact(cfg.effective(shown=True))
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
