"""`NotifySink`: sends chosen signals and run problems to every channel, off the run's path.

`write` and `notice` only choose and queue (microseconds); each channel's worker sends. The sink
stores nothing (`stores = False`), so it never counts a signal as stored that the stores lost.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from v7 import RunInfo, RunProblem, Signal, Sink

from .channel import Channel
from .choose import ProblemChoice, SignalChoice
from .config import NotifyConfig
from .messages import problem_message, signal_message
from .redact import Scrubber


class NotifyError(ValueError):
    """The sink cannot start: no channel, or a URL Apprise cannot use (named redacted)."""


def channel_urls(config: NotifyConfig) -> list[str]:
    """`urls` and those in the variable `urls_env` names (commas, spaces or newlines between them)."""
    urls = [url.strip() for url in config.urls if url.strip()]
    if config.urls_env is not None:
        found = [url for url in re.split(r"[\s,]+", os.environ.get(config.urls_env, "")) if url]
        if not found:
            raise NotifyError(f"notify sink: urls_env: environment variable {config.urls_env} is not set or holds no URL")
        urls += found
    if not urls:
        raise NotifyError("notify sink: no channel: set urls = [...] or urls_env = \"V7_NOTIFY_URLS\" under [sinks.notify]")
    return urls


class NotifySink(Sink):
    name = "notify"
    version = "1.0"
    Config = NotifyConfig
    stores = False

    def __init__(self, config: NotifyConfig | None = None) -> None:
        super().__init__(config)
        self.channels: list[Channel] = []
        self._signals = SignalChoice(self.config)
        self._problems = ProblemChoice(self.config)
        self._log: Any = None

    def open(self, run: RunInfo, log: Any) -> None:
        from .applog import quiet_apprise

        quiet_apprise()
        urls = channel_urls(self.config)
        scrub = Scrubber(urls)
        self._log = log
        try:
            for position, url in enumerate(urls):
                self.channels.append(Channel(url, self.config, scrub, log, position))
        except ValueError as exc:
            self.close()
            raise NotifyError(f"notify sink: {exc}") from None
        log.info("notify sink open", channels=[c.name for c in self.channels])

    def write(self, signal: Signal) -> bool:
        if not self.channels:
            raise RuntimeError("notify sink used before open()")
        if not self._signals.wanted(signal):
            return False
        self._send(signal_message(signal, self.config.title))
        return True

    def notice(self, problem: RunProblem) -> None:
        if self.channels and self._problems.wanted(problem):
            self._send(problem_message(problem, self.config.title))

    def _send(self, message: Any) -> None:
        for channel in self.channels:
            channel.put(message)

    def close(self) -> None:
        """Let each channel send what is queued, all within `close_timeout_seconds`; then report the counts."""
        deadline = time.monotonic() + self.config.close_timeout_seconds
        for channel in self.channels:
            channel.stop()
        for channel in self.channels:
            if not channel.join(deadline - time.monotonic()) and self._log is not None:
                self._log.warning("notification channel still busy at close; what it had queued is dropped", channel=channel.name)
        if self._log is not None and self.channels:
            for channel in self.channels:
                self._log.info(
                    "notification channel closed", channel=channel.name, sent=channel.sent, failed=channel.failed,
                    dropped=channel.dropped, digested=channel.digested,
                )
        self.channels = []
