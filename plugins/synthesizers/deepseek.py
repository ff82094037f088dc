"""DeepSeek synthesizer: the composed prompt to an OpenAI-compatible chat-completions endpoint.

Works with any OpenAI-compatible endpoint (set `base_url`, `model`, `api_key_env` and the prices).
What it guarantees:
- Retries are decided here and only here (the `openai` client runs with `max_retries=0`):
  429 (honouring `retry-after`, capped at `backoff_max_seconds`), 408, 5xx, timeouts, connection
  errors and failed answers (blank content, invalid JSON, unknown signal, confidence outside
  0..1) are retried with exponential backoff and jitter, up to `max_attempts`; 400, 401, 402,
  403, 404, 422 are not. Giving up raises `SynthesisFailed`, so the engine uses the fallback and
  the signal records the reason, the attempts and the tokens paid for.
- `timeout_seconds` bounds a whole attempt, also when the server keeps the connection alive by
  trickling blank lines (which a per-read timeout never catches).
- A response cache (SQLite, keyed by model and a hash of everything sent) answers a repeated
  prompt without a request, at zero cost: replays and backtests never pay twice.
- Daily token / cost budgets (UTC days, kept in the same SQLite file across restarts).
- The API key is read from the environment only and never reaches a log line, a stored row or
  an error message.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import threading
from contextlib import nullcontext
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from v7 import PluginConfig, Synthesis, SynthesisFailed, SynthesisRequest, Synthesizer, TokenUsage, hookimpl
from v7.core.logs import get_logger

CACHE_FORMAT = "v1"  # part of the cache key: bump when the request or answer shape changes
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
JSON_HINT = (
    'Answer with a json object only: {"signal": "BUY" | "SELL" | "HOLD", "confidence": <number from 0 to 1>, '
    '"reasoning": "<one or two sentences>"}.'
)
MAX_REASONING_CHARS = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_responses (
    model TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('BUY', 'SELL', 'HOLD')),
    confidence REAL NOT NULL,
    reasoning TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cache_hit_tokens INTEGER NOT NULL,
    cache_miss_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model, request_hash)
);
CREATE TABLE IF NOT EXISTS llm_daily_usage (
    day TEXT PRIMARY KEY,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0
);
"""


class DeepSeekConfig(PluginConfig):
    transport_fields = frozenset({
        "timeout_seconds", "api_key_env", "price_input_cache_hit", "price_input_cache_miss", "price_output", "max_attempts",
        "backoff_seconds", "backoff_max_seconds", "cache_enabled", "cache_path", "daily_token_budget", "daily_cost_budget",
    })

    base_url: str = Field(default="https://api.deepseek.com", description="Any OpenAI-compatible endpoint")
    model: str = Field(default="deepseek-chat", min_length=1, description="Model names change: check the provider's list")
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(default=300, ge=16, le=8192, description="Completion limit; too low cuts the JSON off")
    timeout_seconds: float = Field(default=30.0, gt=0, le=900, description="Limit for one whole attempt")
    api_key_env: str = Field(default="DEEPSEEK_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="Environment variable holding the API key (never the key itself)")
    price_input_cache_hit: float = Field(default=0.07, ge=0, description="USD per million prompt tokens served from the provider's cache")
    price_input_cache_miss: float = Field(default=0.27, ge=0, description="USD per million prompt tokens not cached")
    price_output: float = Field(default=1.10, ge=0, description="USD per million completion tokens")
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0, description="First retry delay; doubles per attempt, with jitter")
    backoff_max_seconds: float = Field(default=30.0, ge=0, description="Cap on any delay, a server's retry-after included")
    cache_enabled: bool = True
    cache_path: Path = Field(default=Path("v7-llm-cache.db"), description="SQLite file for the response cache and daily usage")
    daily_token_budget: int | None = Field(default=None, ge=0, description="Prompt + completion tokens per UTC day; None = unlimited")
    daily_cost_budget: float | None = Field(default=None, ge=0, description="USD per UTC day; None = unlimited")
    system_prompt: str | None = Field(default=None, description="Optional system message sent before the prompt")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://api.deepseek.com")
        return value.rstrip("/")


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


