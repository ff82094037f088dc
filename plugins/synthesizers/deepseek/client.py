"""One request to an OpenAI-compatible chat-completions endpoint: sent, read within the deadline, its
failure classified (retry or not), its answer and token usage parsed.

The `openai` client runs with `max_retries=0`: whether to try again is the synthesizer's decision,
made from the `AttemptFailed` raised here. `openai` is imported on first use (it costs about a second).
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from v7 import TokenUsage, one_line
from v7.http import parse_retry_after

if TYPE_CHECKING:  # pragma: no cover
    from . import DeepSeekConfig

NO_RETRY_STATUSES = frozenset({400, 401, 402, 403, 404, 422})
STATUS_LABELS = {
    400: "bad request",
    401: "authentication failed",
    402: "insufficient balance",
    403: "forbidden",
    404: "not found",
    408: "request timeout",
    422: "invalid parameters",
    429: "rate limited",
    500: "server error",
    502: "bad gateway",
    503: "server overloaded",
    504: "gateway timeout",
}


class LLMAnswer(BaseModel):
    """The answer the prompt asks for. Signal case and surrounding blanks are forgiven ("buy" = BUY);
    any other word, a confidence outside 0..1 (70 is not 0.70) or a missing field fails the attempt."""

    model_config = ConfigDict(extra="ignore")

    signal: Literal["BUY", "SELL", "HOLD"]
    confidence: float = Field(ge=0.0, le=1.0)
    reasoning: str = ""

    @field_validator("signal", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class AttemptFailed(Exception):
    """One request that did not give a usable answer; `retry` says whether another try may help."""

    def __init__(self, reason: str, *, retry: bool, retry_after: float | None = None, usage: TokenUsage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.retry_after = retry_after
        self.usage = usage


def strip_fences(text: str) -> str:
    """Some OpenAI-compatible servers wrap JSON in a markdown fence even in JSON mode."""
    text = text.strip()
    match = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL | re.IGNORECASE)
    return match.group(1) if match else text


def parse_answer(text: str | None, finish_reason: str | None) -> LLMAnswer:
    """The validated answer in a message's content; raises ValueError with the reason it is unusable."""
    if text is None or not text.strip():
        raise ValueError(f"blank content (finish_reason {finish_reason})")
    cut = " (finish_reason length: raise max_tokens)" if finish_reason == "length" else ""
    snippet = repr(text.strip()[:80])
    try:
        data = json.loads(strip_fences(text))
    except ValueError:
        raise ValueError(f"invalid JSON in content{cut}: {snippet}") from None
    if not isinstance(data, dict):
        raise ValueError(f"content is JSON but not an object{cut}: {snippet}")
    try:
        return LLMAnswer.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid answer: {one_line(exc)} (content {snippet})") from None


def usage_from(raw: Any, config: "DeepSeekConfig") -> TokenUsage | None:
    """TokenUsage from a response's `usage` object, priced with the configured per-million prices."""
    if not isinstance(raw, dict):
        return None

    def number(value: Any) -> int:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    prompt_tokens = number(raw.get("prompt_tokens"))
    completion_tokens = number(raw.get("completion_tokens"))
    if "prompt_cache_hit_tokens" in raw:  # DeepSeek
        hit = number(raw.get("prompt_cache_hit_tokens"))
        miss = number(raw.get("prompt_cache_miss_tokens")) if "prompt_cache_miss_tokens" in raw else max(0, prompt_tokens - hit)
    else:  # OpenAI and most compatible servers
        details = raw.get("prompt_tokens_details")
        hit = number(details.get("cached_tokens")) if isinstance(details, dict) else 0
        miss = max(0, prompt_tokens - hit)
    cost = (hit * config.price_input_cache_hit + miss * config.price_input_cache_miss + completion_tokens * config.price_output) / 1_000_000
    return TokenUsage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        cache_hit_tokens=hit, cache_miss_tokens=miss, cost=round(cost, 10),
    )


def transport_errors() -> tuple[type[BaseException], ...]:
    """Transport errors that can escape while a streamed body is read, from whichever HTTP library
    the installed `openai` uses: httpx up to openai 2, its fork httpx2 from openai 3 on."""
    classes: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            classes.append(__import__(module_name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(classes)


def status_failure(exc: Any) -> AttemptFailed:
    """An `openai.APIStatusError` as a failed attempt: a readable reason, whether to retry, the server's retry-after."""
    status = int(exc.status_code)
    body = exc.body
    message = ""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or "")
    elif isinstance(body, str):
        message = re.sub(r"<[^>]+>", " ", body)  # a CDN's HTML page
    message = " ".join((message or getattr(exc, "message", "") or "").split())[:200]
    label = STATUS_LABELS.get(status, "server error" if status >= 500 else "error")
    reason = f"HTTP {status} {label}: {message}" if message else f"HTTP {status} {label}"
    retry = status not in NO_RETRY_STATUSES and (status in (408, 409, 429) or status >= 500)
    retry_after = parse_retry_after(getattr(exc.response, "headers", None)) if status in (429, 503) else None
    return AttemptFailed(reason, retry=retry, retry_after=retry_after)


class ChatClient:
    """The `openai` client for one endpoint (rebuilt when the API key changes), one attempt at a time."""

    def __init__(self, config: "DeepSeekConfig") -> None:
        self.config = config
        self._lock = threading.Lock()
        self._client: Any = None
        self._client_key: str | None = None

    def _openai(self, api_key: str) -> Any:
        from openai import OpenAI  # lazy: importing openai costs about a second

        with self._lock:
            if self._client is None or self._client_key != api_key:
                if self._client is not None:
                    self._client.close()
                self._client = OpenAI(
                    base_url=self.config.base_url, api_key=api_key, timeout=self.config.timeout_seconds, max_retries=0
                )
                self._client_key = api_key
            return self._client

    def attempt(self, api_key: str, messages: list[dict[str, str]]) -> tuple[LLMAnswer, TokenUsage | None]:
        """One request, read to the end or abandoned at the deadline; AttemptFailed when unusable."""
        import openai

        cfg = self.config
        client = self._openai(api_key)
        started = time.monotonic()
        timed_out = AttemptFailed(f"timed out after {cfg.timeout_seconds:g} s", retry=True)
        try:
            # Streaming the raw body lets the deadline cover blank keep-alive lines too.
            with client.chat.completions.with_streaming_response.create(
                model=cfg.model,
                messages=messages,
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                response_format={"type": "json_object"},
            ) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() - started > cfg.timeout_seconds:
                        raise timed_out
                body = b"".join(chunks)
        except AttemptFailed:
            raise
        except openai.APIStatusError as exc:
            raise status_failure(exc) from None
        except openai.APITimeoutError:
            raise timed_out from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            raise AttemptFailed(f"connection error: {detail}", retry=True) from None
        except transport_errors() as exc:  # raised while the body streams in
            if "timeout" in type(exc).__name__.lower():
                raise timed_out from None
            raise AttemptFailed(f"connection error: {type(exc).__name__}: {exc}", retry=True) from None

        try:
            data = json.loads(body)
        except ValueError:
            raise AttemptFailed(f"response body is not JSON: {body.strip()[:80]!r}", retry=True) from None
        usage = usage_from(data.get("usage"), cfg) if isinstance(data, dict) else None
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content")
            finish_reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise AttemptFailed("response has no choices[0].message", retry=True, usage=usage) from None
        try:
            return parse_answer(text, finish_reason), usage
        except ValueError as exc:
            raise AttemptFailed(str(exc), retry=True, usage=usage) from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
                    self._client_key = None
