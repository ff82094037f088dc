"""`v7 plugins`: every discovered plugin with its kind, distribution, version, place in the config and load error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import CONFIG_HELP, Context, blocked_plugins, plain_table, raw_config


@click.command()
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP + " Shows which plugins it enables.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def plugins(ctx: Context, config_path: str | None, as_json: bool) -> None:
    """List every discovered plugin: kind, name, distribution, version, position in the config, load errors."""
    from .. import plugin_cache

    # Without a config the listing depends only on what is installed: served from a cache keyed on that.
    # Blocking changes what is imported, so a blocked listing is never served from the cache.
    key = None if config_path or blocked_plugins() else plugin_cache.fingerprint()
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
    from ..registry import load_registry

    registry = load_registry(blocked=blocked_plugins(raw_config(config_path)))
    enabled: dict[str, list[str]] = {}
    if config_path:
        from ..config import ConfigError, load_config

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
    for source in registry.blocked:
        rows.append({
            "kind": None, "name": source.plugin, "plugin": source.plugin, "distribution": source.distribution,
            "version": source.version, "enabled": False, "position": None, "blocked": True,
            "error": "blocked (not imported): named in V7_BLOCK_PLUGINS or [plugins] blocked",
        })
    order = {"feed": 0, "theory": 1, "formatter": 2, "synthesizer": 3, "sink": 4}
    rows.sort(key=lambda r: (order.get(r["kind"] or "", 9), r["position"] or 999, r["name"]))
    return rows


def _enabled_from_raw(config_path: str) -> dict[str, list[str]]:
    from ..config import ConfigError, read_toml
    from ..registry import KIND_SECTION

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
