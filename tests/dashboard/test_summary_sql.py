"""The sqlite reader's `summary()` as the overview uses it: every window, small or big, gives what the
default `summarize` (every StoredSignal read in Python) gives, and on a v4 file it reads only indexes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from dash_setup import sample, write
from helpers import approx_tree
from v7 import SignalQuery
from v7.core.signal_summary import summarize
from v7.plugins.sinks.sqlite import SqliteReader
from v7.plugins.sinks.sqlite import summary as sql_summary

NOW = datetime.now(timezone.utc).replace(microsecond=0)
QUERIES = [
    SignalQuery(), SignalQuery(created_since=NOW - timedelta(minutes=30)), SignalQuery(created_since=NOW - timedelta(minutes=90)),
    SignalQuery(symbol="ETH-USD"), SignalQuery(symbol="BTC-USD", created_since=NOW - timedelta(minutes=45)),
    SignalQuery(direction="HOLD"), SignalQuery(created_since=NOW + timedelta(hours=1)),
]



@pytest.fixture
def spread(tmp_path):
    """40 signals created a minute apart over the last 40 minutes, with varied stage times; then two made an hour
    earlier but stored last (as from a spool): a window is then not every id from its first on."""
    signals = []
    for i, signal in enumerate(sample(40)):
        timings = {"feed": 1.0 + (i * 7) % 11, "theories": 3.0 * (i % 5), "formatters": 0.1, "synthesizer": 0.2 + i}
        signals.append(signal.model_copy(update={"created_at": NOW - timedelta(minutes=40 - i), "timings_ms": timings}))
    db = tmp_path / "v7.db"
    write(db, signals)
    late = [s.model_copy(update={"created_at": NOW - timedelta(minutes=100 + i)}) for i, s in enumerate(sample(2, start=60))]
    write(db, late, run_id="run1")
    return db


@pytest.mark.parametrize("small", [True, False], ids=["small-window-path", "big-window-path"])
def test_every_window_gives_what_summarize_gives(spread, monkeypatch, small):
    if not small:
        monkeypatch.setattr(sql_summary, "SMALL", 1)  # every window through the covering indexes, in value order
    with SqliteReader(spread) as reader:
        for query in QUERIES:
            sql, python = reader.summary(query), summarize(reader, query)
            assert list(sql) == list(python)
            assert sql == approx_tree(python), query
    assert sql["signals"] == 0
    with SqliteReader(spread) as reader:
        assert reader.summary(QUERIES[1])["signals"] == 30 and reader.summary(QUERIES[2])["signals"] == 40
        assert reader.summary()["latency_ms"]["synthesizer"]["max"] == pytest.approx(39.2)


def plans(connection, statements):
    """EXPLAIN QUERY PLAN of every SELECT the summary ran."""
    out = []
    for sql, params in statements:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")) and "sqlite_master" not in sql:
            out.extend(row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    return out


@pytest.mark.parametrize("query", [SignalQuery(), SignalQuery(created_since=NOW - timedelta(minutes=30))], ids=["all", "window"])
def test_a_big_window_reads_only_indexes_in_their_order(spread, monkeypatch, query):
    """No scan of a table, no sort of a whole column: aggregates from covering indexes, percentiles at their rank."""
    monkeypatch.setattr(sql_summary, "SMALL", 1)
    reader = SqliteReader(spread)
    statements: list[tuple[str, list]] = []
    with reader.snapshot() as connection:
        real_execute = connection.execute

        class Traced:
            def execute(self, sql, params=()):
                statements.append((sql, list(params)))
                return real_execute(sql, params)

        sql_summary.summarize_sql(Traced(), query, (0.4, 0.7), 0)
        details = plans(connection, statements)
    reader.close()
    assert len(statements) > 20 and details
    for detail in details:
        assert not re.fullmatch(r"SCAN (signals|theory_results)", detail), detail  # a whole table, row by row
        assert "TEMP B-TREE FOR ORDER BY" not in detail, detail  # a percentile read from a sort, not an index
    assert any("signals_summary" in d for d in details) and any("theory_results_elapsed" in d for d in details)
    assert any("signals_feed_ms" in d for d in details) and any("signals_sink_ms" in d for d in details)
