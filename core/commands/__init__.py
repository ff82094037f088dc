"""Larger `v7` subcommands, one module each; every module imports only click at module level."""

from __future__ import annotations

from importlib import import_module

import click

# module name → command objects it defines; add a line here when adding a command module.
COMMAND_MODULES: dict[str, list[str]] = {
    "stats": ["stats"],
    "export": ["export"],
    "backtest": ["backtest"],
}


def register_commands(group: click.Group) -> None:
    for module_name, names in COMMAND_MODULES.items():
        module = import_module(f"{__name__}.{module_name}")
        for name in names:
            group.add_command(getattr(module, name))
