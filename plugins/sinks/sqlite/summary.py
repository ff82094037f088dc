"""`SqliteReader.summary()`: every `v7 stats` figure aggregated where the data lives.

The figures come from a few aggregate queries, each answered from a covering index (schema v4:
`signals_summary`, one `signals_<stage>_ms` per stage, `theory_results_elapsed`), so they never
read the signals' rows (prompts, reasoning) and never bring rows into Python: one grouped pass
over the signals (mix, symbols, synthesizers, LLM usage), one over the theory results, and each
percentile read at its rank from an index in value order (`LIMIT 2 OFFSET rank`), exactly as
`v7.core.numbers.quantile` interpolates. A file older than v4 (readers never migrate) gives the
same figures from the same SQL, sorting instead of reading an index in order.
"""

from __future__ import annotations

import math
import sqlite3
from concurrent.futures import Future
from typing import Any, Callable

from v7 import SignalQuery, format_utc

from .schema import columns, schema_version

STAGES = ("feed", "theories", "formatters", "synthesizer")
DIRECTIONS = ("BUY", "SELL", "HOLD")
NUMERIC = "BETWEEN -1e999 AND 1e999"  # numbers only: SQLite orders NULL < numbers < text
SMALL = 4000
"""A time window of fewer signals reads its rows by creation time (and its theory results by signal id) and
sorts them; a bigger one reads the indexes in value order."""


def stage_expression(stage: str) -> str:
    """A stage's milliseconds in the stored `timings` JSON: the expression its index (`signals_<stage>_ms`) is on."""
    return f"(CASE WHEN json_valid(timings) THEN json_extract(timings, '$.{stage}') END)"


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _where(query: SignalQuery) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if query.created_since is not None:
        clauses.append("created_at >= ?")
        params.append(format_utc(query.created_since))
    if query.symbol:
        clauses.append("symbol = ?")
        params.append(query.symbol)
    if query.direction is not None:
        clauses.append("direction = ?")
        params.append(query.direction)
    return " AND ".join(clauses), params


