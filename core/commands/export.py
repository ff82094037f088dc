"""`v7 export`: the stored signals as one flat table for pandas, spreadsheets or a data lake.

One row per signal; each theory's result is flattened into columns named `<theory>.<field>`
(`status`, `label`, `bias`, `confidence`, `elapsed_ms`, `message`) and `<theory>.<metric>` for
each metric (a metric named like a field becomes `<theory>.metric.<name>`). Stage timings are
`timings.<stage>` (`timings.sink` is the sqlite sink's own write time).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .stats import STAGES, database_options, open_database, resolve_database, signal_filter

SIGNAL_COLUMNS = (
    "id", "run_id", "symbol", "granularity", "bar_time", "created_at", "stored_at", "direction", "confidence", "price",
    "synthesizer", "fallback_reason", "attempts", "reasoning", "config_hash", "prompt_tokens", "completion_tokens",
    "cache_hit_tokens", "cache_miss_tokens", "cost", "context", "context_error",
)
RESULT_FIELDS = ("status", "label", "bias", "confidence", "elapsed_ms", "message")
TIME_COLUMNS = ("bar_time", "created_at", "stored_at")


def signal_rows(connection: Any, hours: float | None = None, symbol: str | None = None, with_prompt: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """The flattened rows, oldest signal first, and the column order (signal, timings, then theories in config order)."""
    from v7.plugins.sinks.sqlite import columns

    where, params, _ = signal_filter(hours, symbol)
    available = set(columns(connection, "signals"))
    wanted = [c for c in SIGNAL_COLUMNS if c in available] + (["prompt"] if with_prompt else [])
    selected = ", ".join(f"s.{c}" for c in wanted)
    sink_ms = "s.sink_ms" if "sink_ms" in available else "NULL"
    rows: dict[int, dict[str, Any]] = {}
    for record in connection.execute(f"SELECT {selected}, s.timings, {sink_ms} FROM signals s WHERE {where} ORDER BY s.id", params):
        row = {c: record[i] for i, c in enumerate(wanted)}
        timings = json.loads(record[len(wanted)] or "{}")
        for stage in STAGES:
            row[f"timings.{stage}"] = timings.get(stage) if stage != "sink" else record[len(wanted) + 1]
        rows[row["id"]] = row
    for column in SIGNAL_COLUMNS:  # an old schema still yields every column
        for row in rows.values():
            row.setdefault(column, None)

    metric_columns: dict[str, dict[str, None]] = {}
    theory_order: dict[str, tuple[int, int]] = {}
    for signal_id, position, theory, status, label, bias, confidence, elapsed_ms, message, metrics in connection.execute(
        f"""SELECT t.signal_id, t.position, t.theory, t.status, t.label, t.bias, t.confidence, t.elapsed_ms, t.message, t.metrics
            FROM theory_results t JOIN signals s ON s.id = t.signal_id WHERE {where} ORDER BY t.signal_id, t.position""",
        params,
    ):
        theory_order.setdefault(theory, (position, len(theory_order)))
        row = rows[signal_id]
        values = {"status": status, "label": label, "bias": bias, "confidence": confidence, "elapsed_ms": elapsed_ms, "message": message}
        for field, value in values.items():
            row[f"{theory}.{field}"] = value
        for metric, value in json.loads(metrics or "{}").items():
            column = f"{theory}.metric.{metric}" if metric in RESULT_FIELDS else f"{theory}.{metric}"
            row[column] = value
            metric_columns.setdefault(theory, {})[column] = None
    ordered_theories = sorted(theory_order, key=lambda name: theory_order[name])
    header = list(SIGNAL_COLUMNS) + (["prompt"] if with_prompt else []) + [f"timings.{stage}" for stage in STAGES]
    for theory in ordered_theories:
        header += [f"{theory}.{field}" for field in RESULT_FIELDS]
        header += list(metric_columns.get(theory, {}))
    return header, list(rows.values())


def signals_frame(connection: Any, hours: float | None = None, symbol: str | None = None, with_prompt: bool = False) -> Any:
    """The export as a pandas DataFrame, times as UTC timestamps: `signals_frame(open_reader("v7.db"))`."""
    import pandas as pd

    header, rows = signal_rows(connection, hours, symbol, with_prompt)
    frame = pd.DataFrame.from_records(rows, columns=header)
    for column in TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


@click.command()
@database_options
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "jsonl"]), default="csv", show_default=True, help="Output format.")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False, writable=True), help="Output file (default: stdout; parquet needs a file).")
@click.option("--with-prompt", is_flag=True, help="Add the LLM prompt of each signal as a column.")
@click.pass_obj
def export(ctx: Any, config_path: str | None, db_path: str | None, hours: float | None, symbol: str | None,
           fmt: str, out: str | None, with_prompt: bool) -> None:
    """Export signals with their theory results flattened, one row per signal (csv, parquet or jsonl)."""
    from .common import fail

    if fmt == "parquet" and out is None:
        fail("--format parquet writes a binary file: give --out FILE")
    path, _ = resolve_database(ctx, config_path, db_path)
    connection = open_database(path)
    try:
        connection.execute("BEGIN")  # one snapshot: signals and their results agree while `v7 run` writes
        frame = signals_frame(connection, hours, symbol, with_prompt)
    finally:
        connection.close()
    target: Any = out if out is not None else sys.stdout
    try:
        if fmt == "csv":
            frame.to_csv(target, index=False)
        elif fmt == "jsonl":
            frame.to_json(target, orient="records", lines=True, date_format="iso")
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                fail("--format parquet needs pyarrow: pip install pyarrow")
            frame.to_parquet(target, index=False)
    except OSError as exc:
        fail(f"cannot write {out or 'stdout'}: {exc.strerror or exc}")
    if out is not None:
        click.echo(f"exported {len(frame)} signal(s), {len(frame.columns)} columns, to {out}", err=True)
