"""Reading the sqlite sink's database back: `SqliteSink.reader()` / `SqliteSink.reader_at(path)`.

Signals, runs and the spool are read through a read-only connection (WAL: it never blocks
`v7 run` and is never blocked by it) that works on every schema version from 1 on without
migrating. `summary()` aggregates in SQL. Only `save_backtest` writes, on a connection of its
own that first creates or upgrades the schema, so a database a backtest made is one `v7 run`
accepts.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from v7 import (
    MarketContext, RunRecord, SignalQuery, SignalReader, StoredBacktest, StoredSignal, TheoryResult, TokenUsage,
    format_utc, parse_utc, quantile,
)

from . import schema
from .browse import BrowseQueries, backtest_from_row
from .schema import BACKTESTS_SCHEMA, SqliteSinkError, columns, ensure_schema, open_reader
from .spool import Spool, spool_path_for

STAGES = ("feed", "theories", "formatters", "synthesizer", "sink")
DIRECTIONS = ("BUY", "SELL", "HOLD")
SIGNAL_FIELDS = (
    "id", "run_id", "symbol", "granularity", "bar_time", "created_at", "direction", "confidence", "price", "synthesizer",
    "fallback_reason", "attempts", "reasoning", "config_hash", "prompt_tokens", "completion_tokens", "cache_hit_tokens",
    "cache_miss_tokens", "cost", "context", "context_error", "timings",
)
CHUNK = 500


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _time(text: str | None) -> datetime | None:
    return parse_utc(text) if text else None


class SqliteReader(BrowseQueries, SignalReader):
    """Read access to one sqlite sink database. The connection opens on first use, so a reader for a
    file that does not exist yet can still `save_backtest` (which creates it)."""

    def __init__(
        self, path: str | Path, *, spool_path: Path | None = None, timeout_s: float = 5.0, busy_timeout_ms: int = 5000,
        fallback_spools: tuple[Path, ...] = (),
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path.resolve())
        self.spool = Spool(spool_path if spool_path is not None else spool_path_for(self.path))
        self.fallback_spools = [Spool(p) for p in fallback_spools]  # `spool_dir`: used when the spool beside the database is not writable
        self.timeout_s = timeout_s
        self.busy_timeout_ms = busy_timeout_ms
        self._connection: sqlite3.Connection | None = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The read-only `sqlite3` connection (rows as `sqlite3.Row`), for queries of your own.

        Raises `SqliteSinkError` when there is no V7 database at the path."""
        if self._connection is None:
            self._connection = open_reader(self.path, self.timeout_s)
        return self._connection

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same commit, however `v7 run` writes meanwhile."""
        connection = self.connection
        if connection.in_transaction:
            yield connection
            return
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- signals ----------------------------------------------------------------------------------

    def _where(self, query: SignalQuery | None, alias: str = "s") -> tuple[str, list[Any]]:
        """SQL WHERE clause (always valid) and its parameters; times compared as the stored text."""
        clauses, params = ["1 = 1"], []
        if query is not None and query.created_since is not None:
            clauses.append(f"{alias}.created_at >= ?")
            params.append(format_utc(query.created_since))
        if query is not None and query.symbol:
            clauses.append(f"{alias}.symbol = ?")
            params.append(query.symbol)
        if query is not None and query.direction is not None:
            clauses.append(f"{alias}.direction = ?")
            params.append(query.direction)
        return " AND ".join(clauses), params

    def _select(self, connection: sqlite3.Connection, with_prompt: bool) -> str:
        available = set(columns(connection, "signals"))
        optional = [f"s.{c}" if c in available else f"NULL AS {c}" for c in ("stored_at", "sink_ms", "position", "sizing")]
        return ", ".join([*(f"s.{c}" for c in SIGNAL_FIELDS), *optional, "s.prompt" if with_prompt else "NULL AS prompt"])

    def signals(self, query: SignalQuery | None = None, *, with_prompt: bool = False) -> Iterator[StoredSignal]:
        connection = self.connection
        where, params = self._where(query)
        cursor = connection.execute(f"SELECT {self._select(connection, with_prompt)} FROM signals s WHERE {where} ORDER BY s.id", params)
        return self._iterate(connection, cursor)  # errors above come at the call, not at the first next()

    def latest(self, query: SignalQuery | None = None, limit: int = 20) -> list[StoredSignal]:
        """Newest first, from the primary key or the symbol / direction index: ~20 ms at worst with 100,000 signals."""
        connection = self.connection
        where, params = self._where(query)
        # The ids first (from an index, without the rows), then only those rows: no sort of a whole symbol's signals.
        cursor = connection.execute(
            f"""SELECT {self._select(connection, False)} FROM signals s
                WHERE s.id IN (SELECT s.id FROM signals s WHERE {where} ORDER BY s.id DESC LIMIT ?) ORDER BY s.id DESC""",
            [*params, max(limit, 0)],
        )
        return list(self._iterate(connection, cursor))

    def _iterate(self, connection: sqlite3.Connection, cursor: sqlite3.Cursor) -> Iterator[StoredSignal]:
        while rows := cursor.fetchmany(CHUNK):
            results: dict[int, list[TheoryResult]] = {}
            marks = ", ".join("?" * len(rows))
            for r in connection.execute(
                f"""SELECT signal_id, theory, version, status, bias, confidence, label, interpretation, message, metrics, elapsed_ms
                    FROM theory_results WHERE signal_id IN ({marks}) ORDER BY signal_id, position""",
                [row["id"] for row in rows],
            ):
                results.setdefault(r["signal_id"], []).append(TheoryResult(
                    theory=r["theory"], version=r["version"], status=r["status"], bias=r["bias"], confidence=r["confidence"],
                    label=r["label"] or "", interpretation=r["interpretation"] or "", message=r["message"],
                    metrics=json.loads(r["metrics"] or "{}"), elapsed_ms=r["elapsed_ms"],
                ))
            for row in rows:
                yield self._stored(row, results.get(row["id"], []))

    @staticmethod
    def _stored(row: sqlite3.Row, results: list[TheoryResult]) -> StoredSignal:
        usage = None
        if row["prompt_tokens"] is not None:
            usage = TokenUsage(
                prompt_tokens=row["prompt_tokens"] or 0, completion_tokens=row["completion_tokens"] or 0,
                cache_hit_tokens=row["cache_hit_tokens"] or 0, cache_miss_tokens=row["cache_miss_tokens"] or 0,
                cost=row["cost"] or 0.0,
            )
        context = None
        if row["context"]:
            try:
                context = MarketContext.model_validate_json(row["context"])
            except ValueError:  # written by another V7 version: the signal still reads
                context = None
        timings = json.loads(row["timings"] or "{}")
        return StoredSignal(
            id=row["id"], run_id=row["run_id"], symbol=row["symbol"], granularity=row["granularity"],
            bar_time=parse_utc(row["bar_time"]), created_at=parse_utc(row["created_at"]), direction=row["direction"],
            confidence=row["confidence"], price=row["price"], synthesizer=row["synthesizer"],
            fallback_reason=row["fallback_reason"], attempts=row["attempts"], reasoning=row["reasoning"] or "",
            config_hash=row["config_hash"], usage=usage, theory_results=results, context=context,
            context_error=row["context_error"], prompt=row["prompt"],
            timings_ms={k: v for k, v in timings.items() if isinstance(v, (int, float))},
            stored_at=_time(row["stored_at"]), sink_ms=row["sink_ms"],
            position=row["position"] or 0.0, sizing=row["sizing"],  # a file before v3 has neither: not sized, so flat
        )

    def last_bar_times(self, config_hash: str, granularity: str) -> dict[str, datetime]:
        rows = self.connection.execute(
            "SELECT symbol, max(bar_time) AS last FROM signals WHERE config_hash = ? AND granularity = ? GROUP BY symbol",
            (config_hash, granularity),
        )
        return {row["symbol"]: parse_utc(row["last"]) for row in rows}

    def runs(self, since: datetime | None = None) -> list[RunRecord]:
        where, params = ("started_at >= ?", [format_utc(since)]) if since is not None else ("1 = 1", [])
        return [
            RunRecord(
                run_id=r["run_id"], config_hash=r["config_hash"], config_path=r["config_path"], v7_version=r["v7_version"],
                plugin_versions=json.loads(r["plugin_versions"] or "{}"), started_at=parse_utc(r["started_at"]),
                stopped_at=_time(r["stopped_at"]),
            )
            for r in self.connection.execute(f"SELECT * FROM runs WHERE {where} ORDER BY started_at, run_id", params)
        ]

    def waiting(self) -> int:
        """Signals in the spools (`<db>.spool.jsonl`, and the one under `spool_dir`), not yet in the database."""
        return len(self.spool) + sum(len(spool) for spool in self.fallback_spools)

    def schema_version(self) -> int | None:
        return schema.schema_version(self.connection)

    # -- summary: the `v7 stats` figures, aggregated in SQL ---------------------------------------

    def summary(self, query: SignalQuery | None = None, hold_target: tuple[float, float] = (0.4, 0.7)) -> dict[str, Any]:
        """The same dict as `v7.core.signal_summary.summarize`, from one read snapshot."""
        with self.snapshot() as connection:
            return self._summary(connection, query or SignalQuery(), hold_target)

    def _summary(self, connection: sqlite3.Connection, query: SignalQuery, hold_target: tuple[float, float]) -> dict[str, Any]:
        where, params = self._where(query)
        since = format_utc(query.created_since) if query.created_since is not None else None
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
        # Streamed, not fetched at once: 100,000 signals have 500,000 results (~100 MB as rows, ~4 MB as floats).
        for name, ms in connection.execute(
            f"SELECT t.theory, t.elapsed_ms FROM theory_results t JOIN signals s ON s.id = t.signal_id WHERE {where} AND t.status = 'ok'",
            params,
        ):
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
                "p50_ms": quantile(ok_ms, 0.5), "p99_ms": quantile(ok_ms, 0.99),
                "last_error": last_error[0][0] if last_error else None,
            })

        samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
        for timings, sink in connection.execute(f"SELECT s.timings, {sink_ms} FROM signals s WHERE {where}", params):
            for stage, value in (json.loads(timings) if timings else {}).items():
                if stage in samples and stage != "sink" and isinstance(value, (int, float)):
                    samples[stage].append(float(value))
            if sink is not None:
                samples["sink"].append(float(sink))
        latency = {}
        for stage, values in samples.items():
            values.sort()
            latency[stage] = {
                "count": len(values), "p50": quantile(values, 0.5), "p90": quantile(values, 0.9),
                "p99": quantile(values, 0.99), "max": values[-1] if values else None,
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

        return {
            "schema_version": schema.schema_version(connection),
            "filter": {"hours": None, "symbol": query.symbol, "created_since": since},
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
                "spool_waiting": self.waiting(), "stored_late": late,
                "runs": run_rows[0] or 0, "runs_without_stop": run_rows[1] or 0,
            },
        }

    # -- backtest results -------------------------------------------------------------------------

    def save_backtest(self, backtest: StoredBacktest) -> int:
        """Insert one backtest result; returns its id. Creates (or upgrades) the database first.

        When `result_json` is a JSON object with an `id` key, that key is set to the new id, so the
        stored result names itself as `v7 backtest --show ID` loads it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = schema.connect(self.path, self.busy_timeout_ms)
        except sqlite3.Error as exc:
            raise SqliteSinkError(f"cannot open {self.location} to store a backtest: {schema.describe(exc)}") from exc
        try:
            ensure_schema(connection, backtest.v7_version)
            connection.executescript(BACKTESTS_SCHEMA)
            connection.execute("BEGIN IMMEDIATE")
            try:
                cursor = connection.execute(
                    """INSERT INTO backtests (created_at, config_hash, config_path, v7_version, granularity, symbols, range_start,
                       range_end, bars, settings, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        format_utc(backtest.created_at), backtest.config_hash, backtest.config_path, backtest.v7_version,
                        backtest.granularity, json.dumps(backtest.symbols), format_utc(backtest.range_start),
                        format_utc(backtest.range_end), backtest.bars, json.dumps(backtest.settings, sort_keys=True), "{}",
                    ),
                )
                backtest_id = int(cursor.lastrowid or 0)
                connection.execute("UPDATE backtests SET summary = ? WHERE id = ?", (_with_id(backtest.result_json, backtest_id), backtest_id))
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        finally:
            connection.close()
        return backtest_id

    def backtest(self, key: str) -> StoredBacktest | None:
        """By id (all digits), else the latest whose config hash starts with `key`; None when there is none
        (no database, no backtests stored, no match)."""
        if not self.path.is_file():
            return None
        connection = self.connection
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'backtests'").fetchone() is None:
            return None
        if key.isdigit():
            row = connection.execute("SELECT * FROM backtests WHERE id = ?", (int(key),)).fetchone()
        else:
            row = connection.execute(
                "SELECT * FROM backtests WHERE config_hash LIKE ? ORDER BY created_at DESC, id DESC LIMIT 1", (f"{key}%",)
            ).fetchone()
        return None if row is None else backtest_from_row(row)


def _with_id(result_json: str, backtest_id: int) -> str:
    try:
        data = json.loads(result_json)
    except ValueError:
        return result_json
    if isinstance(data, dict) and "id" in data:
        data["id"] = backtest_id
        return json.dumps(data)
    return result_json
