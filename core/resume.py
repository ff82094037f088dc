"""Resuming a replay: each symbol starts after the last bar already stored for this config.

The core asks the first sink that can read back (`Sink.reader()`) for the newest stored bar per
symbol and hands it to every feed that `resumes` (`Feed.resume_after`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .components import NotSupported
from .logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Pipeline


def resume_feeds(pipeline: "Pipeline") -> dict[str, str]:
    """Tell resuming feeds where each symbol's stored bars end; returns symbol → last stored bar (ISO) for the log."""
    feeds = [feed for feed in pipeline.feeds.values() if feed.resumes and feed.supports("resume_after")]
    if not feeds:
        return {}
    log = get_logger(run_id=pipeline.run_id)
    granularity = pipeline.config.engine.granularity
    last = None
    for sink in pipeline.sinks:
        try:
            with sink.reader() as reader:
                last = reader.last_bar_times(pipeline.config_hash, granularity)
            break
        except NotSupported:
            continue
        except Exception as exc:  # an unreadable store: say so and start from the beginning
            log.warning("resume store unreadable", plugin=sink.name, error=f"{type(exc).__name__}: {exc}")
    if last is None:
        log.warning("resume impossible", reason="no enabled sink can read back stored signals; starting from the start",
                    feeds=[feed.name for feed in feeds])
        return {}
    resumed: dict[str, str] = {}
    for symbol, bar_time in sorted(last.items()):
        for feed in feeds:
            feed.resume_after(symbol, bar_time)
        resumed[symbol] = bar_time.isoformat()
    log.info("resume", config_hash=pipeline.config_hash, last_stored=resumed)
    return resumed
