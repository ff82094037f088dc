"""HTTP for plugins: a token-bucket rate limiter, one retry policy, JSON-or-clear-error parsing, secret scrubbing.

Public and stable: built-in feeds and the DeepSeek synthesizer use it as a third party would.
`backoff_delay` and `parse_retry_after` are the one implementation of jittered backoff and of
reading `retry-after` (seconds, an HTTP date, or `retry-after-ms`) in V7.

Retries of `JsonHttpClient` are decided here and only here, so a test can count requests and know why each was made:
429 waits for `retry-after` (bounded), 5xx / timeouts / connection errors back off exponentially
with jitter, any other 4xx is a clear error at once, and a body that is not JSON (an HTML page
from a CDN, a truncated reply) is a clear error, never a crash. httpx is imported lazily so
`v7 plugins` stays fast.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from v7.core.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    import httpx


class FeedError(Exception):
    """A feed could not deliver; the message says which request failed and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FeedRequestError(FeedError):
    """The server refused the request (a 4xx other than 429): retrying will not help."""


class FeedUnavailableError(FeedError):
    """Server errors, timeouts or connection failures that outlasted the retries."""


class FeedRateLimitedError(FeedUnavailableError):
    """Still rate limited (429) after the retries, or asked to wait longer than allowed."""


class FeedResponseError(FeedError):
    """The server answered, but not with the JSON expected (HTML page, truncated or malformed body)."""


class FeedClosedError(FeedError):
    """The feed was closed while a request was waiting."""


class RateLimiter:
    """A thread-safe token bucket: `rate` requests per second on average, bursts of up to `burst`.

    Each caller reserves a token under the lock and sleeps outside it, so callers on many threads
    proceed concurrently, in arrival order, and never exceed the rate together.
    """

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = max(1.0, float(burst))
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; return the seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, stop: threading.Event | None = None) -> None:
        wait = self.reserve()
        if wait <= 0:
            return
        if stop is None:
            time.sleep(wait)
        elif stop.wait(wait):
            raise FeedClosedError("feed closed while waiting for the rate limiter")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait; `max_retry_after` bounds a server's `retry-after`."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        """The wait before retry number `attempt + 1` (attempt counts from 0)."""
        return backoff_delay(attempt, self.backoff_base, self.backoff_max)


