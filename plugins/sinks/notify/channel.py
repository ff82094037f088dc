"""One notification channel: an Apprise URL with its own worker thread, bounded queue and rate
limit, so a slow, hanging or failing channel delays neither the run nor another channel."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from .applog import captured
from .config import NotifyConfig
from .messages import Message
from .ratelimit import Held, RateLimit
from .redact import Scrubber, redacted

_STOP = object()


class ChannelError(ValueError):
    """A URL Apprise cannot use; the message names the channel redacted."""


def _asset(apprise: Any) -> Any:
    """Settings that make Apprise send in the calling thread, the channel's daemon worker: with its
    own pool (Apprise 2's service timeout), a hanging send would hold the process at exit."""
    try:
        return apprise.AppriseAsset(async_mode=False, service_timeout=0)
    except (TypeError, AttributeError):  # Apprise 1 sends in the calling thread anyway
        return apprise.AppriseAsset(async_mode=False)


def with_timeouts(url: str, seconds: float) -> str:
    """`url` with Apprise's connect and read timeouts (`cto`, `rto`) unless it sets them itself."""
    query = url.split("?", 1)[1] if "?" in url else ""
    names = {pair.split("=", 1)[0] for pair in query.split("&") if pair}
    extra = "&".join(f"{name}={seconds:g}" for name in ("cto", "rto") if name not in names)
    return url if not extra else f"{url}{'&' if '?' in url else '?'}{extra}"


class Channel:
    """Counts: `sent`, `failed`, `dropped` (queue full or left at close), `digested` (held back, then summed up)."""

    def __init__(self, url: str, config: NotifyConfig, scrub: Scrubber, log: Any, position: int) -> None:
        import apprise  # heavy: imported when a run opens the sink, not when V7 lists plugins

        self.name = f"#{position + 1} {redacted(url)}"  # the number tells apart channels on one host
        self.config, self.scrub, self.log = config, scrub, log
        self.apprise = apprise.Apprise(asset=_asset(apprise))
        if not self.apprise.add(with_timeouts(url, config.timeout_seconds)):  # what Apprise logs of it stays in Apprise's log
            raise ChannelError(f"urls[{position}]: {redacted(url)} is not a URL Apprise can send to (see https://github.com/caronc/apprise/wiki)")
        self.limit = RateLimit(config.min_interval_seconds, config.rate_limit, config.rate_window_seconds)
        self.held = Held()
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=config.queue_size)
        self.sent = self.failed = self.dropped = self.digested = 0
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"notify-{position}", daemon=True)
        self._thread.start()

    def put(self, message: Message) -> None:
        """Queue a message; never blocks (a full queue drops it, counted and logged)."""
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
            self.log.warning("notification queue full; message dropped", channel=self.name, kind=message.kind, dropped=self.dropped)

    def stop(self) -> None:
        """Ask the worker to send what is queued, and the digest of what is held, then end."""
        try:
            self.queue.put_nowait(_STOP)
        except queue.Full:  # a stuck channel with a full queue: the join's timeout ends the wait
            self._abandon.set()

    def join(self, timeout: float) -> bool:
        """Wait for the worker; False when it is still busy (a hanging channel), its queue then dropped."""
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive():
            self._abandon.set()
            self.dropped += sum(item is not _STOP for item in list(self.queue.queue)) + len(self.held)
            return False
        return True

    # -- the worker -------------------------------------------------------------------------

    def _work(self) -> None:
        closing = False
        while not self._abandon.is_set():
            timeout = None if not len(self.held) else (0.0 if closing else self.limit.wait_s())
            try:
                item = self.queue.get(timeout=timeout) if not closing else self.queue.get_nowait()
            except queue.Empty:
                item = None
            if item is _STOP:
                closing = True
            elif item is not None:
                if len(self.held) or self.limit.over():
                    self.held.add(item)  # once holding, everything waits for the digest: order kept
                else:
                    self._pace()
                    self._send(item)
            if len(self.held) and (closing or not self.limit.over()):
                if not closing:
                    self._pace()
                self.digested += len(self.held)
                self._send(self.held.digest(self.config.title))
            if closing and item is None:
                return

    def _pace(self) -> None:
        wait = self.limit.wait_s()
        if wait > 0:
            self._abandon.wait(wait)

    def _send(self, message: Message) -> None:
        started = time.monotonic()
        self.limit.sent()
        error = None
        with captured() as lines:
            try:
                ok = bool(self.apprise.notify(body=message.body, title=message.title, notify_type=message.level))
            except Exception as exc:  # Apprise or a plugin of it failing: counted, never raised into the run
                ok, error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.sent += 1
            return
        self.failed += 1
        reason = self.scrub(error or "; ".join(lines) or "Apprise reported a failure")
        self.log.warning(
            "notification failed", channel=self.name, kind=message.kind, reason=reason, failures=self.failed,
            elapsed_s=round(time.monotonic() - started, 3),
        )
