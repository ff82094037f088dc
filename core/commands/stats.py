"""`v7 stats`: what the sqlite sink has stored — direction mix against the HOLD target, symbols,
synthesizers and fallbacks, theory failure rates, per-stage latency, LLM tokens and cost.

It reads through a read-only connection, so it can run while `v7 run` writes (WAL).
`--hours N` keeps signals *created* in the last N hours (created_at, the wall-clock time the
engine made them), not by bar_time: replayed history has old bars but fresh signals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

STAGES = ("feed", "theories", "formatters", "synthesizer", "sink")
DIRECTIONS = ("BUY", "SELL", "HOLD")


def database_options(command: Any) -> Any:
    """The options `v7 stats` and `v7 export` share: where the database is and which signals to take."""
    for option in reversed([
        click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False), help="Config whose [sinks.sqlite] path names the database."),
        click.option("--db", "db_path", default=None, type=click.Path(dir_okay=False), help="Database file (instead of --config)."),
        click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None, help="Only signals created in the last N hours (by created_at)."),
        click.option("--symbol", default=None, help="Only this symbol, e.g. BTC-USD."),
    ]):
        command = option(command)
    return command


def resolve_database(ctx: Any, config_path: str | None, db_path: str | None) -> tuple[Path, Any]:
    """The database file and the `[stats]` settings, from --db or the config's sqlite sink table."""
    from .common import fail, load
    from ..config import StatsConfig

    if config_path is None and db_path is None:
        fail("give --config (its [sinks.sqlite] path names the database) or --db")
    stats_config = StatsConfig()
    if config_path is not None:
        _, config = load(ctx, config_path)
        stats_config = config.stats
        if db_path is None:
            sqlite_config = config.plugin_config("sink", "sqlite")
            if sqlite_config is None:
                fail(f"{config_path}: the sqlite sink is not enabled and has no [sinks.sqlite] table; give --db")
            db_path = str(sqlite_config.path)
    else:
        ctx.setup_logging()
    return Path(db_path), stats_config


def open_database(path: Path) -> Any:
    from v7.plugins.sinks.sqlite import SqliteSinkError, open_reader

    from .common import fail

    try:
        return open_reader(path)
    except SqliteSinkError as exc:
        fail(str(exc))
    except Exception as exc:  # sqlite3.Error: a corrupt or unreadable file
        fail(f"cannot read {path.resolve()}: {type(exc).__name__}: {exc}")


