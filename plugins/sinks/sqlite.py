"""SQLite sink, the default store: WAL mode, one transaction per signal, idempotent per bar, spooled when failing.

Unique key of a signal: (symbol, granularity, bar_time, config_hash) — re-running the same
config over the same bars stores nothing twice. The schema carries a version; an older database
is upgraded in place by the migrations in `MIGRATIONS` when the sink opens it.

When the database cannot be written (locked, read-only, disk full, I/O error) the signal is
appended to `<path>.spool.jsonl` (fsync'ed) and the write raises `SqliteSinkError`, so the engine
logs the failure with the sink's name; the spool is written to the database at the next successful
write or at the next open, exactly once thanks to the unique key. See docs/storage.md.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator
from urllib.parse import quote

from pydantic import Field

from v7 import PluginConfig, RunInfo, Signal, Sink, hookimpl

try:  # POSIX advisory locks keep two processes that share a spool from losing each other's lines
    import fcntl
except ImportError:  # pragma: no cover - Windows: a single writer per database is assumed
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 2

# version → statements that take the schema from version-1 to version, run in one transaction.
# Never edit a released migration: add a new one. A fresh database runs them all, so a new
# database and an upgraded one have the same schema.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        """CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    config_path TEXT,
    v7_version TEXT NOT NULL,
    plugin_versions TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT
)""",
        """CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    run_id TEXT,
    symbol TEXT NOT NULL,
    granularity TEXT NOT NULL,
    bar_time TEXT NOT NULL,
    created_at TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('BUY', 'SELL', 'HOLD')),
    confidence REAL NOT NULL,
    price REAL NOT NULL,
    synthesizer TEXT NOT NULL,
    fallback_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    reasoning TEXT,
    config_hash TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cache_hit_tokens INTEGER,
    cache_miss_tokens INTEGER,
    cost REAL,
    context TEXT,
    context_error TEXT,
    prompt TEXT,
    timings TEXT,
    UNIQUE (symbol, granularity, bar_time, config_hash)
)""",
        "CREATE INDEX signals_bar_time ON signals (bar_time)",
        "CREATE INDEX signals_symbol_time ON signals (symbol, bar_time)",
        "CREATE INDEX signals_direction ON signals (direction)",
        """CREATE TABLE theory_results (
    id INTEGER PRIMARY KEY,
    signal_id INTEGER NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    theory TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'insufficient_data', 'error')),
    bias REAL,
    confidence REAL NOT NULL,
    label TEXT,
    interpretation TEXT,
    message TEXT,
    metrics TEXT NOT NULL,
    elapsed_ms REAL NOT NULL,
    UNIQUE (signal_id, position)
)""",
        "CREATE INDEX theory_results_theory ON theory_results (theory, status)",
        "INSERT INTO schema_version (version) VALUES (1)",
    ],
    2: [
        # How long this sink took to store the signal (BEGIN → COMMIT, fsync included); written
        # with the next signal's transaction or at close, so a killed run leaves its last one NULL.
        "ALTER TABLE signals ADD COLUMN sink_ms REAL",
        # When the row was committed; later than created_at when the signal waited in the spool.
        "ALTER TABLE signals ADD COLUMN stored_at TEXT",
        "CREATE INDEX signals_created_at ON signals (created_at)",
        """CREATE TABLE migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL,
    v7_version TEXT
)""",
    ],
}

# SQLite result codes (primary, extended codes share the low byte) that a later retry can cure.
RETRYABLE_CODES = {
    5: "database is locked: another connection holds the write lock longer than busy_timeout_ms",  # SQLITE_BUSY
    6: "a table is locked by another connection",  # SQLITE_LOCKED
    8: "the database is read-only: check the permissions of the file, its -wal/-shm files and its folder",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "the disk is full (or the database reached its max_page_count)",  # SQLITE_FULL
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
    15: "locking protocol error",  # SQLITE_PROTOCOL
}


class SqliteSinkError(RuntimeError):
    """The sqlite sink could not store a signal, or could not open its database; the message says where and why."""


def iso(moment: datetime) -> str:
    """UTC, second precision, sortable as text."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_retryable(exc: BaseException) -> bool:
    """True for failures of the storage (lock, permissions, space, I/O), not of the data."""
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (code is None or (code & 0xFF) in RETRYABLE_CODES)


