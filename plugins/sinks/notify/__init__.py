"""The notify sink: BUY/SELL signals and run problems to chat, push and webhook channels through
Apprise (Telegram, Discord, Slack, e-mail, ntfy, JSON webhooks, ... from one list of URLs); see
docs/notifications.md.

- `config`: `NotifyConfig`, the `[sinks.notify]` table;
- `choose`: which signals and problems are sent (filters, changes only, dedup);
- `messages`: the text of a signal, a problem, a digest;
- `ratelimit`: a channel's rate limit and what it holds back for the digest;
- `channel`: one URL with its worker thread and bounded queue;
- `redact`: channels named without their tokens; `applog`: Apprise's log kept out of V7's;
- `sink`: `NotifySink`.
"""

from __future__ import annotations

from v7 import hookimpl

from .config import NotifyConfig
from .redact import Scrubber, redacted
from .sink import NotifyError, NotifySink, channel_urls

__all__ = ["NotifyConfig", "NotifyError", "NotifySink", "Scrubber", "channel_urls", "redacted", "register_sinks"]


@hookimpl
def register_sinks(register):
    register(NotifySink)
