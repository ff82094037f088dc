"""SQLite sink, the default store: WAL mode, one transaction per signal, idempotent per bar, spooled when failing.

Unique key of a signal: (symbol, granularity, bar_time, config_hash) — re-running the same
config over the same bars stores nothing twice. The schema carries a version; an older database
is upgraded in place by the migrations in `schema.MIGRATIONS` when the sink opens it.

When the database cannot be written (locked, read-only, disk full, I/O error) the signal is
appended to `<path>.spool.jsonl` (fsync'ed) and the write raises `SqliteSinkError`, so the engine
logs the failure with the sink's name; the spool is written to the database at the next successful
write or at the next open, exactly once thanks to the unique key. See docs/storage.md.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from v7 import PluginConfig, RunInfo, Signal, Sink, format_utc, one_line

from . import schema
from .identity import DatabaseIdentity, DatabaseReplaced, probe_writable, set_aside_stale_wal
from .schema import SCHEMA_VERSION, SqliteSinkError, SqliteSinkHeld, SqliteSinkSpooled, describe, ensure_schema, is_retryable
from .spool import Spool, fallback_spool_path, spool_path_for

if TYPE_CHECKING:  # pragma: no cover
    from .reader import SqliteReader

class SqliteConfig(PluginConfig):
    path: Path = Field(default=Path("v7.db"), description="Database file, relative to the working directory")
    busy_timeout_ms: int = Field(default=5000, ge=0, description="How long to wait for a lock held by a reader or writer")
    store_prompt: bool = Field(default=True, description="Keep the LLM prompt with each signal")
    spool_dir: Path | None = Field(
        default=None,
        description="A second spool location, on another file system, used when the spool beside the database cannot be written",
    )

    transport_fields = frozenset({"busy_timeout_ms", "spool_dir"})



class SqliteSink(Sink):
    name = "sqlite"
    version = "2.0"
    Config = SqliteConfig

    def __init__(self, config: SqliteConfig | None = None) -> None:
        super().__init__(config)
        self._connection: sqlite3.Connection | None = None
        self._run: RunInfo | None = None
        self._log: Any = None
        self._path = Path(self.config.path)
        self.spool = Spool(spool_path_for(self._path))
        self.spools = [self.spool]  # where a signal the database cannot take waits, tried in order
        if self.config.spool_dir is not None:
            self.spools.append(Spool(fallback_spool_path(self.config.spool_dir, self._path)))
        self._identity: DatabaseIdentity | None = None
        self._unspooled: list[Signal] = []  # last resort when even the spool cannot be written
        self._pending_latency: list[tuple[float, int]] = []  # (sink ms, signal id) not yet in their rows

    @property
    def path(self) -> Path:
        return self._path.resolve()

    # -- reading back ------------------------------------------------------------------------

    def reader(self) -> "SqliteReader":
        """A read-only reader of this sink's database and spool (no `open()` needed)."""
        from .reader import SqliteReader

        return SqliteReader(self.path, spool_path=self.spool.path, timeout_s=self.config.busy_timeout_ms / 1000,
                            busy_timeout_ms=self.config.busy_timeout_ms, fallback_spools=tuple(s.path for s in self.spools[1:]))

    @classmethod
    def reader_at(cls, location: str) -> "SqliteReader":
        """A reader of the database file `location` (`v7 stats --db FILE`)."""
        from .reader import SqliteReader

        return SqliteReader(Path(location))

    # -- opening ----------------------------------------------------------------------------

    def open(self, run: RunInfo, log) -> None:
        """Open (create, migrate) the database and store any spooled signals.

        A database that exists but cannot be written now (locked, read-only, full) is not fatal:
        the error is logged and signals are spooled until it can be written. A file that is not a
        V7 database, a newer schema or a path that cannot be created stop the run with a clear error.
        """
        self._run, self._log = run, log
        folder = self._path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SqliteSinkError(f"sqlite sink: cannot create the folder of {self.path}: {exc.strerror}") from exc
        self._check_spools()
        try:
            self._connect()
        except SqliteSinkError as exc:
            raise SqliteSinkError(f"sqlite sink: {self.path}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            if not (is_retryable(exc) and self._path.exists()):
                raise SqliteSinkError(f"sqlite sink: cannot open {self.path}: {describe(exc)}") from exc
            log.error(
                "sqlite sink cannot write its database; signals are spooled until it can",
                path=str(self.path), spool=str(self.spool.path), error=describe(exc),
            )
            return
        log.info("sqlite sink open", path=str(self.path), schema_version=SCHEMA_VERSION)
        if self._spooled():
            try:
                self._replay()
            except (sqlite3.Error, OSError) as exc:
                self._disconnect()
                log.error("sqlite sink could not store its spooled signals yet", path=str(self.path), spool=str(self.spool.path), error=describe(exc))

    def _check_spools(self) -> None:
        """Stop at startup when no spool location can be written: a signal the database refused would be lost."""
        problems = [(spool, probe_writable(spool.path)) for spool in self.spools]
        if all(problem is not None for _, problem in problems):
            where = "; ".join(f"{spool.path}: {problem}" for spool, problem in problems)
            raise SqliteSinkError(
                f"sqlite sink: cannot write its spool ({where}), so a signal the database {self.path} cannot take "
                "would be lost; make the folder writable or set [sinks.sqlite] spool_dir to a writable folder"
            )
        for spool, problem in problems:
            if problem is not None and self._log is not None:
                self._log.warning("sqlite sink cannot write one of its spools", spool=str(spool.path), error=problem)

    def _spooled(self) -> bool:
        return any(spool.exists() for spool in self.spools)

    def _connect(self) -> None:
        """Connect, migrate and register the run; leaves no connection behind on failure."""
        assert self._run is not None
        stale = set_aside_stale_wal(self._path)
        if stale is not None and self._log is not None:
            self._log.error(
                "sqlite database missing but its WAL was left; the WAL is moved aside, not discarded",
                path=str(self.path), moved_to=str(stale),
            )
        connection = schema.connect(self._path, self.config.busy_timeout_ms)
        try:
            identity = DatabaseIdentity(self._path)
        except OSError:
            connection.close()
            raise
        try:
            applied = ensure_schema(connection, self._run.v7_version)
            if applied and self._log is not None and applied != list(range(1, SCHEMA_VERSION + 1)):
                self._log.info("sqlite schema upgraded", path=str(self.path), migrations=applied, schema_version=SCHEMA_VERSION)
            run = self._run
            connection.execute(
                "INSERT OR IGNORE INTO runs (run_id, config_hash, config_path, v7_version, plugin_versions, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run.run_id, run.config_hash, run.config_path, run.v7_version, json.dumps(run.plugin_versions, sort_keys=True), format_utc(run.started_at)),
            )
        except BaseException:
            connection.close()
            identity.close()
            raise
        self._connection, self._identity = connection, identity

    def _disconnect(self) -> None:
        """Drop the connection after a storage error: a read-only fallback or a stale lock is not reused."""
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None
        if self._identity is not None:
            self._identity.close()
            self._identity = None

    def _check_identity(self, connection: sqlite3.Connection) -> None:
        """In every transaction, before COMMIT: the file being written must be the file at the path.

        A deleted database is checkpointed and copied aside (its signals are not lost with it) and the
        failure raised as a storage error: the signal is spooled, the database recreated at the next write.
        """
        identity = self._identity
        problem = identity.problem() if identity is not None else None
        if problem is None:
            return
        assert identity is not None
        connection.execute("ROLLBACK")
        salvaged = ""
        if identity.deleted:
            try:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                copy = identity.salvage()
                salvaged = f"; what it held is saved in {copy}"
            except (sqlite3.Error, OSError) as exc:
                salvaged = f"; its content could not be saved ({describe(exc)})"
        if self._log is not None:
            self._log.error(
                "sqlite database file changed under the sink; it is recreated at the next write",
                path=str(self.path), problem=problem, saved=salvaged.removeprefix("; what it held is saved in ") or None,
            )
        raise DatabaseReplaced(f"the database file {self.path} {problem}{salvaged}")

    # -- writing ----------------------------------------------------------------------------

    def _ready(self) -> None:
        """Before storing: a connection, and the spooled or held signals stored first (they came earlier)."""
        if self._run is None:
            raise RuntimeError("sqlite sink used before open()")
        if self._connection is None:
            self._connect()
        if self._unspooled or self._spooled():
            self._replay()

    def write(self, signal: Signal) -> bool:
        try:
            self._ready()
            return self._insert(signal)
        except SqliteSinkError as exc:  # reconnecting found a database this V7 must not write (e.g. a newer schema)
            self._disconnect()
            error, where = self._keep(signal)
            raise error(f"sqlite sink: {self.path}: {exc}; signal {signal.symbol} {format_utc(signal.bar_time)} {where}") from exc
        except (sqlite3.Error, OSError) as exc:
            if not is_retryable(exc):
                raise SqliteSinkError(f"sqlite sink: cannot store {signal.symbol} {format_utc(signal.bar_time)} in {self.path}: {describe(exc)}") from exc
            self._disconnect()
            error, where = self._keep(signal)
            raise error(
                f"sqlite sink: cannot write {self.path}: {describe(exc)}; signal {signal.symbol} {format_utc(signal.bar_time)} {where}"
            ) from exc

    def _keep(self, signal: Signal) -> tuple[type[SqliteSinkError], str]:
        """Spool a signal that could not be stored (each spool in turn, else memory); say where it went."""
        failures = []
        for spool in self.spools:
            try:
                spool.append(signal)
            except OSError as exc:
                failures.append(f"{spool.path} ({exc.strerror})")
                continue
            return SqliteSinkSpooled, f"spooled to {spool.path} ({len(spool)} waiting); stored at the next successful write"
        self._unspooled.append(signal)
        return SqliteSinkHeld, (
            f"could not be spooled to {', '.join(failures)} and is held in memory "
            f"({len(self._unspooled)} waiting) until the database can be written"
        )

    def unsaved(self) -> list[Signal]:
        """After close: signals neither stored nor spooled (held in memory and still unsaved)."""
        return list(self._unspooled)

    def _replay(self) -> None:
        """Store spooled signals (file first, then any held in memory), each exactly once."""
        stored = duplicates = 0
        for spool in self.spools:
            if spool.exists():
                more, again = spool.replay(self._insert, lambda line, exc, spool=spool: self._reject(line, exc, spool),
                                           lambda *args, spool=spool: self._unreadable(*args, spool=spool))
                stored, duplicates = stored + more, duplicates + again
        while self._unspooled:
            signal = self._unspooled[0]
            try:
                if self._insert(signal):
                    stored += 1
                else:
                    duplicates += 1
            except (sqlite3.Error, OSError) as exc:
                if is_retryable(exc):
                    raise
                self._reject(signal.model_dump_json().encode(), exc)
            self._unspooled.pop(0)
        if (stored or duplicates) and self._log is not None:
            self._log.info("spooled signals stored", path=str(self.path), stored=stored, already_stored=duplicates)

    def _reject(self, line: bytes, exc: BaseException, spool: Spool | None = None) -> None:
        spool = spool or self.spool
        spool.reject(line)
        if self._log is not None:
            self._log.error(
                "sqlite sink refused a spooled signal; moved aside", path=str(self.path),
                rejected=str(spool.rejected_path), error=describe(exc),
            )

    def _unreadable(self, number: int, line: bytes, exc: ValueError, torn: bool, spool: Spool | None = None) -> None:
        """Log a spool line that is not a valid signal: dropped when torn by a crash, else moved aside."""
        if self._log is None:
            return
        spool = spool or self.spool
        fields = dict(sink=self.name, path=str(self.path), spool=str(spool.path), line=number, error=one_line(exc))
        if torn:
            self._log.warning("sqlite sink dropped the torn last line of its spool (an append cut short by a crash)", **fields)
        else:
            self._log.error(
                "sqlite sink cannot read a spooled signal (written by another V7 version, edited or damaged); moved aside",
                rejected=str(spool.rejected_path), **fields,
            )

    def write_many(self, signals: list[Signal]) -> list[bool]:
        """All the signals in one transaction (one sync to disk), or none of them: on any error the run
        hands each to `write`, which spools what it cannot store."""
        try:
            self._ready()
            return self._insert_many(signals)
        except BaseException:
            self._disconnect()  # `write` starts again from a fresh connection, as after any failed write
            raise

    def _insert(self, signal: Signal) -> bool:
        return self._insert_many([signal])[0]

    def _insert_many(self, signals: list[Signal]) -> list[bool]:
        """One transaction: the previous transaction's sink latency, then each signal and its theory results."""
        connection = self._connection
        if connection is None:
            self._connect()
            connection = self._connection
        assert connection is not None
        started = time.perf_counter()
        answers: list[bool] = []
        inserted: list[int] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            if self._pending_latency:
                connection.executemany("UPDATE signals SET sink_ms = ? WHERE id = ?", self._pending_latency)
            for signal in signals:
                signal_id = self._insert_one(connection, signal)
                answers.append(signal_id is not None)
                if signal_id is not None:
                    inserted.append(signal_id)
            self._check_identity(connection)  # "already stored" must mean in the file at the path too
            connection.execute("COMMIT")  # also keeps the latency update when nothing was new
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        elapsed = round((time.perf_counter() - started) * 1000, 3)  # each signal waited for the whole commit
        self._pending_latency = [(elapsed, signal_id) for signal_id in inserted]
        return answers

    def _insert_one(self, connection: sqlite3.Connection, signal: Signal) -> int | None:
        """Insert the signal and its theory results in the open transaction; its id, None when already stored."""
        usage = signal.usage
        cursor = connection.execute(
            """INSERT OR IGNORE INTO signals (run_id, symbol, granularity, bar_time, created_at, direction, confidence,
                price, synthesizer, fallback_reason, attempts, reasoning, config_hash, prompt_tokens,
                completion_tokens, cache_hit_tokens, cache_miss_tokens, cost, context, context_error, prompt, timings,
                stored_at, position, sizing)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                signal.run_id, signal.symbol, signal.granularity, format_utc(signal.bar_time), format_utc(signal.created_at),
                signal.direction, signal.confidence, signal.price, signal.synthesizer, signal.fallback_reason,
                signal.attempts, signal.reasoning, signal.config_hash or "",
                usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
                usage.cache_hit_tokens if usage else None, usage.cache_miss_tokens if usage else None,
                usage.cost if usage else None,
                signal.context.model_dump_json() if signal.context else None, signal.context_error,
                signal.prompt if self.config.store_prompt else None,
                json.dumps({k: v for k, v in signal.timings_ms.items() if k != "sink"}, sort_keys=True),
                format_utc(datetime.now(timezone.utc)), signal.position, signal.sizing,
            ),
        )
        if cursor.rowcount == 0:
            return None
        signal_id = cursor.lastrowid
        assert signal_id is not None
        connection.executemany(
            """INSERT INTO theory_results (signal_id, position, theory, version, status, bias, confidence, label,
                interpretation, message, metrics, elapsed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (
                    signal_id, position, r.theory, r.version, r.status, r.bias, r.confidence, r.label,
                    r.interpretation, r.message, json.dumps(r.metrics, sort_keys=True), r.elapsed_ms,
                )
                for position, r in enumerate(signal.theory_results)
            ],
        )
        return signal_id

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Store what waits if the database can be written now; leave the rest in the spool for the next open.

        Signals held only in memory (neither the database nor the spool could be written) get a last
        try: the database, then the spool. Each one that still cannot be saved is logged at error
        level with its key and its JSON, the only copy left.
        """
        if self._unspooled and self._run is not None:
            self._save_held()
        for spool in self.spools:
            spooled = len(spool)
            if spooled and self._log is not None:
                self._log.error(
                    "sqlite sink closes with signals not yet in the database; they are stored at the next open",
                    path=str(self.path), spool=str(spool.path), waiting=spooled,
                )
        if self._connection is None:
            return
        try:
            if self._pending_latency:
                self._connection.executemany("UPDATE signals SET sink_ms = ? WHERE id = ?", self._pending_latency)
                self._pending_latency = []
            self._connection.execute(
                "UPDATE runs SET stopped_at = ? WHERE run_id = ?", (format_utc(datetime.now(timezone.utc)), self._run.run_id if self._run else None)
            )
        finally:
            self._disconnect()

    def _save_held(self) -> None:
        """At close: signals held in memory go to the database, else to the spool, else into an error log line."""
        try:
            self._replay()  # the spool file first, then memory, as at any write
        except Exception as exc:  # whatever failed, the spool is still worth a try
            self._disconnect()
            if self._log is not None:
                self._log.warning(
                    "sqlite sink cannot store the signals held in memory at close; spooling them",
                    path=str(self.path), held=len(self._unspooled), error=describe(exc),
                )
        lost: list[tuple[Signal, OSError]] = []
        for signal in self._unspooled:
            for spool in self.spools:
                try:
                    spool.append(signal)
                    break
                except OSError as exc:
                    error = exc
            else:
                lost.append((signal, error))
        self._unspooled = [signal for signal, _ in lost]
        if self._log is None:
            return
        for signal, exc in lost:
            self._log.error(
                "sqlite sink closes without saving a signal: neither the database nor the spool can be written; "
                "its JSON is in this log line",
                sink=self.name, path=str(self.path), spool=str(self.spool.path), symbol=signal.symbol,
                granularity=signal.granularity, bar_time=format_utc(signal.bar_time), config_hash=signal.config_hash,
                error=describe(exc), signal=signal.model_dump_json(),
            )
