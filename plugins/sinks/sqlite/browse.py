"""The sqlite reader's browsing queries, for dashboards: pages of signals by id, one signal, the
latest per symbol, the runs still writing, the stored backtests.

Each reads through an index (the primary key, `signals_symbol_time`, `signals_created_at`) and
only the rows it returns, so it answers in milliseconds however many signals the store holds.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from v7 import SignalQuery, StoredBacktest, StoredSignal, format_utc, parse_utc


def backtest_from_row(row: sqlite3.Row) -> StoredBacktest:
    """A `backtests` row as the reader returns it."""
    import json

    return StoredBacktest(
        id=row["id"], created_at=parse_utc(row["created_at"]), config_hash=row["config_hash"], config_path=row["config_path"],
        v7_version=row["v7_version"], granularity=row["granularity"], symbols=json.loads(row["symbols"]),
        range_start=parse_utc(row["range_start"]), range_end=parse_utc(row["range_end"]), bars=row["bars"],
        settings=json.loads(row["settings"] or "{}"), result_json=row["summary"],
    )


class BrowseQueries:
    """Mixed into `SqliteReader`, whose `connection`, `_where`, `_select` and `_iterate` it uses."""

    connection: sqlite3.Connection

    def _rows_by_id(self, ids_sql: str, params: list[Any], with_prompt: bool, order: str = "s.id DESC") -> list[StoredSignal]:
        """The signals whose ids `ids_sql` picks (from an index), read row by row in `order`."""
        connection = self.connection
        cursor = connection.execute(
            f"SELECT {self._select(connection, with_prompt)} FROM signals s WHERE s.id IN ({ids_sql}) ORDER BY {order}",
            params,
        )
        return list(self._iterate(connection, cursor))

    def page(
        self, query: SignalQuery | None = None, *, after_id: int | None = None, before_id: int | None = None,
        limit: int = 50, with_prompt: bool = False,
    ) -> list[StoredSignal]:
        where, params = self._where(query)
        if after_id is not None:
            where, params = f"{where} AND s.id > ?", [*params, after_id]
        if before_id is not None:
            where, params = f"{where} AND s.id < ?", [*params, before_id]
        # After an id: the oldest new ones, so a live feed misses none; else the newest.
        order = "ASC" if after_id is not None else "DESC"
        ids = f"SELECT s.id FROM signals s WHERE {where} ORDER BY s.id {order} LIMIT ?"
        return self._rows_by_id(ids, [*params, max(limit, 0)], with_prompt)

    def signal(self, signal_id: int, *, with_prompt: bool = True) -> StoredSignal | None:
        found = self._rows_by_id("?", [signal_id], with_prompt)
        return found[0] if found else None

    def latest_per_symbol(self, query: SignalQuery | None = None) -> list[StoredSignal]:
        where, params = self._where(query)
        ids = f"SELECT max(s.id) FROM signals s WHERE {where} GROUP BY s.symbol"
        return self._rows_by_id(ids, params, False, order="s.symbol")

    def active_runs(self, since: datetime) -> set[str]:
        rows = self.connection.execute(
            "SELECT DISTINCT run_id FROM signals WHERE created_at >= ? AND run_id IS NOT NULL", (format_utc(since),)
        )
        return {row[0] for row in rows}

    def backtests(self, limit: int = 50) -> list[StoredBacktest]:
        path = getattr(self, "path", None)
        if path is not None and not path.is_file():
            return []
        connection = self.connection
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'backtests'").fetchone() is None:
            return []
        rows = connection.execute("SELECT * FROM backtests ORDER BY id DESC LIMIT ?", (max(limit, 0),))
        return [backtest_from_row(row) for row in rows]
