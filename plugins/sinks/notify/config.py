"""`[sinks.notify]`: which channels, what is sent, and how often each channel may be written to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from v7 import EnvVarName, PluginConfig


class NotifyConfig(PluginConfig):
    # Nothing here shapes a signal: every setting is transport (sinks are out of the config hash anyway).
    transport_fields = frozenset({
        "urls", "urls_env", "symbols", "directions", "min_confidence", "changes_only", "problems", "feed_failures",
        "repeat_problem_minutes", "min_interval_seconds", "rate_limit", "rate_window_seconds", "queue_size",
        "timeout_seconds", "close_timeout_seconds", "title",
    })

    urls: list[str] = Field(
        default_factory=list,
        description="Apprise URLs, one channel each (json://host/path, ntfys://ntfy.sh/topic, tgram://token/chat); URLs with tokens belong in urls_env",
    )
    urls_env: EnvVarName | None = Field(
        default=None, description="Environment variable holding more URLs, separated by commas, spaces or newlines: they hold tokens (secrets)",
    )
    symbols: list[str] = Field(default_factory=list, description="Only signals of these symbols; empty = every symbol")
    directions: list[Literal["BUY", "SELL"]] = Field(default_factory=lambda: ["BUY", "SELL"], description="Which directions are sent (HOLD never is)")
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0, description="Only signals at least this confident")
    changes_only: bool = Field(default=False, description="Only a signal whose direction differs from the symbol's previous signal (HOLD counts as a direction)")
    problems: bool = Field(default=True, description="Send run problems: a feed failing, the LLM budget reached, a store spooling")
    feed_failures: int = Field(default=3, ge=1, description="Iterations in a row a feed must fail for a symbol before it is sent")
    repeat_problem_minutes: float = Field(default=60.0, ge=0.0, description="A problem already sent is sent again after this long at the earliest")
    min_interval_seconds: float = Field(default=1.0, ge=0.0, description="Per channel, the least time between two messages (Telegram: 1 per second per chat)")
    rate_limit: int = Field(default=20, ge=1, description="Per channel, messages per rate window; past it, held back and summed up in one digest (Telegram: 20 per minute per group)")
    rate_window_seconds: float = Field(default=60.0, gt=0.0, description="The rate limit's rolling window")
    queue_size: int = Field(default=1000, ge=1, description="Messages waiting per channel; past it, new ones are dropped and counted")
    timeout_seconds: float = Field(default=10.0, gt=0.0, description="One delivery's connect and read timeouts (Apprise's cto / rto), unless the URL sets them")
    close_timeout_seconds: float = Field(default=10.0, ge=0.0, description="How long close() waits for the channels to send what is queued")
    title: str = Field(default="V7", description="The first word of every message's title")

    def shown(self) -> dict:
        """`urls` as `scheme://host/***`: a URL's path or host may be a token (Telegram's bot token is in it)."""
        from .redact import redacted

        return {**super().shown(), "urls": [redacted(url) for url in self.urls]}
