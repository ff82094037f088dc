"""The hooks a V7 plugin implements: one per plugin kind, each handing the core a class.

Hooks only register; the core owns the registry, the order (the config's `enabled` lists)
and the error handling. `register` takes a subclass of the kind's base class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from .components import Feed, PromptFormatter, Sink, Synthesizer, Theory

PROJECT = "v7"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_feeds(register: "Callable[[type[Feed]], None]") -> None:
    """Register `Feed` subclasses that supply candles and/or market context."""


@hookspec
def register_theories(register: "Callable[[type[Theory]], None]") -> None:
    """Register `Theory` subclasses that turn candles into a `TheoryFinding`."""


@hookspec
def register_formatters(register: "Callable[[type[PromptFormatter]], None]") -> None:
    """Register `PromptFormatter` subclasses that build the LLM prompt from theory results."""


@hookspec
def register_synthesizers(register: "Callable[[type[Synthesizer]], None]") -> None:
    """Register `Synthesizer` subclasses that turn results and prompt into BUY / SELL / HOLD."""


@hookspec
def register_sinks(register: "Callable[[type[Sink]], None]") -> None:
    """Register `Sink` subclasses that store or forward signals."""


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add subcommands to `v7` with `@cli.command()` (as in llm and datasette); names must be new."""