def backoff_delay(attempt: int, base: float, ceiling: float, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter: a delay in [d/2, d], d = min(ceiling, base · 2**attempt).

    `attempt` counts from 0. A server's `retry_after` is a floor; the result never exceeds `ceiling`.
    """
    delay = min(ceiling, base * (2**attempt))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, ceiling)


_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret in `text`, and any bearer token, by ***: messages and logs must never carry a key."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


def parse_retry_after(value: str | Mapping[str, str] | None) -> float | None:
    """Seconds to wait from a `retry-after` value (a number or an HTTP date), or from response headers
    (`retry-after-ms` first, then `retry-after`); None when absent or unreadable."""
    if value is not None and not isinstance(value, str):
        milliseconds = value.get("retry-after-ms")
        if milliseconds:
            try:
                return max(0.0, float(milliseconds) / 1000)
            except ValueError:
                pass
        value = value.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        from datetime import timezone

        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - time.time())


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def describe_body(text: str, limit: int = 200) -> str:
    """A short, readable account of an error body: the server's message, an HTML page's title, or a snippet."""
    stripped = text.strip()
    if not stripped:
        return "empty body"
    try:
        data = json.loads(stripped)
    except ValueError:
        data = None
    else:
        message = _json_message(data)
        if message:
            return message[:limit]
        return json.dumps(data, separators=(",", ":"))[:limit]
    lowered = stripped[:500].lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered or "<body" in lowered:
        match = _TITLE.search(stripped)
        title = " ".join(match.group(1).split()) if match else ""
        return f"an HTML page{f' ({title[:limit]!r})' if title else ''} instead of JSON"
    snippet = " ".join(stripped.split())
    return f"a non-JSON body starting {snippet[:80]!r}"


def _json_message(data: Any) -> str | None:
    """The human message in the error shapes the APIs use: {"message"}, {"error"}, {"status":{"error_message"}}."""
    if not isinstance(data, dict):
        return None
    for key in ("message", "error", "error_message"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            inner = _json_message(value)
            if inner:
                return inner
    status = data.get("status")
    if isinstance(status, dict):
        message = status.get("error_message")
        code = status.get("error_code")
        if message:
            return f"{message} (error_code {code})" if code is not None else str(message)
    return None


def parse_json(text: str, what: str) -> Any:
    """The JSON of a successful reply, or a `FeedResponseError` that says what came instead."""
    try:
        return json.loads(text)
    except ValueError:
        raise FeedResponseError(f"{what}: malformed response: {describe_body(text)}") from None


class JsonHttpClient:
    """One shared, thread-safe httpx client per feed, behind the rate limiter and the retry policy."""

    def __init__(
        self,
        base_url: str,
        *,
        plugin: str,
        connect_timeout: float,
        read_timeout: float,
        limiter: RateLimiter | None,
        retry: RetryPolicy,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.plugin = plugin
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limiter = limiter
        self.retry = retry
        self.headers = dict(headers or {})
        self.max_connections = max_connections
        self.closed = threading.Event()
        self._client: "httpx.Client | None" = None
        self._lock = threading.Lock()

    def _http(self) -> "httpx.Client":
        with self._lock:
            if self.closed.is_set():
                raise FeedClosedError(f"{self.plugin}: feed is closed")
            if self._client is None:
                import httpx

                from v7.core import __version__

                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout, pool=self.read_timeout + self.connect_timeout),
                    limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
                    headers={"user-agent": f"v7/{__version__}", "accept": "application/json", **self.headers},
                    follow_redirects=False,
                )
            return self._client

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str | None] = (),
        log: Any = None,
    ) -> Any:
        """GET `path` and return its JSON; raises a `FeedError` subclass with a clear message otherwise."""
        import httpx

        secrets = [s for s in secrets if s]
        log = log or get_logger(plugin=self.plugin)
        what = f"{self.plugin}: GET {path}"
        client = self._http()
        attempts = self.retry.max_retries + 1
        problem = "no attempt made"
        for attempt in range(attempts):
            if self.limiter is not None:
                self.limiter.acquire(self.closed)
            if self.closed.is_set():
                raise FeedClosedError(f"{what}: feed is closed")
            wait: float | None = None
            try:
                response = client.get(self.base_url + path, params=params, headers=headers)
            except httpx.TimeoutException as exc:
                problem = f"timed out ({type(exc).__name__}, read timeout {self.read_timeout:g} s)"
            except httpx.TransportError as exc:
                problem = scrub(f"connection failed ({type(exc).__name__}: {exc})", secrets)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        return parse_json(response.text, what)
                    except FeedResponseError as exc:
                        raise FeedResponseError(scrub(str(exc), secrets), status) from None
                message = scrub(describe_body(response.text), secrets)
                if status == 429:
                    retry_after = parse_retry_after(response.headers)
                    if retry_after is not None and retry_after > self.retry.max_retry_after:
                        raise FeedRateLimitedError(
                            f"{what}: HTTP 429 rate limited; the server asks to wait {retry_after:g} s, more than "
                            f"max_retry_after_seconds={self.retry.max_retry_after:g}: {message}",
                            status,
                        )
                    problem = f"HTTP 429 rate limited: {message}"
                    if retry_after is not None:
                        wait = retry_after
                    if attempt == attempts - 1:
                        raise FeedRateLimitedError(f"{what}: {problem} (gave up after {attempts} attempts)", status)
                elif status >= 500 or status == 408:
                    problem = f"HTTP {status}: {message}"
                else:
                    raise FeedRequestError(f"{what}: HTTP {status}: {message}", status)
            if attempt == attempts - 1:
                break
            wait = self.retry.backoff(attempt) if wait is None else wait
            log.warning("request failed; retrying", request=f"GET {path}", problem=problem, attempt=attempt + 1, wait_seconds=round(wait, 3))
            if self.closed.wait(wait):
                raise FeedClosedError(f"{what}: feed closed while waiting to retry")
        raise FeedUnavailableError(f"{what}: {problem} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})")

    def close(self) -> None:
        self.closed.set()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