def signal_filter(hours: float | None, symbol: str | None, alias: str = "s") -> tuple[str, list[Any], str | None]:
    """SQL WHERE clause (always valid), its parameters, and the created_at lower bound used."""
    from datetime import datetime, timedelta, timezone

    clauses, params, since = ["1 = 1"], [], None
    if hours is not None:
        since = (datetime.now(timezone.utc) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        clauses.append(f"{alias}.created_at >= ?")
        params.append(since)
    if symbol:
        clauses.append(f"{alias}.symbol = ?")
        params.append(symbol)
    return " AND ".join(clauses), params, since


def percentile(ordered: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default) on sorted values."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def compute_stats(connection: Any, hours: float | None = None, symbol: str | None = None,
                  hold_target: tuple[float, float] = (0.4, 0.7), spool_path: Path | None = None) -> dict[str, Any]:
    """Every figure `v7 stats` shows, as plain data (the `--json` output)."""
    from v7.plugins.sinks.sqlite import columns, schema_version

    where, params, since = signal_filter(hours, symbol)
    signal_columns = set(columns(connection, "signals"))
    sink_ms = "s.sink_ms" if "sink_ms" in signal_columns else "NULL"
    stored_at = "s.stored_at" if "stored_at" in signal_columns else "NULL"

    def rows(sql: str, extra: list[Any] | None = None) -> list[Any]:
        return connection.execute(sql, [*params, *(extra or [])]).fetchall()

    total, first_created, last_created, first_bar, last_bar = rows(
        f"SELECT count(*), min(created_at), max(created_at), min(bar_time), max(bar_time) FROM signals s WHERE {where}"
    )[0]
    by_direction = {r[0]: (r[1], r[2]) for r in rows(f"SELECT direction, count(*), avg(confidence) FROM signals s WHERE {where} GROUP BY direction")}
    directions = {
        d: {"count": by_direction.get(d, (0, None))[0], "share": _share(by_direction.get(d, (0, None))[0], total),
            "mean_confidence": by_direction.get(d, (0, None))[1]}
        for d in DIRECTIONS
    }
    hold_share = directions["HOLD"]["share"]
    low, high = hold_target
    status = "no signals" if hold_share is None else ("below" if hold_share < low else "above" if hold_share > high else "within")

    symbols = []
    for r in rows(
        f"""SELECT symbol, count(*), sum(direction = 'BUY'), sum(direction = 'SELL'), sum(direction = 'HOLD'),
                   avg(confidence), max(bar_time) FROM signals s WHERE {where} GROUP BY symbol ORDER BY symbol"""
    ):
        last = connection.execute(
            f"SELECT direction FROM signals s WHERE {where} AND s.symbol = ? AND s.bar_time = ? ORDER BY s.id DESC LIMIT 1",
            [*params, r[0], r[6]],
        ).fetchone()
        symbols.append({
            "symbol": r[0], "signals": r[1], "BUY": r[2], "SELL": r[3], "HOLD": r[4], "hold_share": _share(r[4], r[1]),
            "mean_confidence": r[5], "last_bar_time": r[6], "last_direction": last[0] if last else None,
        })

    synthesizers = []
    for r in rows(
        f"""SELECT synthesizer, count(*), sum(fallback_reason IS NOT NULL), avg(attempts) FROM signals s WHERE {where}
            GROUP BY synthesizer ORDER BY count(*) DESC, synthesizer"""
    ):
        reasons = rows(
            f"""SELECT fallback_reason, count(*) FROM signals s WHERE {where} AND synthesizer = ? AND fallback_reason IS NOT NULL
                GROUP BY fallback_reason ORDER BY count(*) DESC, fallback_reason LIMIT 5""",
            [r[0]],
        )
        synthesizers.append({
            "synthesizer": r[0], "signals": r[1], "share": _share(r[1], total), "fallbacks": r[2],
            "mean_attempts": r[3], "fallback_reasons": [{"reason": x[0], "count": x[1]} for x in reasons],
        })
    fallbacks = sum(s["fallbacks"] for s in synthesizers)

    theories = []
    elapsed: dict[str, list[float]] = {}
    for name, status_, ms in rows(
        f"SELECT t.theory, t.status, t.elapsed_ms FROM theory_results t JOIN signals s ON s.id = t.signal_id WHERE {where}"
    ):
        if status_ == "ok":
            elapsed.setdefault(name, []).append(ms)
    for r in rows(
        f"""SELECT t.theory, count(*), sum(t.status = 'ok'), sum(t.status = 'insufficient_data'), sum(t.status = 'error'),
                   min(t.position) FROM theory_results t JOIN signals s ON s.id = t.signal_id WHERE {where}
            GROUP BY t.theory ORDER BY min(t.position), t.theory"""
    ):
        last_error = rows(
            f"""SELECT t.message FROM theory_results t JOIN signals s ON s.id = t.signal_id
                WHERE {where} AND t.theory = ? AND t.status = 'error' ORDER BY s.id DESC LIMIT 1""",
            [r[0]],
        )
        ok_ms = sorted(elapsed.get(r[0], []))
        theories.append({
            "theory": r[0], "results": r[1], "ok": r[2], "insufficient_data": r[3], "error": r[4],
            "error_rate": _share(r[4], r[1]), "insufficient_data_rate": _share(r[3], r[1]),
            "p50_ms": percentile(ok_ms, 0.5), "p99_ms": percentile(ok_ms, 0.99),
            "last_error": last_error[0][0] if last_error else None,
        })

    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for timings, sink in rows(f"SELECT s.timings, {sink_ms} FROM signals s WHERE {where}"):
        for stage, value in (json.loads(timings) if timings else {}).items():
            if stage in samples and stage != "sink" and isinstance(value, (int, float)):
                samples[stage].append(float(value))
        if sink is not None:
            samples["sink"].append(float(sink))
    latency = {}
    for stage, values in samples.items():
        values.sort()
        latency[stage] = {
            "count": len(values), "p50": percentile(values, 0.5), "p90": percentile(values, 0.9),
            "p99": percentile(values, 0.99), "max": values[-1] if values else None,
        }

    usage = rows(
        f"""SELECT count(prompt_tokens), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
                   coalesce(sum(cache_hit_tokens), 0), coalesce(sum(cache_miss_tokens), 0), coalesce(sum(cost), 0)
            FROM signals s WHERE {where}"""
    )[0]
    llm = {
        "signals_with_usage": usage[0], "prompt_tokens": usage[1], "completion_tokens": usage[2],
        "cache_hit_tokens": usage[3], "cache_miss_tokens": usage[4],
        "cache_hit_ratio": _share(usage[3], usage[3] + usage[4]), "cost": usage[5],
        "cost_per_signal": _share(usage[5], usage[0]),
    }

    late = rows(
        f"SELECT count(*) FROM signals s WHERE {where} AND {stored_at} IS NOT NULL "
        f"AND julianday({stored_at}) - julianday(s.created_at) > 60.0 / 86400"
    )[0][0]
    run_where = "started_at >= ?" if since else "1 = 1"
    run_rows = connection.execute(
        f"SELECT count(*), sum(stopped_at IS NULL) FROM runs WHERE {run_where}", [since] if since else []
    ).fetchone()
    spool_waiting = 0
    if spool_path is not None and spool_path.exists():
        with spool_path.open("rb") as handle:
            spool_waiting = sum(1 for line in handle if line.strip())

    return {
        "schema_version": schema_version(connection),
        "filter": {"hours": hours, "symbol": symbol, "created_since": since},
        "signals": total,
        "created_at": {"first": first_created, "last": last_created},
        "bar_time": {"first": first_bar, "last": last_bar},
        "directions": directions,
        "hold": {"share": hold_share, "target_min": low, "target_max": high, "status": status},
        "symbols": symbols,
        "synthesizers": synthesizers,
        "fallbacks": {"signals": fallbacks, "share": _share(fallbacks, total)},
        "theories": theories,
        "latency_ms": latency,
        "llm": llm,
        "storage": {
            "spool_waiting": spool_waiting, "stored_late": late,
            "runs": run_rows[0] or 0, "runs_without_stop": run_rows[1] or 0,
        },
    }


