"""New signals as Server-Sent Events: the page's rows arrive as escaped HTML, swapped in by htmx's
sse extension, with the values the charts need in `data-` attributes.

The stream polls the reader's `page(after_id=…)` (the primary key: ids 1, 2, … in the order stored) every `poll_s`,
so a signal `v7 run` commits appears within about a second; a reconnecting browser sends
`Last-Event-ID` and misses nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

if TYPE_CHECKING:  # pragma: no cover
    from .app import Dashboard

KEEPALIVE_S = 15.0
BATCH = 100


def event(name: str, data: str, event_id: int | None = None) -> str:
    """One SSE message; every line of `data` gets its own `data:` field, as the format requires."""
    lines = [f"event: {name}"] + ([f"id: {event_id}"] if event_id is not None else [])
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


async def stream(dash: "Dashboard", request: Any, after_id: int | None, symbol: str | None) -> AsyncIterator[str]:
    """Every signal stored after `after_id` (default: the newest now), oldest first, as `signal` events."""
    from starlette.concurrency import run_in_threadpool

    from ..reading import SignalQuery

    query = SignalQuery(symbol=symbol) if symbol else None
    if after_id is None:
        newest = await run_in_threadpool(dash.store.read, lambda reader: reader.page(query, limit=1))
        after_id = newest[0].id if newest else 0
    template = dash.templates.get_template("partials/signal_row.html")
    yield "retry: 2000\n\n"
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        last = after_id
        new = await run_in_threadpool(dash.store.read, lambda reader: reader.page(query, after_id=last, limit=BATCH))
        for signal in reversed(new):  # page() answers newest first
            yield event("signal", template.render(s=signal, live=True), signal.id)
            after_id = signal.id
        if new:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        if len(new) < BATCH:
            await asyncio.sleep(dash.settings.poll_s)