def add_usage(total: TokenUsage | None, more: TokenUsage | None) -> TokenUsage | None:
    if more is None:
        return total
    if total is None:
        return more.model_copy()
    return TokenUsage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        cache_hit_tokens=total.cache_hit_tokens + more.cache_hit_tokens,
        cache_miss_tokens=total.cache_miss_tokens + more.cache_miss_tokens,
        cost=round(total.cost + more.cost, 10),
    )


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None when absent or unreadable."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


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
    try:
        data = json.loads(strip_fences(text))
    except ValueError:
        raise ValueError(f"invalid JSON in content{cut}: {text.strip()[:80]!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"content is JSON but not an object{cut}: {text.strip()[:80]!r}")
    try:
        return LLMAnswer.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']} (got {e.get('input')!r:.40})" for e in exc.errors())
        raise ValueError(f"invalid answer: {problems}") from None


def transport_errors() -> tuple[type[BaseException], ...]:
    """httpx-family transport errors that can escape while a streamed body is read."""
    classes: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
            classes.append(module.TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(classes)


class DeepSeekSynthesizer(Synthesizer):
    """Asks an OpenAI-compatible chat model for BUY / SELL / HOLD given the composed prompt."""

    name = "deepseek"
    version = "1.0"
    needs_prompt = True
    Config = DeepSeekConfig

    def __init__(self, config: DeepSeekConfig | None = None) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._budget_gate = threading.Lock()
        self._closing = threading.Event()  # set by close(): a retry wait ends at once
        self._db: sqlite3.Connection | None = None
        self._client: Any = None
        self._client_key: str | None = None
        self._secrets: list[str] = []

    # -- secrets ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)

    def _api_key(self) -> str | None:
        key = (os.environ.get(self.config.api_key_env) or "").strip()
        if key and key not in self._secrets:
            self._secrets.append(key)
        return key or None

    # -- storage: response cache and daily usage -------------------------------------------

    def _storage(self) -> sqlite3.Connection | None:
        """The SQLite file, opened on first use; None when neither cache nor budget needs it."""
        cfg: DeepSeekConfig = self.config
        if not (cfg.cache_enabled or cfg.daily_token_budget is not None or cfg.daily_cost_budget is not None):
            return None
        if self._db is None:
            path = Path(cfg.cache_path)
            if path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    def request_hash(self, messages: list[dict[str, str]]) -> str:
        """Everything that shapes the answer, hashed; the API key and base URL are not part of it."""
        cfg: DeepSeekConfig = self.config
        material = {
            "format": CACHE_FORMAT,
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
            "response_format": "json_object",
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def _cached(self, request_hash: str) -> Synthesis | None:
        if not self.config.cache_enabled:
            return None
        with self._lock:
            db = self._storage()
            assert db is not None
            row = db.execute(
                "SELECT direction, confidence, reasoning FROM llm_responses WHERE model = ? AND request_hash = ?",
                (self.config.model, request_hash),
            ).fetchone()
        if row is None:
            return None
        # A cache hit sends no request: 0 attempts and zero usage mark it in the stored signal.
        return Synthesis(direction=row[0], confidence=row[1], reasoning=row[2], attempts=0, usage=TokenUsage())

    def _remember(self, request_hash: str, answer: Synthesis) -> None:
        if not self.config.cache_enabled:
            return
        usage = answer.usage or TokenUsage()
        with self._lock:
            db = self._storage()
            assert db is not None
            db.execute(
                """INSERT OR REPLACE INTO llm_responses (model, request_hash, direction, confidence, reasoning, attempts,
                   prompt_tokens, completion_tokens, cache_hit_tokens, cache_miss_tokens, cost, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    self.config.model, request_hash, answer.direction, answer.confidence, answer.reasoning, answer.attempts,
                    usage.prompt_tokens, usage.completion_tokens, usage.cache_hit_tokens, usage.cache_miss_tokens,
                    usage.cost, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                ),
            )

    @staticmethod
    def _today() -> str:
        return datetime.now(timezone.utc).strftime("%Y-%m-%d")

    def _record_spend(self, usage: TokenUsage | None) -> None:
        """Count one request's tokens and cost towards today's budget (kept even without a budget)."""
        with self._lock:
            db = self._storage()
            if db is None:
                return
            usage = usage or TokenUsage()
            db.execute(
                """INSERT INTO llm_daily_usage (day, requests, prompt_tokens, completion_tokens, cost) VALUES (?, 1, ?, ?, ?)
                   ON CONFLICT (day) DO UPDATE SET requests = requests + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                   completion_tokens = completion_tokens + excluded.completion_tokens, cost = cost + excluded.cost""",
                (self._today(), usage.prompt_tokens, usage.completion_tokens, usage.cost),
            )

    def spent_today(self) -> tuple[int, float]:
        """(tokens, USD) spent today (UTC) according to the usage table."""
        with self._lock:
            db = self._storage()
            if db is None:
                return 0, 0.0
            row = db.execute("SELECT prompt_tokens + completion_tokens, cost FROM llm_daily_usage WHERE day = ?", (self._today(),)).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def _budget_exhausted(self) -> str | None:
        cfg: DeepSeekConfig = self.config
        if cfg.daily_token_budget is None and cfg.daily_cost_budget is None:
            return None
        tokens, cost = self.spent_today()
        day = self._today()
        if cfg.daily_cost_budget is not None and cost >= cfg.daily_cost_budget:
            return f"daily cost budget of {cfg.daily_cost_budget:g} USD reached (spent {cost:.6f} USD on {day} UTC)"
        if cfg.daily_token_budget is not None and tokens >= cfg.daily_token_budget:
            return f"daily token budget of {cfg.daily_token_budget} tokens reached (used {tokens} tokens on {day} UTC)"
        return None

    # -- the request -----------------------------------------------------------------------

    def _client_for(self, api_key: str) -> Any:
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

    def messages_for(self, prompt: str) -> list[dict[str, str]]:
        """System message (configured, or a JSON hint when the prompt never says "json") then the prompt."""
        system = self.config.system_prompt
        if "json" not in f"{system or ''}\n{prompt}".lower():
            # DeepSeek's JSON mode refuses (HTTP 400) a prompt that does not ask for json.
            system = f"{system.strip()}\n{JSON_HINT}" if system else JSON_HINT
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        return messages

    def usage_from(self, raw: Any) -> TokenUsage | None:
        """TokenUsage from a response's `usage` object, priced with the configured per-million prices."""
        if not isinstance(raw, dict):
            return None

        def number(value: Any) -> int:
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

        cfg: DeepSeekConfig = self.config
        prompt_tokens = number(raw.get("prompt_tokens"))
        completion_tokens = number(raw.get("completion_tokens"))
        if "prompt_cache_hit_tokens" in raw:  # DeepSeek
            hit = number(raw.get("prompt_cache_hit_tokens"))
            miss = number(raw.get("prompt_cache_miss_tokens")) if "prompt_cache_miss_tokens" in raw else max(0, prompt_tokens - hit)
        else:  # OpenAI and most compatible servers
            details = raw.get("prompt_tokens_details")
            hit = number(details.get("cached_tokens")) if isinstance(details, dict) else 0
            miss = max(0, prompt_tokens - hit)
        cost = (hit * cfg.price_input_cache_hit + miss * cfg.price_input_cache_miss + completion_tokens * cfg.price_output) / 1_000_000
        return TokenUsage(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            cache_hit_tokens=hit, cache_miss_tokens=miss, cost=round(cost, 10),
        )

    def _status_failure(self, exc: Any) -> AttemptFailed:
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

    def _attempt(self, client: Any, messages: list[dict[str, str]]) -> tuple[LLMAnswer, TokenUsage | None]:
        """One request, read to the end or abandoned at the deadline; AttemptFailed when unusable."""
        import openai

        cfg: DeepSeekConfig = self.config
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
            raise self._status_failure(exc) from None
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
        usage = self.usage_from(data.get("usage")) if isinstance(data, dict) else None
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

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter; a server's retry-after is a floor; everything capped."""
        cfg: DeepSeekConfig = self.config
        ceiling = min(cfg.backoff_max_seconds, cfg.backoff_seconds * 2 ** (attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, cfg.backoff_max_seconds)

    # -- the synthesizer -------------------------------------------------------------------

    def synthesize(self, request: SynthesisRequest) -> Synthesis:
        log = get_logger(symbol=request.symbol, plugin=self.name, model=self.config.model)
        try:
            return self._synthesize(request, log)
        except SynthesisFailed as exc:
            exc.reason = self._redact(exc.reason)
            exc.args = (exc.reason,)
            raise
        except Exception as exc:  # a bug or an unexpected library error: still never leak the key
            raise SynthesisFailed(self._redact(f"{type(exc).__name__}: {exc}"), attempts=0) from None

    def _synthesize(self, request: SynthesisRequest, log: Any) -> Synthesis:
        cfg: DeepSeekConfig = self.config
        if not request.prompt.strip():
            raise SynthesisFailed("empty prompt: enable a prompt formatter such as 'markdown'", attempts=0)
        messages = self.messages_for(request.prompt)
        request_hash = self.request_hash(messages)
        cached = self._cached(request_hash)
        if cached is not None:
            log.info("answer from the response cache; no request sent", direction=cached.direction)
            return cached

        api_key = self._api_key()
        if api_key is None:
            raise SynthesisFailed(f"no API key: environment variable {cfg.api_key_env} is not set", attempts=0)
        client = self._client_for(api_key)

        usage: TokenUsage | None = None
        attempts = 0
        last_reason = ""
        budgeted = cfg.daily_token_budget is not None or cfg.daily_cost_budget is not None
        while attempts < cfg.max_attempts:
            # With a budget, check, request and count happen under one gate: symbols synthesized in
            # parallel cannot all pass the check before any of them has spent (serial requests, then).
            with self._budget_gate if budgeted else nullcontext():
                exhausted = self._budget_exhausted()
                if exhausted is not None:
                    log.warning("daily budget reached; handing over to the fallback", reason=exhausted)
                    raise SynthesisFailed(exhausted, attempts=attempts, usage=usage)
                attempts += 1
                try:
                    answer, attempt_usage = self._attempt(client, messages)
                except AttemptFailed as failure:
                    self._record_spend(failure.usage)
                    failed: AttemptFailed | None = failure
                else:
                    self._record_spend(attempt_usage)
                    failed = None
            if failed is not None:
                usage = add_usage(usage, failed.usage)
                last_reason = self._redact(failed.reason)
                if not failed.retry:
                    log.warning("request failed; not retried", attempt=attempts, reason=last_reason)
                    suffix = f" (attempt {attempts} of {cfg.max_attempts})" if attempts > 1 else ""
                    raise SynthesisFailed(last_reason + suffix, attempts=attempts, usage=usage) from None
                if attempts >= cfg.max_attempts:
                    break
                delay = self._delay(attempts, failed.retry_after)
                log.warning("attempt failed; retrying", attempt=attempts, max_attempts=cfg.max_attempts,
                            reason=last_reason, delay_seconds=round(delay, 3))
                if self._closing.wait(delay):
                    raise SynthesisFailed(f"stopped while waiting to retry; last: {last_reason}", attempts=attempts, usage=usage)
                continue
            usage = add_usage(usage, attempt_usage)
            synthesis = Synthesis(
                direction=answer.signal,
                confidence=answer.confidence,
                reasoning=self._redact(answer.reasoning.strip())[:MAX_REASONING_CHARS],
                attempts=attempts,
                usage=usage,
            )
            self._remember(request_hash, synthesis)
            log.info(
                "llm answered", direction=synthesis.direction, confidence=synthesis.confidence, attempts=attempts,
                prompt_tokens=usage.prompt_tokens if usage else None, cache_hit_tokens=usage.cache_hit_tokens if usage else None,
                cost_usd=usage.cost if usage else None,
            )
            return synthesis
        reason = f"{attempts} attempts failed; last: {last_reason}" if attempts > 1 else last_reason
        log.warning("giving up; handing over to the fallback", attempts=attempts, reason=reason)
        raise SynthesisFailed(reason, attempts=attempts, usage=usage)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
                    self._client_key = None
            if self._db is not None:
                self._db.close()
                self._db = None


@hookimpl
def register_synthesizers(register):
    register(DeepSeekSynthesizer)
