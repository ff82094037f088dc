"""`v7 signals`: the latest stored signals, newest first, readable in an 80-column terminal.

It reads through the sink's reader capability (`SignalReader.latest`, see `v7 stats` for
`--config`, `--sink`, `--db`), so it works with any sink that can read back. Each signal takes a
line of facts (bar time, symbol, direction, confidence, position as a % of capital, price,
synthesizer) and its reasoning, wrapped under it and cut after a few lines; `--verbose` adds the
theories' labels, how the position was sized and the fallback's reason. Text from feeds and LLMs is printed as text, never as terminal markup.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from .stats import DIRECTIONS, open_sink_reader, read_failed, reader_options, signal_query

if TYPE_CHECKING:  # pragma: no cover
    from ..reading import StoredSignal

REASONING_LINES = 3  # lines of reasoning per signal; --verbose shows it whole
COLOURS = {"BUY": "green", "SELL": "red", "HOLD": "yellow"}


def signal_fields(signal: "StoredSignal") -> dict[str, Any]:
    """One signal as `--json` prints it: what the table shows, plus every theory's label."""
    from ..timefmt import format_utc

    return {
        "id": signal.id, "bar_time": format_utc(signal.bar_time), "created_at": format_utc(signal.created_at),
        "symbol": signal.symbol, "granularity": signal.granularity, "direction": signal.direction,
        "confidence": signal.confidence, "position": signal.position, "sizing": signal.sizing,
        "price": signal.price, "synthesizer": signal.synthesizer,
        "fallback_reason": signal.fallback_reason, "reasoning": signal.reasoning,
        "theories": [
            {"theory": r.theory, "status": r.status, "label": r.label or None, "bias": r.bias, "confidence": r.confidence}
            for r in signal.theory_results
        ],
    }


def _direction(value: str | None) -> str | None:
    """`--direction`, any case, as stored; a clear usage error otherwise."""
    if value is None or value.upper() in DIRECTIONS:
        return value.upper() if value else None
    raise click.BadParameter(f"got {value!r}; expected one of {', '.join(DIRECTIONS)}")


def _price(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"


def _wrapped(text: str, width: int, lines: int | None) -> list[str]:
    """`text` folded to `width` (whitespace collapsed), cut to `lines` with an ellipsis."""
    import textwrap

    folded = textwrap.wrap(" ".join(text.split()), width=width, break_long_words=True) or ["-"]
    if lines is not None and len(folded) > lines:
        folded = folded[:lines]
        folded[-1] = folded[-1][: max(width - 1, 1)].rstrip() + "…"
    return folded


def _theories(signal: "StoredSignal") -> str:
    parts = []
    for result in signal.theory_results:
        parts.append(f"{result.theory} {result.label}" if result.status == "ok" and result.label else f"{result.theory} ({result.status})")
    return "; ".join(parts) or "-"


def render(signals: list["StoredSignal"], location: str, verbose: bool) -> None:
    """The terminal form: a heading line per signal, its reasoning indented below it."""
    from rich.console import Console
    from rich.text import Text

    from ..sizing.rule import position_text
    from ..timefmt import format_utc
    from .common import terminal_width

    console = Console(width=terminal_width(80), highlight=False, soft_wrap=False)
    console.print(Text(f"{len(signals)} latest signal(s) from {location}, newest first (bar times UTC, positions in % of capital)"))
    width = console.width - 4
    for signal in signals:
        head = Text()
        head.append(format_utc(signal.bar_time)[:16].replace("T", " "))
        head.append(f"  {signal.symbol:<9} ")
        head.append(f"{signal.direction:<4}", style=f"bold {COLOURS[signal.direction]}")
        head.append(f" {signal.confidence:4.2f} {position_text(signal.position):>6}  {_price(signal.price):>12}  {signal.synthesizer}")
        if signal.fallback_reason:
            head.append(" (fallback)", style="dim")
        head.truncate(console.width, overflow="ellipsis")
        console.print(head)
        for line in _wrapped(signal.reasoning, width, None if verbose else REASONING_LINES):
            console.print(Text(f"    {line}"))
        if verbose:
            for label, value in (("theories", _theories(signal)), ("sizing", signal.sizing), ("fallback", signal.fallback_reason)):
                if value:
                    for line in _wrapped(f"{label}: {value}", width, None):
                        console.print(Text(f"    {line}", style="dim"))


@click.command()
@reader_options
@click.option("--last", "last", type=click.IntRange(min=1), default=20, show_default=True, help="How many signals to show.")
@click.option("--direction", default=None, callback=lambda ctx, param, value: _direction(value), help="Only BUY, SELL or HOLD signals.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (a list, newest first) instead of text.")
@click.option("--verbose", "-v", is_flag=True, help="Show the whole reasoning, each theory's label and the fallback's reason.")
@click.pass_obj
def signals(ctx: Any, config_path: str | None, sink_name: str | None, db_path: str | None, hours: float | None,
            symbol: str | None, last: int, direction: str | None, as_json: bool, verbose: bool) -> None:
    """Show the latest stored signals: time, symbol, direction, confidence, position, price, synthesizer and reasoning."""
    opened = open_sink_reader(ctx, config_path, db_path, sink_name)
    query = signal_query(hours, symbol).model_copy(update={"direction": direction})
    try:
        with opened.reader as reader:
            found = reader.latest(query, last)
    except SystemExit:
        raise
    except Exception as exc:
        read_failed(opened, exc)
    if as_json:
        click.echo(json.dumps([signal_fields(s) for s in found], indent=2))
        return
    if not found:
        chosen = [f"{name} {value}" for name, value in (("symbol", symbol), ("direction", query.direction), ("last hours", hours)) if value]
        click.echo(f"{opened.location}: no signals " + (f"match ({', '.join(chosen)})." if chosen else "stored yet."))
        return
    render(found, opened.location, verbose)
