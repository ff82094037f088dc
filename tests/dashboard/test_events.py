"""The live feed: new signals as Server-Sent Events, oldest first, each an escaped HTML row."""

from __future__ import annotations

import asyncio

from dash_setup import XSS, app_over, sample, write
from v7.core.dashboard.sse import event, stream


class Request:
    """Stands in for Starlette's request: connected for `polls` checks, then gone."""

    def __init__(self, polls: int) -> None:
        self.polls = polls

    async def is_disconnected(self) -> bool:
        self.polls -= 1
        return self.polls < 0


def collect(dash, polls: int, after: int | None, symbol: str | None = None) -> list[str]:
    async def run() -> list[str]:
        return [message async for message in stream(dash, Request(polls), after, symbol)]

    return asyncio.run(run())


def test_an_event_has_one_data_line_per_line():
    assert event("signal", "<tr>\n<td>x</td></tr>", 7) == "event: signal\nid: 7\ndata: <tr>\ndata: <td>x</td></tr>\n\n"


def test_signals_stored_after_the_last_seen_id_arrive_oldest_first_and_escaped(db):
    _, dash = app_over(db, poll_s=0.01)
    messages = collect(dash, 1, after=20)
    signals = [m for m in messages if m.startswith("event: signal")]
    assert [m.split("\n")[1] for m in signals] == [f"id: {i}" for i in range(21, 27)]
    assert messages[0] == "retry: 2000\n\n"
    write(db, sample(1, start=60, run_id="run9", reasoning=XSS), run_id="run9")
    new = [m for m in collect(dash, 1, after=26) if m.startswith("event: signal")]
    assert len(new) == 1 and "id: 27" in new[0] and "&lt;script&gt;alert(1)&lt;/script&gt;" in new[0] and XSS not in new[0]
    assert 'data-symbol="BTC-USD"' in new[0] and 'data-direction="BUY"' in new[0]


def test_without_an_id_the_stream_starts_at_the_newest_and_filters_by_symbol(db):
    _, dash = app_over(db, poll_s=0.01)
    assert [m for m in collect(dash, 2, after=None) if m.startswith("event:")] == []
    eth = [m for m in collect(dash, 1, after=0, symbol="ETH-USD") if m.startswith("event:")]
    assert len(eth) == 13 and all('data-symbol="ETH-USD"' in m for m in eth)
