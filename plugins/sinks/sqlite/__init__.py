"""The sqlite sink, the default store (see docs/storage.md).

- `schema`: schema versions, migrations, `connect`, `ensure_schema`, `open_reader`;
- `spool`: `Spool`, where signals wait while the database cannot be written;
- `sink`: `SqliteSink` and its config;
- `reader`: `SqliteReader`, what `SqliteSink.reader()` returns (`v7 stats`, `v7 export`, backtests).
"""

from __future__ import annotations

from v7 import hookimpl

from . import schema
from .reader import SqliteReader
from .schema import (
    BACKTESTS_SCHEMA, MIGRATIONS, RETRYABLE_CODES, SCHEMA_VERSION, SqliteSinkError, columns, connect, describe,
    ensure_schema, is_retryable, open_reader, schema_version,
)
from .sink import SqliteConfig, SqliteSink
from .spool import Spool, spool_path_for

__all__ = [
    "BACKTESTS_SCHEMA", "MIGRATIONS", "RETRYABLE_CODES", "SCHEMA_VERSION", "Spool", "SqliteConfig", "SqliteReader",
    "SqliteSink", "SqliteSinkError", "columns", "connect", "describe", "ensure_schema", "is_retryable", "open_reader",
    "register_sinks", "schema", "schema_version", "spool_path_for",
]


@hookimpl
def register_sinks(register):
    register(SqliteSink)
