"""The `v7` subcommands, one module each, and the commands plugins add through `register_commands`.

Every command module imports only click at module level, so `v7 --help` stays fast.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

# module name → the command objects it defines; add a line here when adding a command module.
COMMAND_MODULES: dict[str, list[str]] = {
    "run": ["run"],
    "analyze": ["analyze"],
    "plugins": ["plugins"],
    "config": ["config"],
    "stats": ["stats"],
    "export": ["export"],
    "signals": ["signals"],
    "backtest": ["backtest"],
    "train": ["train"],
    "dashboard": ["dashboard"],
}


def register_builtin_commands(group: click.Group) -> None:
    for module_name, names in COMMAND_MODULES.items():
        module = import_module(f"{__name__}.{module_name}")
        for name in names:
            group.add_command(getattr(module, name))


def _config_argument(argv: list[str]) -> str | None:
    """The `--config FILE` of the command line, read before click parses it: its `[plugins] blocked` applies to commands too."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def register_plugin_commands(group: click.Group) -> None:
    """Let installed plugins add commands (the `register_commands(cli)` hook), each in its own try.

    Only plugins of other distributions are imported here: the built-ins add no commands, and
    importing them would cost `v7 --help` its speed. A blocked plugin is never imported. A plugin
    whose command clashes with an existing name is refused, never silently replaces it.
    """
    import importlib.metadata

    import pluggy

    from .. import hookspecs
    from .common import blocked_plugins, raw_config

    blocked = blocked_plugins(raw_config(_config_argument(sys.argv[1:])))
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        distribution = getattr(getattr(ep, "dist", None), "name", None)
        if distribution == "v7" or ep.name in blocked or manager.has_plugin(ep.name):
            continue
        try:
            manager.register(ep.load(), name=ep.name)
        except BaseException as exc:  # reported by `v7 plugins`; a broken plugin must not break the CLI
            if isinstance(exc, KeyboardInterrupt):
                raise
            continue
    for impl in manager.hook.register_commands.get_hookimpls():
        before = set(group.commands)
        staging = click.Group()
        try:
            impl.function(cli=staging)
        except Exception as exc:
            click.echo(f"Warning: plugin {impl.plugin_name!r} failed to register its commands: {type(exc).__name__}: {exc}", err=True)
            continue
        for name, command in staging.commands.items():
            if name in before:
                click.echo(f"Warning: plugin {impl.plugin_name!r} tried to add command {name!r}, which already exists; ignored", err=True)
                continue
            group.add_command(command, name)


__all__ = ["COMMAND_MODULES", "register_builtin_commands", "register_plugin_commands"]