class Indexes:
    """`INDEXED BY name` when the file has that index (v4 on), else nothing: the planner sorts instead."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}

    def __call__(self, name: str) -> str:
        return f"INDEXED BY {name}" if name in self.names else ""


def quantiles(connection: sqlite3.Connection, select: str, params: list[Any], count: int, qs: tuple[float, ...]) -> list[float | None]:
    """The `qs` quantiles of `count` values; `select` ends in `ORDER BY <value> {order} LIMIT 2 OFFSET ?`.

    Each rank is read from the nearer end (ascending below the median, descending above), and the
    two values around it are interpolated like `quantile()` over the sorted list."""
    out: list[float | None] = []
    for q in qs:
        if count == 0:
            out.append(None)
            continue
        position = q * (count - 1)
        low = int(math.floor(position))
        high = min(low + 1, count - 1)
        if low < count / 2:
            rows = connection.execute(select.format(order="ASC"), [*params, low]).fetchall()
            at_low, at_high = rows[0][0], rows[-1][0] if high > low else rows[0][0]
        else:
            rows = connection.execute(select.format(order="DESC"), [*params, count - 1 - high]).fetchall()
            at_high, at_low = rows[0][0], rows[-1][0] if high > low else rows[0][0]
        out.append(float(at_low + (at_high - at_low) * (position - low)))
    return out


LATENCY_QS = (0.5, 0.9, 0.99, 1.0)


def _latency(count: int, values: list[float | None]) -> dict[str, Any]:
    return {"count": count, "p50": values[0], "p90": values[1], "p99": values[2], "max": values[3]}


def _small_window_latency(
    connection: sqlite3.Connection, where: str, params: list[Any], has_sink_ms: bool, rows_by: str,
) -> dict[str, Any]:
    """Every stage's percentiles over a small time window in one query: its rows read once by creation time,
    each stage ranked by a window function, only the rows at the ranks the percentiles need returned."""
    values = {stage: stage_expression(stage) for stage in STAGES}
    values["sink"] = "sink_ms" if has_sink_ms else "NULL"
    ranks = ", ".join(f"CAST({q} * (n - 1) AS INTEGER), CAST({q} * (n - 1) AS INTEGER) + 1" for q in LATENCY_QS)
    parts = " UNION ALL ".join(
        f"""SELECT '{stage}', v, rank, n FROM (
                SELECT v, row_number() OVER (ORDER BY v) - 1 AS rank, count(*) OVER () AS n FROM (SELECT {stage} AS v FROM w)
                WHERE v {NUMERIC}) WHERE rank IN ({ranks})"""
        for stage in values
    )
    found: dict[str, tuple[int, dict[int, float]]] = {}
    for stage, value, rank, count in connection.execute(
        f"""WITH w AS MATERIALIZED (SELECT {', '.join(f'{v} AS {k}' for k, v in values.items())}
                                  FROM signals {rows_by} WHERE {where}) {parts}""",
        params,
    ):
        found.setdefault(stage, (count, {}))[1][rank] = value
    latency = {}
    for stage in values:
        count, at = found.get(stage, (0, {}))
        picked: list[float | None] = []
        for q in LATENCY_QS:
            if not count:
                picked.append(None)
                continue
            position = q * (count - 1)
            low = int(math.floor(position))
            high = min(low + 1, count - 1)
            picked.append(float(at[low] + (at[high] - at[low]) * (position - low)))
        latency[stage] = _latency(count, picked)
    return latency


Helper = Callable[[Callable[[sqlite3.Connection], Any]], "Future[Any]"]
"""Runs a job on another read-only connection of the same file (in a read transaction of its own), on another thread."""


def summarize_sql(
    connection: sqlite3.Connection, query: SignalQuery, hold_target: tuple[float, float], waiting: int, helper: Helper | None = None,
) -> dict[str, Any]:
    """The same dict as `v7.core.signal_summary.summarize`, inside the caller's read transaction.

    With a `helper`, a big window's latency and theory figures are computed on its connection while this
    one computes the rest; both count only signals up to the newest id this transaction sees, so the two
    agree however `v7 run` writes meanwhile (ids grow, and a signal commits with its theory results)."""
    where, params = _where(query)
    filtered = where != "1 = 1"
    pin = connection.execute("SELECT max(id) FROM signals").fetchone()[0] or 0
    where, params = f"{where} AND id <= ?", [*params, pin]
    since = format_utc(query.created_since) if query.created_since is not None else None
    indexed = Indexes(connection)
    available = set(columns(connection, "signals"))
    stored_at = "stored_at" if "stored_at" in available else "NULL"
    # A small window is read through its rows (by creation time or symbol) and sorted; a big one, or all, from
    # the covering indexes, in the order of their values.
    by_time = indexed("signals_created_at") if query.created_since is not None else ""
    small = filtered and connection.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM signals {by_time} WHERE {where} LIMIT {SMALL})", params
    ).fetchone()[0] < SMALL
    rows_by = by_time if small else indexed("signals_summary")

    def latency(on: sqlite3.Connection, stages: tuple[str, ...]) -> dict[str, Any]:
        if small:
            return _small_window_latency(on, where, params, "sink_ms" in available, by_time)
        return {stage: _big_window_latency(on, stage, where, params, available, indexed) for stage in stages}

    def theories_and_latency(on: sqlite3.Connection, stages: tuple[str, ...]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return _theories(on, query, filtered, pin, where, params, small, indexed), latency(on, stages)

    # The theory figures and two stages beside (about half the work of a big window), the rest here.
    beside = helper(lambda on: theories_and_latency(on, STAGES[:2])) if helper is not None and not small else None

    groups = connection.execute(
        f"""SELECT symbol, synthesizer, direction, count(*), sum(confidence), sum(fallback_reason IS NOT NULL), sum(attempts),
                   max(bar_time), min(bar_time), min(created_at), max(created_at), count(prompt_tokens), sum(prompt_tokens),
                   sum(completion_tokens), sum(cache_hit_tokens), sum(cache_miss_tokens), sum(cost),
                   sum({stored_at} > created_at AND strftime('%s', {stored_at}) - strftime('%s', created_at) > 60)
            FROM signals {rows_by} WHERE {where} GROUP BY symbol, synthesizer, direction""",
        params,
    ).fetchall()
    total = sum(g[3] for g in groups)

    directions = {}
    for direction in DIRECTIONS:
        chosen = [g for g in groups if g[2] == direction]
        count = sum(g[3] for g in chosen)
        directions[direction] = {"count": count, "share": _share(count, total),
                                 "mean_confidence": sum(g[4] for g in chosen) / count if count else None}
    hold_share = directions["HOLD"]["share"]
    low, high = hold_target
    status = "no signals" if hold_share is None else ("below" if hold_share < low else "above" if hold_share > high else "within")

    symbols = []
    for symbol in sorted({g[0] for g in groups}):
        chosen = [g for g in groups if g[0] == symbol]
        count = sum(g[3] for g in chosen)
        last_bar = max(g[7] for g in chosen)
        last = connection.execute(
            f"""SELECT direction FROM signals {indexed('signals_symbol_time')} WHERE {where} AND symbol = ? AND bar_time = ?
                ORDER BY id DESC LIMIT 1""",
            [*params, symbol, last_bar],
        ).fetchone()
        counts = {d: sum(g[3] for g in chosen if g[2] == d) for d in DIRECTIONS}
        symbols.append({
            "symbol": symbol, "signals": count, **counts, "hold_share": _share(counts["HOLD"], count),
            "mean_confidence": sum(g[4] for g in chosen) / count, "last_bar_time": last_bar, "last_direction": last[0] if last else None,
        })

    reasons: dict[str, list[tuple[int, str]]] = {}
    for name, reason, count in connection.execute(
        f"""SELECT synthesizer, fallback_reason, count(*) FROM signals {rows_by}
            WHERE {where} AND fallback_reason IS NOT NULL GROUP BY synthesizer, fallback_reason""",
        params,
    ):
        reasons.setdefault(name, []).append((-count, reason))
    synthesizers = []
    for name in {g[1] for g in groups}:
        chosen = [g for g in groups if g[1] == name]
        count = sum(g[3] for g in chosen)
        synthesizers.append({
            "synthesizer": name, "signals": count, "share": _share(count, total), "fallbacks": sum(g[5] for g in chosen),
            "mean_attempts": sum(g[6] for g in chosen) / count,
            "fallback_reasons": [{"reason": reason, "count": -minus} for minus, reason in sorted(reasons.get(name, []))[:5]],
        })
    synthesizers.sort(key=lambda s: (-s["signals"], s["synthesizer"]))
    fallbacks = sum(s["fallbacks"] for s in synthesizers)

    if beside is not None:
        mine = latency(connection, (*STAGES[2:], "sink"))
        theories, theirs = beside.result()
        latencies = {stage: {**theirs, **mine}[stage] for stage in (*STAGES, "sink")}
    else:
        theories, latencies = theories_and_latency(connection, (*STAGES, "sink"))
    late = sum(g[17] or 0 for g in groups)
    run_where = "started_at >= ?" if since else "1 = 1"
    run_rows = connection.execute(f"SELECT count(*), sum(stopped_at IS NULL) FROM runs WHERE {run_where}", [since] if since else []).fetchone()
    used = sum(g[11] for g in groups)
    hit, miss, cost = (sum(g[i] or 0 for g in groups) for i in (14, 15, 16))
    return {
        "schema_version": schema_version(connection),
        "filter": {"hours": None, "symbol": query.symbol, "created_since": since},
        "signals": total,
        "created_at": {"first": min((g[9] for g in groups), default=None), "last": max((g[10] for g in groups), default=None)},
        "bar_time": {"first": min((g[8] for g in groups), default=None), "last": max((g[7] for g in groups), default=None)},
        "directions": directions,
        "hold": {"share": hold_share, "target_min": low, "target_max": high, "status": status},
        "symbols": symbols,
        "synthesizers": synthesizers,
        "fallbacks": {"signals": fallbacks, "share": _share(fallbacks, total)},
        "theories": theories,
        "latency_ms": latencies,
        "llm": {
            "signals_with_usage": used, "prompt_tokens": sum(g[12] or 0 for g in groups),
            "completion_tokens": sum(g[13] or 0 for g in groups), "cache_hit_tokens": hit, "cache_miss_tokens": miss,
            "cache_hit_ratio": _share(hit, hit + miss), "cost": cost, "cost_per_signal": _share(cost, used),
        },
        "storage": {"spool_waiting": waiting, "stored_late": late, "runs": run_rows[0] or 0, "runs_without_stop": run_rows[1] or 0},
    }


def _big_window_latency(
    connection: sqlite3.Connection, stage: str, where: str, params: list[Any], available: set[str], indexed: Indexes,
) -> dict[str, Any]:
    """One stage's percentiles over a big window (or all): read at their ranks from the stage's index, in value order."""
    if stage == "sink" and "sink_ms" not in available:
        return _latency(0, [None] * 4)
    value = "sink_ms" if stage == "sink" else stage_expression(stage)
    source = f"FROM signals {indexed(f'signals_{stage}_ms')} WHERE {value} {NUMERIC} AND {where}"
    count = connection.execute(f"SELECT count(*) {source}", params).fetchone()[0]
    return _latency(count, quantiles(connection, f"SELECT {value} {source} ORDER BY {value} {{order}} LIMIT 2 OFFSET ?", params, count, LATENCY_QS))


def _theories(
    connection: sqlite3.Connection, query: SignalQuery, filtered: bool, pin: int, where: str, params: list[Any], small: bool,
    indexed: Indexes,
) -> list[dict[str, Any]]:
    """Per theory: results by status, error and abstention rates, p50/p99 of the ok results' ms, the last error.

    Without a filter every result up to `pin` counts. With one, a result counts when its signal is in the window:
    `signal_id IN (the window's ids)`, after a cheap `signal_id >= the window's first id` that turns
    away most of the others while the theory index is scanned in value order."""
    if not filtered:
        condition, extra = "signal_id <= ?", [pin]
    else:
        by_time = indexed("signals_created_at") if query.created_since is not None else ""
        first = connection.execute(f"SELECT min(id) FROM signals {by_time} WHERE {where}", params).fetchone()[0]
        if first is None:
            return []
        condition, extra = f"signal_id >= ? AND signal_id <= ? AND signal_id IN (SELECT id FROM signals WHERE {where})", [first, pin, *params]
        if by_time and not small and not query.symbol and query.direction is None:
            # A time window is nearly always every id from its first on; then the comparison alone is exact.
            older = connection.execute(
                f"SELECT count(*) FROM signals {by_time} WHERE created_at < ? AND id >= ? AND id <= ?", [params[0], first, pin]
            ).fetchone()[0]
            if older == 0:
                condition, extra = "signal_id >= ? AND signal_id <= ?", [first, pin]
    by_signal = small
    scan = indexed("sqlite_autoindex_theory_results_1" if by_signal else "theory_results_elapsed")
    rows: dict[str, dict[str, Any]] = {}
    for theory, status, count, position in connection.execute(
        f"SELECT theory, status, count(*), min(position) FROM theory_results {scan} WHERE {condition} GROUP BY theory, status", extra,
    ):
        row = rows.setdefault(theory, {"position": position, "ok": 0, "insufficient_data": 0, "error": 0})
        row["position"] = min(row["position"], position)
        row[status] = count
    theories = []
    for theory, row in sorted(rows.items(), key=lambda item: (item[1]["position"], item[0])):
        results = row["ok"] + row["insufficient_data"] + row["error"]
        select = (f"SELECT elapsed_ms FROM theory_results {scan} WHERE theory = ? AND status = 'ok' "
                  f"AND {condition} ORDER BY elapsed_ms {{order}} LIMIT 2 OFFSET ?")
        p50, p99 = quantiles(connection, select, [theory, *extra], row["ok"], (0.5, 0.99))
        last_error = None
        if row["error"]:
            found = connection.execute(
                f"""SELECT message FROM theory_results {scan if by_signal else indexed('theory_results_theory')} WHERE theory = ? AND status = 'error'
                    AND {condition} ORDER BY id DESC LIMIT 1""",
                [theory, *extra],
            ).fetchone()
            last_error = found[0] if found else None
        theories.append({
            "theory": theory, "results": results, "ok": row["ok"], "insufficient_data": row["insufficient_data"], "error": row["error"],
            "error_rate": _share(row["error"], results), "insufficient_data_rate": _share(row["insufficient_data"], results),
            "p50_ms": p50, "p99_ms": p99, "last_error": last_error,
        })
    return theories
