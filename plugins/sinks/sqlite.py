"""SQLite sink, the default store: WAL mode, one transaction per signal, idempotent per bar.

Unique key of a signal: (symbol, granularity, bar_time, config_hash) — re-running the same
config over the same bars stores nothing twice.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from pydantic import Field

from v7 import PluginConfig, RunInfo, Signal, Sink, hookimpl

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    config_path TEXT,
    v7_version TEXT NOT NULL,
    plugin_versions TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT
);
CREATE TABLE IF NOT EXISTS signals (
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
);
CREATE INDEX IF NOT EXISTS signals_bar_time ON signals (bar_time);
CREATE INDEX IF NOT EXISTS signals_symbol_time ON signals (symbol, bar_time);
CREATE INDEX IF NOT EXISTS signals_direction ON signals (direction);
CREATE TABLE IF NOT EXISTS theory_results (
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
);
CREATE INDEX IF NOT EXISTS theory_results_theory ON theory_results (theory, status);
"""


def iso(moment: datetime) -> str:
    """UTC, second precision, sortable as text."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class SqliteConfig(PluginConfig):
    path: Path = Field(default=Path("v7.db"), description="Database file, relative to the working directory")
    busy_timeout_ms: int = Field(default=5000, ge=0, description="How long to wait for a lock held by a reader or writer")
    store_prompt: bool = Field(default=True, description="Keep the LLM prompt with each signal")


def connect(path: Path, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def ensure_schema(connection: sqlite3.Connection) -> None:
    connection.executescript(SCHEMA)
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    elif row[0] > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {row[0]} is newer than this V7 understands ({SCHEMA_VERSION}); upgrade V7")


class SqliteSink(Sink):
    name = "sqlite"
    version = "1.0"
    Config = SqliteConfig

    def __init__(self, config: SqliteConfig | None = None) -> None:
        super().__init__(config)
        self._connection: sqlite3.Connection | None = None
        self._run_id: str | None = None

    def open(self, run: RunInfo, log) -> None:
        path = self.config.path
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = connect(path, self.config.busy_timeout_ms)
        ensure_schema(self._connection)
        self._run_id = run.run_id
        self._connection.execute(
            "INSERT OR IGNORE INTO runs (run_id, config_hash, config_path, v7_version, plugin_versions, started_at) VALUES (?, ?, ?, ?, ?, ?)",
            (run.run_id, run.config_hash, run.config_path, run.v7_version, json.dumps(run.plugin_versions, sort_keys=True), iso(run.started_at)),
        )
        log.info("sqlite sink open", path=str(path.resolve()))

    def write(self, signal: Signal) -> bool:
        connection = self._connection
        if connection is None:
            raise RuntimeError("sqlite sink used before open()")
        usage = signal.usage
        connection.execute("BEGIN IMMEDIATE")
        try:
            cursor = connection.execute(
                """INSERT OR IGNORE INTO signals (run_id, symbol, granularity, bar_time, created_at, direction, confidence,
                    price, synthesizer, fallback_reason, attempts, reasoning, config_hash, prompt_tokens,
                    completion_tokens, cache_hit_tokens, cache_miss_tokens, cost, context, context_error, prompt, timings)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    signal.run_id, signal.symbol, signal.granularity, iso(signal.bar_time), iso(signal.created_at),
                    signal.direction, signal.confidence, signal.price, signal.synthesizer, signal.fallback_reason,
                    signal.attempts, signal.reasoning, signal.config_hash or "",
                    usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
                    usage.cache_hit_tokens if usage else None, usage.cache_miss_tokens if usage else None,
                    usage.cost if usage else None,
                    signal.context.model_dump_json() if signal.context else None, signal.context_error,
                    signal.prompt if self.config.store_prompt else None, json.dumps(signal.timings_ms, sort_keys=True),
                ),
            )
            if cursor.rowcount == 0:
                connection.execute("ROLLBACK")
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
        return True

    def close(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(
                "UPDATE runs SET stopped_at = ? WHERE run_id = ?", (iso(datetime.now(timezone.utc)), self._run_id)
            )
        finally:
            self._connection.close()
            self._connection = None


@hookimpl
def register_sinks(register):
    register(SqliteSink)
