"""The `v7` command. Heavy modules are imported inside commands so `v7 --help` stays instant."""

from __future__ import annotations

import click

from .commands import register_builtin_commands, register_plugin_commands
from .commands.common import Context


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



register_builtin_commands(cli)


def main() -> None:
    register_plugin_commands(cli)
    cli(prog_name="v7")


if __name__ == "__main__":
    main()
