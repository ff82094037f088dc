"""`v7 stats`: what a sink has stored — direction mix against the HOLD target, symbols,
synthesizers and fallbacks, theory failure rates, per-stage latency, LLM tokens and cost.

It reads through the sink's reader capability (`Sink.reader()`, `Sink.reader_at(LOCATION)`), so
it works with any sink that can read back, and never names one: `--sink NAME` chooses, else the
first enabled sink of the config that supports `reader`. The sqlite sink's reader is read-only,
so `v7 stats` can run while `v7 run` writes (WAL).
`--hours N` keeps signals *created* in the last N hours (created_at, the wall-clock time the
engine made them), not by bar_time: replayed history has old bars but fresh signals.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pragma: no cover
    from ..reading import SignalQuery, SignalReader

STAGES = ("feed", "theories", "formatters", "synthesizer", "sink")
DIRECTIONS = ("BUY", "SELL", "HOLD")


def reader_options(command: Any) -> Any:
    """The options `v7 stats` and `v7 export` share: which sink's store to read and which signals to take."""
    for option in reversed([
        click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
                     help="Config whose sink names the store (default sink: the first enabled one that can be read back)."),
        click.option("--sink", "sink_name", default=None, help="Read this sink's store (default: the first enabled sink that can be read back)."),
        click.option("--db", "db_path", default=None,
                     help="The store's location (a database or file the sink opens with reader_at), instead of the config's."),
        click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None, help="Only signals created in the last N hours (by created_at)."),
        click.option("--symbol", default=None, help="Only this symbol, e.g. BTC-USD."),
    ]):
        command = option(command)
    return command


class OpenedReader:
    """A reader and what chose it: the sink's name and the config's `[stats]` settings."""

    def __init__(self, reader: "SignalReader", sink: str, stats_config: Any) -> None:
        self.reader, self.sink, self.stats_config = reader, sink, stats_config

    @property
    def location(self) -> str:
        return self.reader.location or f"sink {self.sink!r}"


def open_sink_reader(ctx: Any, config_path: str | None, db_path: str | None, sink_name: str | None) -> OpenedReader:
    """The reader `--config` / `--sink` / `--db` name; exits with a clear message when there is none."""
    from ..components import NotSupported
    from .common import fail, load

    if config_path is None and db_path is None:
        fail("give --config (its enabled sink names the store) or --db LOCATION (with --sink NAME for a sink other than the default's)")
    registry, config = load(ctx, config_path)  # without --config: the default config's sinks
    where = config_path or "the default config"
    if sink_name is not None:
        entry = registry.get("sink", sink_name)
        if entry is None:
            installed = ", ".join(sorted(registry.components.get("sink", {}))) or "none"
            fail(f"--sink {sink_name}: no sink of that name is installed (installed sinks: {installed})")
        if not entry.cls.supports("reader"):
            fail(f"sink {sink_name!r} cannot be read back (it does not implement reader); `v7 stats` and `v7 export` need one that does")
    else:
        enabled = list(config.enabled.get("sink", []))
        readable = [n for n in enabled if registry.get("sink", n) is not None and registry.get("sink", n).cls.supports("reader")]
        if not readable:
            fail(f"{where}: none of the enabled sinks ({', '.join(enabled) or 'none'}) can be read back; give --sink NAME")
        sink_name = readable[0]
        entry = registry.get("sink", sink_name)
    cls = entry.cls
    try:
        if db_path is not None:
            reader = cls.reader_at(db_path)
        else:
            sink_config = config.plugin_config("sink", sink_name)
            reader = cls(sink_config if sink_config is not None else cls.Config()).reader()
    except NotSupported as exc:
        fail(f"{exc}" + ("; give --config instead of --db" if db_path is not None else ""))
    except Exception as exc:
        fail(f"sink {sink_name!r} cannot open its store{' at ' + db_path if db_path else ''}: {describe_error(exc)}")
    return OpenedReader(reader, sink_name, config.stats)


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    return text if text and isinstance(exc, (RuntimeError, OSError, ValueError)) else f"{type(exc).__name__}: {exc}"


def read_failed(opened: OpenedReader, exc: BaseException) -> None:
    """Exit naming the sink and where it reads, whatever the reader raised."""
    from ..components import NotSupported
    from .common import fail

    if isinstance(exc, NotSupported):
        fail(str(exc))
    detail = describe_error(exc)
    location = opened.reader.location
    fail(f"sink {opened.sink!r} cannot read {location}: {detail}" if location and location not in detail else f"sink {opened.sink!r}: {detail}")


def signal_query(hours: float | None, symbol: str | None) -> "SignalQuery":
    """`--hours` / `--symbol` as a query; the lower bound at second precision, as times are stored."""
    from ..reading import SignalQuery

    since = None
    if hours is not None:
        since = (datetime.now(timezone.utc) - timedelta(hours=hours)).replace(microsecond=0)
    return SignalQuery(created_since=since, symbol=symbol or None)


