"""`v7 export`: the stored signals as one flat table for pandas, spreadsheets or a data lake.

One row per signal; each theory's result is flattened into columns named `<theory>.<field>`
(`status`, `label`, `bias`, `confidence`, `elapsed_ms`, `message`) and `<theory>.<metric>` for
each metric (a metric named like a field becomes `<theory>.metric.<name>`). Stage timings are
`timings.<stage>` (`timings.sink` is the sink's own write time, `StoredSignal.sink_ms`, when it keeps one).
`position` is the suggested signed fraction of capital and `sizing` how it was sized (docs/sizing.md).

It reads through the sink's reader capability (see `v7 stats`: `--config`, `--sink`, `--db`), from
`StoredSignal` objects, so any sink that can read back can be exported.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from .stats import STAGES, open_sink_reader, read_failed, reader_options, signal_query

if TYPE_CHECKING:  # pragma: no cover
    from ..reading import SignalQuery, SignalReader, StoredSignal

SIGNAL_COLUMNS = (
    "id", "run_id", "symbol", "granularity", "bar_time", "created_at", "stored_at", "direction", "confidence", "position", "sizing",
    "price", "synthesizer", "fallback_reason", "attempts", "reasoning", "config_hash", "prompt_tokens", "completion_tokens",
    "cache_hit_tokens", "cache_miss_tokens", "cost", "context", "context_error",
)
RESULT_FIELDS = ("status", "label", "bias", "confidence", "elapsed_ms", "message")
TIME_COLUMNS = ("bar_time", "created_at", "stored_at")


def signal_row(signal: "StoredSignal", with_prompt: bool = False) -> dict[str, Any]:
    """One stored signal's own columns and stage timings (times as UTC text)."""
    from ..timefmt import format_utc

    usage = signal.usage
    row: dict[str, Any] = {
        "id": signal.id, "run_id": signal.run_id, "symbol": signal.symbol, "granularity": signal.granularity,
        "bar_time": format_utc(signal.bar_time), "created_at": format_utc(signal.created_at),
        "stored_at": format_utc(signal.stored_at) if signal.stored_at is not None else None,
        "direction": signal.direction, "confidence": signal.confidence, "position": signal.position, "sizing": signal.sizing,
        "price": signal.price,
        "synthesizer": signal.synthesizer, "fallback_reason": signal.fallback_reason, "attempts": signal.attempts,
        "reasoning": signal.reasoning, "config_hash": signal.config_hash,
        "prompt_tokens": usage.prompt_tokens if usage else None, "completion_tokens": usage.completion_tokens if usage else None,
        "cache_hit_tokens": usage.cache_hit_tokens if usage else None, "cache_miss_tokens": usage.cache_miss_tokens if usage else None,
        "cost": usage.cost if usage else None,
        "context": signal.context.model_dump_json() if signal.context is not None else None,
        "context_error": signal.context_error,
    }
    if with_prompt:
        row["prompt"] = signal.prompt
    for stage in STAGES:
        row[f"timings.{stage}"] = signal.sink_ms if stage == "sink" else signal.timings_ms.get(stage)
    return row


def signal_rows(reader: "SignalReader", hours: float | None = None, symbol: str | None = None, with_prompt: bool = False,
                query: "SignalQuery | None" = None) -> tuple[list[str], list[dict[str, Any]]]:
    """The flattened rows, oldest signal first, and the column order (signal, timings, then theories in config order).

    `query` replaces `hours` / `symbol` when given."""
    rows: list[dict[str, Any]] = []
    metric_columns: dict[str, dict[str, None]] = {}
    theory_order: dict[str, tuple[int, int]] = {}
    for signal in reader.signals(query if query is not None else signal_query(hours, symbol), with_prompt=with_prompt):
        row = signal_row(signal, with_prompt)
        for position, result in enumerate(signal.theory_results):
            theory = result.theory
            theory_order.setdefault(theory, (position, len(theory_order)))
            for field in RESULT_FIELDS:
                row[f"{theory}.{field}"] = getattr(result, field)
            for metric, value in result.metrics.items():
                column = f"{theory}.metric.{metric}" if metric in RESULT_FIELDS else f"{theory}.{metric}"
                row[column] = value
                metric_columns.setdefault(theory, {})[column] = None
        rows.append(row)
    ordered_theories = sorted(theory_order, key=lambda name: theory_order[name])
    header = list(SIGNAL_COLUMNS) + (["prompt"] if with_prompt else []) + [f"timings.{stage}" for stage in STAGES]
    for theory in ordered_theories:
        header += [f"{theory}.{field}" for field in RESULT_FIELDS]
        header += list(metric_columns.get(theory, {}))
    return header, rows


def signals_frame(reader: "SignalReader", hours: float | None = None, symbol: str | None = None, with_prompt: bool = False,
                  query: "SignalQuery | None" = None) -> Any:
    """The export as a pandas DataFrame, times as UTC timestamps: `signals_frame(SqliteSink.reader_at("v7.db"))`."""
    import pandas as pd

    header, rows = signal_rows(reader, hours, symbol, with_prompt, query)
    frame = pd.DataFrame.from_records(rows, columns=header)
    for column in TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


# File formats of the export (the `jsonl` format is not the `jsonl` sink).
EXPORT_FORMATS = ("csv", "parquet", "jsonl")


@click.command()
@reader_options
@click.option("--format", "fmt", type=click.Choice(list(EXPORT_FORMATS)), default="csv", show_default=True, help="Output format.")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False, writable=True), help="Output file (default: stdout; parquet needs a file).")
@click.option("--with-prompt", is_flag=True, help="Add the LLM prompt of each signal as a column.")
@click.pass_obj
def export(ctx: Any, config_path: str | None, sink_name: str | None, db_path: str | None, hours: float | None,
           symbol: str | None, fmt: str, out: str | None, with_prompt: bool) -> None:
    """Export signals with their theory results flattened, one row per signal (csv, parquet or jsonl)."""
    from .common import fail

    if fmt == "parquet" and out is None:
        fail("--format parquet writes a binary file: give --out FILE")
    opened = open_sink_reader(ctx, config_path, db_path, sink_name)
    try:
        with opened.reader as reader:
            frame = signals_frame(reader, hours, symbol, with_prompt)
    except SystemExit:
        raise
    except Exception as exc:
        read_failed(opened, exc)
    if out is not None:
        from ..files import create_private

        try:
            create_private(out)  # signals, reasoning and prompts: owner only
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}")
    target: Any = out if out is not None else sys.stdout
    try:
        if fmt == "csv":
            frame.to_csv(target, index=False)
        elif fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                fail("--format parquet needs pyarrow: pip install pyarrow")
            frame.to_parquet(target, index=False)
        else:  # JSON lines
            frame.to_json(target, orient="records", lines=True, date_format="iso")
    except OSError as exc:
        fail(f"cannot write {out or 'stdout'}: {exc.strerror or exc}")
    if out is not None:
        click.echo(f"exported {len(frame)} signal(s), {len(frame.columns)} columns, to {out}", err=True)