def _validation_error(exc: ValueError) -> str:
    """A validation error on one line: `field: message; ...` (pydantic's own text is several lines)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    try:
        items = errors(include_url=False)
    except TypeError:  # pragma: no cover - not pydantic's ValidationError
        return str(exc)
    parts = [f"{'.'.join(map(str, item['loc'])) or '(line)'}: {item['msg']}" for item in items[:5]]
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return f"{len(items)} validation error(s) for Signal: " + "; ".join(parts) + more


def describe(exc: BaseException) -> str:
    """The cause of a storage failure in words, with SQLite's own message and code."""
    code = getattr(exc, "sqlite_errorcode", None)
    cause = RETRYABLE_CODES.get(code & 0xFF) if isinstance(code, int) else None
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    return f"{cause} ({name}: {exc})" if cause else f"{name}: {exc}"


class SqliteConfig(PluginConfig):
    path: Path = Field(default=Path("v7.db"), description="Database file, relative to the working directory")
    busy_timeout_ms: int = Field(default=5000, ge=0, description="How long to wait for a lock held by a reader or writer")
    store_prompt: bool = Field(default=True, description="Keep the LLM prompt with each signal")


def connect(path: Path, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """A writer connection: WAL (readers never block it), synchronous=FULL (a commit is on disk), foreign keys on."""
    connection = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        connection.close()
        raise
    return connection


def schema_version(connection: sqlite3.Connection) -> int | None:
    """The stored schema version; None for an empty database; 0 for tables that are not V7's."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        return 0 if tables else None
    row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def ensure_schema(connection: sqlite3.Connection, v7_version: str | None = None) -> list[int]:
    """Create the schema or upgrade it in place; returns the migrations applied (none when current)."""
    version = schema_version(connection)
    if version == SCHEMA_VERSION:
        return []
    _check_version(version)
    applied: list[int] = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(connection)  # again under the write lock: another process may have migrated
        _check_version(version)
        for target in range((version or 0) + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                connection.execute(statement)
            connection.execute("UPDATE schema_version SET version = ?", (target,))
            if target >= 2:
                connection.execute(
                    "INSERT OR REPLACE INTO migrations (version, applied_at, v7_version) VALUES (?, ?, ?)",
                    (target, iso(datetime.now(timezone.utc)), v7_version),
                )
            applied.append(target)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return applied


def _check_version(version: int | None) -> None:
    if version == 0:
        raise SqliteSinkError("the file holds tables but no schema_version: it is not a V7 database")
    if version is not None and version > SCHEMA_VERSION:
        raise SqliteSinkError(f"database schema version {version} is newer than this V7 understands ({SCHEMA_VERSION}); upgrade V7")


def open_reader(path: str | Path, timeout_s: float = 5.0) -> sqlite3.Connection:
    """A read-only connection for `v7 stats`, dashboards and notebooks; in WAL mode it never blocks the writer.

    Works on every schema version from 1 on (it does not migrate); use `columns()` for columns added later.
    """
    path = Path(path)
    if not path.is_file():
        raise SqliteSinkError(f"no database at {path.resolve()}: run `v7 run` first or check [sinks.sqlite] path")
    connection = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=timeout_s, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    version = schema_version(connection)
    if not version:
        connection.close()
        raise SqliteSinkError(f"{path.resolve()} is not a V7 database (no schema_version)")
    if version > SCHEMA_VERSION:
        connection.close()
        raise SqliteSinkError(f"{path.resolve()}: schema version {version} is newer than this V7 understands ({SCHEMA_VERSION})")
    return connection


def columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


class Spool:
    """Signals that could not be stored yet: one JSON signal per line, appended and fsync'ed.

    Appenders and the replaying sink take an exclusive flock on the file; the replay replaces or
    removes the file, so an appender that waited re-opens the path when its inode has changed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name.removesuffix(".jsonl") + ".rejected.jsonl")

    def __len__(self) -> int:
        try:
            with self.path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        except (FileNotFoundError, IsADirectoryError):
            return 0

    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def _locked(self) -> Iterator[int]:
        """A descriptor of the current spool file, exclusively locked until the block ends."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    yield fd
                    return
            finally:
                os.close(fd)  # also releases the lock

    def append(self, signal: Signal) -> None:
        line = (signal.model_dump_json() + "\n").encode()
        created = not self.path.exists()
        with self._locked() as fd:
            _write_all(fd, line)
            os.fsync(fd)
        if created:
            _fsync_dir(self.path.parent)

    def replay(
        self,
        store: Callable[[Signal], bool],
        reject: Callable[[bytes, BaseException], None],
        unreadable: Callable[[int, bytes, ValueError, bool], None] | None = None,
    ) -> tuple[int, int]:
        """Hand each spooled signal, oldest first, to `store(signal) -> bool`. Returns (stored, already stored).

        A retryable storage error stops the replay, keeps the rest in the spool and is re-raised.
        A signal the database refuses for good (`reject`) is moved aside, so it cannot block the
        others. A line that is not a valid `Signal` (written by another V7 version, edited by hand,
        damaged) is appended to the rejected file (fsync'ed) before anything is stored, then reported
        as `unreadable(line number, line, error, torn=False)`. Only an unreadable *last* line with no
        newline after it, an append torn by a crash before the failure was reported, is dropped:
        `unreadable(..., torn=True)`. If the rejected file cannot be written the error is raised and
        the spool is left as it was.
        """
        stored = duplicates = 0
        with self._locked() as fd:
            segments = _read_all(fd).split(b"\n")  # the last segment is empty when the file ends with a newline
            readable: list[tuple[bytes, Signal]] = []
            set_aside: list[tuple[int, bytes, ValueError]] = []
            torn: tuple[int, bytes, ValueError] | None = None
            for number, line in enumerate(segments, 1):
                if not line.strip():
                    continue
                try:
                    readable.append((line, Signal.model_validate_json(line)))
                except ValueError as exc:  # pydantic's ValidationError, also for JSON that does not parse
                    if number == len(segments):
                        torn = (number, line, exc)
                    else:
                        set_aside.append((number, line, exc))
            if set_aside:
                self.reject(*(line for _, line, _ in set_aside))
            if unreadable is not None:
                for number, line, exc in set_aside:
                    unreadable(number, line, exc, False)
                if torn is not None:
                    unreadable(*torn, True)
            remaining: list[bytes] = []
            error: BaseException | None = None
            for index, (line, signal) in enumerate(readable):
                try:
                    if store(signal):
                        stored += 1
                    else:
                        duplicates += 1
                except (sqlite3.Error, OSError) as exc:
                    if not is_retryable(exc):
                        reject(line, exc)
                        continue
                    error, remaining = exc, [line for line, _ in readable[index:]]
                    break
            if not remaining:
                os.unlink(self.path)
                _fsync_dir(self.path.parent)
            elif set_aside or torn is not None or len(remaining) < len(readable):
                self._replace(b"".join(line + b"\n" for line in remaining))
            if error is not None:
                raise error
        return stored, duplicates

    def _replace(self, data: bytes) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)

    def reject(self, *lines: bytes) -> None:
        """Append lines to the rejected file, kept for a person to look at; fsync'ed before returning."""
        created = not self.rejected_path.exists()
        with self.rejected_path.open("ab") as handle:
            handle.write(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            _fsync_dir(self.rejected_path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _fsync_dir(folder: Path) -> None:
    """Make a created, renamed or removed file name durable too."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


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
        self.spool = Spool(self._path.resolve().with_name(self._path.name + ".spool.jsonl"))
        self._unspooled: list[Signal] = []  # last resort when even the spool cannot be written
        self._pending_latency: tuple[int, float] | None = None  # (signal id, sink ms) not yet in its row

    @property
    def path(self) -> Path:
        return self._path.resolve()

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
        if self.spool.exists():
            try:
                self._replay()
            except (sqlite3.Error, OSError) as exc:
                self._disconnect()
                log.error("sqlite sink could not store its spooled signals yet", path=str(self.path), spool=str(self.spool.path), error=describe(exc))

    def _connect(self) -> None:
        """Connect, migrate and register the run; leaves no connection behind on failure."""
        assert self._run is not None
        connection = connect(self._path, self.config.busy_timeout_ms)
        try:
            applied = ensure_schema(connection, self._run.v7_version)
            if applied and self._log is not None and applied != list(range(1, SCHEMA_VERSION + 1)):
                self._log.info("sqlite schema upgraded", path=str(self.path), migrations=applied, schema_version=SCHEMA_VERSION)
            run = self._run
            connection.execute(
                "INSERT OR IGNORE INTO runs (run_id, config_hash, config_path, v7_version, plugin_versions, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run.run_id, run.config_hash, run.config_path, run.v7_version, json.dumps(run.plugin_versions, sort_keys=True), iso(run.started_at)),
            )
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _disconnect(self) -> None:
        """Drop the connection after a storage error: a read-only fallback or a stale lock is not reused."""
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None

    # -- writing ----------------------------------------------------------------------------

    def write(self, signal: Signal) -> bool:
        if self._run is None:
            raise RuntimeError("sqlite sink used before open()")
        try:
            if self._connection is None:
                self._connect()
            if self._unspooled or self.spool.exists():
                self._replay()
            return self._insert(signal)
        except SqliteSinkError as exc:  # reconnecting found a database this V7 must not write (e.g. a newer schema)
            self._disconnect()
            where = self._keep(signal)
            raise SqliteSinkError(f"sqlite sink: {self.path}: {exc}; signal {signal.symbol} {iso(signal.bar_time)} {where}") from exc
        except (sqlite3.Error, OSError) as exc:
            if not is_retryable(exc):
                raise SqliteSinkError(f"sqlite sink: cannot store {signal.symbol} {iso(signal.bar_time)} in {self.path}: {describe(exc)}") from exc
            self._disconnect()
            where = self._keep(signal)
            raise SqliteSinkError(
                f"sqlite sink: cannot write {self.path}: {describe(exc)}; signal {signal.symbol} {iso(signal.bar_time)} {where}"
            ) from exc

    def _keep(self, signal: Signal) -> str:
        """Spool a signal that could not be stored; say where it went."""
        try:
            self.spool.append(signal)
        except OSError as exc:
            self._unspooled.append(signal)
            return (
                f"could not be spooled to {self.spool.path} ({exc.strerror}) and is held in memory "
                f"({len(self._unspooled)} waiting) until the database can be written"
            )
        return f"spooled to {self.spool.path} ({len(self.spool)} waiting); stored at the next successful write"

    def _replay(self) -> None:
        """Store spooled signals (file first, then any held in memory), each exactly once."""
        stored = duplicates = 0
        if self.spool.exists():
            stored, duplicates = self.spool.replay(self._insert, self._reject, self._unreadable)
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

    def _reject(self, line: bytes, exc: BaseException) -> None:
        self.spool.reject(line)
        if self._log is not None:
            self._log.error(
                "sqlite sink refused a spooled signal; moved aside", path=str(self.path),
                rejected=str(self.spool.rejected_path), error=describe(exc),
            )

    def _unreadable(self, number: int, line: bytes, exc: ValueError, torn: bool) -> None:
        """Log a spool line that is not a valid signal: dropped when torn by a crash, else moved aside."""
        if self._log is None:
            return
        fields = dict(sink=self.name, path=str(self.path), spool=str(self.spool.path), line=number, error=_validation_error(exc))
        if torn:
            self._log.warning("sqlite sink dropped the torn last line of its spool (an append cut short by a crash)", **fields)
        else:
            self._log.error(
                "sqlite sink cannot read a spooled signal (written by another V7 version, edited or damaged); moved aside",
                rejected=str(self.spool.rejected_path), **fields,
            )

    def _insert(self, signal: Signal) -> bool:
        """One transaction: the previous signal's sink latency, the signal, its theory results."""
        connection = self._connection
        if connection is None:
            self._connect()
            connection = self._connection
        assert connection is not None
        started = time.perf_counter()
        usage = signal.usage
        connection.execute("BEGIN IMMEDIATE")
        try:
            if self._pending_latency is not None:
                connection.execute("UPDATE signals SET sink_ms = ? WHERE id = ?", (self._pending_latency[1], self._pending_latency[0]))
            cursor = connection.execute(
                """INSERT OR IGNORE INTO signals (run_id, symbol, granularity, bar_time, created_at, direction, confidence,
                    price, synthesizer, fallback_reason, attempts, reasoning, config_hash, prompt_tokens,
                    completion_tokens, cache_hit_tokens, cache_miss_tokens, cost, context, context_error, prompt, timings,
                    stored_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    signal.run_id, signal.symbol, signal.granularity, iso(signal.bar_time), iso(signal.created_at),
                    signal.direction, signal.confidence, signal.price, signal.synthesizer, signal.fallback_reason,
                    signal.attempts, signal.reasoning, signal.config_hash or "",
                    usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
                    usage.cache_hit_tokens if usage else None, usage.cache_miss_tokens if usage else None,
                    usage.cost if usage else None,
                    signal.context.model_dump_json() if signal.context else None, signal.context_error,
                    signal.prompt if self.config.store_prompt else None,
                    json.dumps({k: v for k, v in signal.timings_ms.items() if k != "sink"}, sort_keys=True),
                    iso(datetime.now(timezone.utc)),
                ),
            )
            if cursor.rowcount == 0:
                connection.execute("COMMIT")  # keeps the latency update
                self._pending_latency = None
                return False
            signal_id = cursor.lastrowid
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
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        assert signal_id is not None
        self._pending_latency = (signal_id, round((time.perf_counter() - started) * 1000, 3))
        return True

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Store what waits if the database can be written now; leave the rest in the spool for the next open.

        Signals held only in memory (neither the database nor the spool could be written) get a last
        try: the database, then the spool. Each one that still cannot be saved is logged at error
        level with its key and its JSON, the only copy left.
        """
        if self._unspooled and self._run is not None:
            self._save_held()
        spooled = len(self.spool)
        if spooled and self._log is not None:
            self._log.error(
                "sqlite sink closes with signals not yet in the database; they are stored at the next open",
                path=str(self.path), spool=str(self.spool.path), waiting=spooled,
            )
        if self._connection is None:
            return
        try:
            if self._pending_latency is not None:
                self._connection.execute("UPDATE signals SET sink_ms = ? WHERE id = ?", (self._pending_latency[1], self._pending_latency[0]))
                self._pending_latency = None
            self._connection.execute(
                "UPDATE runs SET stopped_at = ? WHERE run_id = ?", (iso(datetime.now(timezone.utc)), self._run.run_id if self._run else None)
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
            try:
                self.spool.append(signal)
            except OSError as exc:
                lost.append((signal, exc))
        self._unspooled = [signal for signal, _ in lost]
        if self._log is None:
            return
        for signal, exc in lost:
            self._log.error(
                "sqlite sink closes without saving a signal: neither the database nor the spool can be written; "
                "its JSON is in this log line",
                sink=self.name, path=str(self.path), spool=str(self.spool.path), symbol=signal.symbol,
                granularity=signal.granularity, bar_time=iso(signal.bar_time), config_hash=signal.config_hash,
                error=describe(exc), signal=signal.model_dump_json(),
            )


@hookimpl
def register_sinks(register):
    register(SqliteSink)
