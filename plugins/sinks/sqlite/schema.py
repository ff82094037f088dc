"""The sqlite sink's database format: schema versions, migrations, connections.

Unique key of a signal: (symbol, granularity, bar_time, config_hash). The schema carries a
version; an older database is upgraded in place by the migrations in `MIGRATIONS` when the sink
(or a backtest that stores its result) opens it for writing. Readers never migrate.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from v7 import SignalHeld, SignalSpooled, create_private, format_utc

SCHEMA_VERSION = 4

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
    3: [
        # The suggested signed fraction of capital (docs/sizing.md); rows stored before v3 suggested none: 0.
        "ALTER TABLE signals ADD COLUMN position REAL NOT NULL DEFAULT 0",
        # How it was sized, in a line; NULL on rows stored before v3 (they were never sized).
        "ALTER TABLE signals ADD COLUMN sizing TEXT",
    ],
    4: [
        # Covering indexes for `summary()` (v7 stats, the dashboard's overview): its aggregates read
        # these, never the rows (summary.py). Grouped by symbol, synthesizer, direction in index order.
        """CREATE INDEX signals_summary ON signals (symbol, synthesizer, direction, created_at, confidence, bar_time,
    attempts, fallback_reason, prompt_tokens, completion_tokens, cache_hit_tokens, cache_miss_tokens, cost, stored_at)""",
        # Each stage's latency in value order, so a percentile is read at its rank (the expression is summary.stage_expression).
        *(f"CREATE INDEX signals_{stage}_ms ON signals ((CASE WHEN json_valid(timings) THEN json_extract(timings, '$.{stage}') END), created_at)"
          for stage in ("feed", "theories", "formatters", "synthesizer")),
        "CREATE INDEX signals_sink_ms ON signals (sink_ms, created_at)",
        "CREATE INDEX theory_results_elapsed ON theory_results (theory, status, elapsed_ms, signal_id, position)",
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


class SqliteSinkSpooled(SqliteSinkError, SignalSpooled):
    """The signal was not stored now; it waits in a spool file and is stored at a later write or open."""


class SqliteSinkHeld(SqliteSinkError, SignalHeld):
    """The signal was stored nowhere and could not be spooled; it is held in memory until close."""


def is_retryable(exc: BaseException) -> bool:
    """True for failures of the storage (lock, permissions, space, I/O), not of the data."""
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (code is None or (code & 0xFF) in RETRYABLE_CODES)



def describe(exc: BaseException) -> str:
    """The cause of a storage failure in words, with SQLite's own message and code."""
    code = getattr(exc, "sqlite_errorcode", None)
    cause = RETRYABLE_CODES.get(code & 0xFF) if isinstance(code, int) else None
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    return f"{cause} ({name}: {exc})" if cause else f"{name}: {exc}"


def connect(path: Path, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """A writer connection: WAL (readers never block it), synchronous=FULL (a commit is on disk), foreign keys on."""
    if str(path) != ":memory:":
        create_private(path)  # prompts and reasoning: owner only; SQLite gives -wal/-shm the same mode
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
                    (target, format_utc(datetime.now(timezone.utc)), v7_version),
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
    connection = _read_only_connection(path, timeout_s)
    version = schema_version(connection)
    if not version:
        connection.close()
        raise SqliteSinkError(f"{path.resolve()} is not a V7 database (no schema_version)")
    if version > SCHEMA_VERSION:
        connection.close()
        raise SqliteSinkError(f"{path.resolve()}: schema version {version} is newer than this V7 understands ({SCHEMA_VERSION})")
    return connection


def _read_only_connection(path: Path, timeout_s: float) -> sqlite3.Connection:
    """`mode=ro`; on read-only media, where SQLite cannot create the WAL index (-shm), `immutable=1`.

    Immutable ignores a -wal file, so it is used only when no WAL with commits is beside the database.
    """
    uri = f"file:{quote(str(path.resolve()))}"
    connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout_s, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError as exc:
        connection.close()
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
            raise SqliteSinkError(f"cannot read {path.resolve()}: {describe(exc)}") from exc
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise SqliteSinkError(
                f"cannot read {path.resolve()} on read-only media: its WAL {wal} holds commits that SQLite can read "
                "only where it can create the WAL index; copy the database with its -wal to writable storage"
            ) from exc
    connection = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout_s, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection


def columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]



# Backtest results kept beside the signals (`SqliteReader.save_backtest`); created on the first save,
# not a migration: a database without backtests has the same schema version.
BACKTESTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS backtests (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config_path TEXT,
    v7_version TEXT NOT NULL,
    granularity TEXT NOT NULL,
    symbols TEXT NOT NULL,
    range_start TEXT NOT NULL,
    range_end TEXT NOT NULL,
    bars INTEGER NOT NULL,
    settings TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backtests_config_hash ON backtests (config_hash, created_at);
"""