@click.command()
@database_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
@click.pass_obj
def stats(ctx: Any, config_path: str | None, db_path: str | None, hours: float | None, symbol: str | None, as_json: bool) -> None:
    """Summarize the stored signals: directions vs. the HOLD target, symbols, synthesizers, theories, latency, LLM cost."""
    path, stats_config = resolve_database(ctx, config_path, db_path)
    connection = open_database(path)
    try:
        connection.execute("BEGIN")  # one read snapshot: every figure describes the same signals
        data = compute_stats(
            connection, hours, symbol, (stats_config.hold_target_min, stats_config.hold_target_max),
            spool_path=path.with_name(path.name + ".spool.jsonl"),
        )
    finally:
        connection.close()
    data = {"database": str(path.resolve()), **data}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        render(data)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(data: dict[str, Any]) -> None:
    """The terminal form of `compute_stats`' result."""
    import shutil

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, shutil.get_terminal_size((120, 24)).columns), highlight=False)
    window = []
    if data["filter"]["hours"] is not None:
        window.append(f"created in the last {data['filter']['hours']:g} h")
    if data["filter"]["symbol"]:
        window.append(data["filter"]["symbol"])
    console.print(f"[bold]{data['database']}[/] (schema v{data['schema_version']}){': ' + ', '.join(window) if window else ''}")
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
        table.add_column(column, justify="left" if column in ("symbol", "last bar", "last") else "right")
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
    for column in ("theory", "results", "ok", "insuff.", "error", "error %", "insuff. %", "p50 ms", "p99 ms", "last error"):
        if column == "last error":
            table.add_column(column, overflow="fold", min_width=12)
        else:
            table.add_column(column, justify="left" if column == "theory" else "right", no_wrap=True)
    for row in data["theories"]:
        table.add_row(
            row["theory"], str(row["results"]), str(row["ok"]), str(row["insufficient_data"]), str(row["error"]),
            _pct(row["error_rate"]), _pct(row["insufficient_data_rate"]), _num(row["p50_ms"]), _num(row["p99_ms"]),
            row["last_error"] or "-",
        )
    console.print(table)

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
