"""Reading the sqlite sink's database back: `SqliteSink.reader()` / `SqliteSink.reader_at(path)`.

Signals, runs and the spool are read through a read-only connection (WAL: it never blocks
`v7 run` and is never blocked by it) that works on every schema version from 1 on without
migrating. `summary()` aggregates in SQL, from covering indexes (`summary.py`). Only `save_backtest` writes, on a connection of its
own that first creates or upgrades the schema, so a database a backtest made is one `v7 run`
accepts.
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from v7 import (
    MarketContext, RunRecord, SignalQuery, SignalReader, StoredBacktest, StoredSignal, TheoryResult, TokenUsage,
    format_utc, parse_utc,
)

from . import schema
from .browse import BrowseQueries, backtest_from_row
from .schema import BACKTESTS_SCHEMA, SqliteSinkError, columns, ensure_schema, open_reader
from .spool import Spool, spool_path_for

SIGNAL_FIELDS = (
    "id", "run_id", "symbol", "granularity", "bar_time", "created_at", "direction", "confidence", "price", "synthesizer",
    "fallback_reason", "attempts", "reasoning", "config_hash", "prompt_tokens", "completion_tokens", "cache_hit_tokens",
    "cache_miss_tokens", "cost", "context", "context_error", "timings",
)
CHUNK = 500


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
        self._helper: ThreadPoolExecutor | None = None  # summary(): a big window's second half, beside the first
        self._helper_connection: sqlite3.Connection | None = None

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
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None
        for connection in (self._connection, self._helper_connection):
            if connection is not None:
                connection.close()
        self._connection = self._helper_connection = None

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
        from .summary import summarize_sql

        with self.snapshot() as connection:
            return summarize_sql(connection, query or SignalQuery(), hold_target, self.waiting(), self._beside)

    def _beside(self, job: Callable[[sqlite3.Connection], Any]) -> "Future[Any]":
        """`job` on a second read-only connection, in a read transaction of its own, on this reader's helper thread."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v7-sqlite-summary")

        def run() -> Any:
            if self._helper_connection is None:
                self._helper_connection = open_reader(self.path, self.timeout_s)
            connection = self._helper_connection
            connection.execute("BEGIN")
            try:
                return job(connection)
            finally:
                connection.execute("ROLLBACK")

        return self._helper.submit(run)

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