@click.command()
@reader_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
@click.pass_obj
def stats(ctx: Any, config_path: str | None, sink_name: str | None, db_path: str | None, hours: float | None,
          symbol: str | None, as_json: bool) -> None:
    """Summarize the stored signals: directions vs. the HOLD target, symbols, synthesizers, theories, latency, LLM cost."""
    opened = open_sink_reader(ctx, config_path, db_path, sink_name)
    stats_config = opened.stats_config
    try:
        with opened.reader as reader:
            data = reader.summary(signal_query(hours, symbol), (stats_config.hold_target_min, stats_config.hold_target_max))
    except SystemExit:
        raise
    except Exception as exc:
        read_failed(opened, exc)
    data["filter"]["hours"] = hours
    data = {"database": opened.location, "sink": opened.sink, **data}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        render(data)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(data: dict[str, Any]) -> None:
    """The terminal form of `SignalReader.summary()`'s result, folded to the terminal's width."""
    from rich.console import Console
    from rich.table import Table

    from .common import terminal_width

    console = Console(width=terminal_width(), highlight=False)
    window = []
    if data["filter"]["hours"] is not None:
        window.append(f"created in the last {data['filter']['hours']:g} h")
    if data["filter"]["symbol"]:
        window.append(data["filter"]["symbol"])
    about = f"sink {data['sink']}" + (f", schema v{data['schema_version']}" if data.get("schema_version") is not None else "")
    console.print(f"[bold]{data['database']}[/] ({about}){': ' + ', '.join(window) if window else ''}")
    if not data["signals"]:
        console.print("No signals stored" + (" in this window." if window else " yet."))
        return
    console.print(f"{data['signals']} signals, created {data['created_at']['first']} → {data['created_at']['last']}")
    console.print(f"bars {data['bar_time']['first']} → {data['bar_time']['last']}")

    table = Table(title="Directions", title_justify="left")
    for column in ("direction", "count", "share", "mean confidence"):
        table.add_column(column, justify="left" if column == "direction" else "right")
    for direction, row in data["directions"].items():
        table.add_row(direction, str(row["count"]), _pct(row["share"]), _num(row["mean_confidence"], 3))
    console.print(table)
    hold = data["hold"]
    console.print(f"HOLD share {_pct(hold['share'])}, target {_pct(hold['target_min'])}–{_pct(hold['target_max'])}: [bold]{hold['status']}[/]")

    table = Table(title="Symbols", title_justify="left")
    for column in ("symbol", "signals", "BUY", "SELL", "HOLD", "HOLD share", "mean confidence", "last bar", "last"):
        table.add_column(column, justify="left" if column in ("symbol", "last bar", "last") else "right", overflow="fold")
    for row in data["symbols"]:
        table.add_row(
            row["symbol"], str(row["signals"]), str(row["BUY"]), str(row["SELL"]), str(row["HOLD"]), _pct(row["hold_share"]),
            _num(row["mean_confidence"], 3), row["last_bar_time"], row["last_direction"] or "-",
        )
    console.print(table)

    table = Table(title=f"Synthesizers ({data['fallbacks']['signals']} fallback signals, {_pct(data['fallbacks']['share'])})", title_justify="left")
    for column in ("synthesizer", "signals", "share", "as fallback", "mean attempts", "fallback reasons"):
        table.add_column(column, justify="left" if column in ("synthesizer", "fallback reasons") else "right", overflow="fold")
    for row in data["synthesizers"]:
        reasons = "; ".join(f"{r['count']}× {r['reason']}" for r in row["fallback_reasons"]) or "-"
        table.add_row(row["synthesizer"], str(row["signals"]), _pct(row["share"]), str(row["fallbacks"]), _num(row["mean_attempts"]), reasons)
    console.print(table)

    table = Table(title="Theories", title_justify="left")
    # Counts and the last error take room an 80-column terminal does not have: rates stay, errors go below.
    wide = console.width >= 110
    columns = ("theory", "results", "ok", "insuff.", "error", "error %", "insuff. %", "p50 ms", "p99 ms") if wide else (
        "theory", "results", "error %", "insuff. %", "p50 ms", "p99 ms")
    for column in (*columns, "last error") if wide else columns:
        if column == "last error":
            table.add_column(column, overflow="fold", min_width=12)
        else:
            table.add_column(column, justify="left" if column == "theory" else "right", overflow="fold")
    for row in data["theories"]:
        values = {
            "theory": row["theory"], "results": str(row["results"]), "ok": str(row["ok"]), "insuff.": str(row["insufficient_data"]),
            "error": str(row["error"]), "error %": _pct(row["error_rate"]), "insuff. %": _pct(row["insufficient_data_rate"]),
            "p50 ms": _num(row["p50_ms"]), "p99 ms": _num(row["p99_ms"]), "last error": row["last_error"] or "-",
        }
        table.add_row(*(values[c] for c in ((*columns, "last error") if wide else columns)))
    console.print(table)
    if not wide:
        for row in data["theories"]:
            if row["last_error"]:
                console.print(f"last error of {row['theory']}: {row['last_error']}")

    table = Table(title="Latency per stage (ms)", title_justify="left")
    for column in ("stage", "signals", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, row in data["latency_ms"].items():
        table.add_row(stage, str(row["count"]), _num(row["p50"]), _num(row["p90"]), _num(row["p99"]), _num(row["max"]))
    console.print(table)

    llm = data["llm"]
    if llm["signals_with_usage"]:
        console.print(
            f"LLM: {llm['signals_with_usage']} signals with usage; {llm['prompt_tokens']:,} prompt + "
            f"{llm['completion_tokens']:,} completion tokens; cache hits {_pct(llm['cache_hit_ratio'])} of prompt tokens"
        )
        console.print(f"LLM cost: ${llm['cost']:.4f} (${llm['cost_per_signal']:.5f} per signal)")
    else:
        console.print("LLM: no token usage recorded (no LLM synthesizer ran)")
    storage = data["storage"]
    console.print(f"Runs: {storage['runs']}, of which {storage['runs_without_stop']} without a recorded stop (running or killed)")
    console.print(f"Spool: {storage['spool_waiting']} signal(s) waiting; {storage['stored_late']} stored more than 60 s after creation")
