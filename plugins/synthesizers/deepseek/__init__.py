"""DeepSeek synthesizer: the composed prompt to an OpenAI-compatible chat-completions endpoint.

Works with any OpenAI-compatible endpoint (set `base_url`, `model`, `api_key_env` and the prices).
What it guarantees:
- Retries are decided here and only here (the `openai` client runs with `max_retries=0`):
  429 and 503 (never sooner than their `retry-after`), 408, 5xx, timeouts, connection
  errors and failed answers (blank content, invalid JSON, unknown signal, confidence outside
  0..1) are retried with exponential backoff and jitter, up to `max_attempts`; 400, 401, 402,
  403, 404, 422 are not. Giving up raises `SynthesisFailed`, so the engine uses the fallback and
  the signal records the reason, the attempts and the tokens paid for.
- A server's `retry-after` holds back every request, of any signal, until that time. One longer
  than `max_retry_after_seconds` is not waited for: the signal, and every signal until then, falls
  back at once and says why.
- A circuit breaker: after `breaker_failures` consecutive failed signals every signal falls back
  at once for `breaker_cooldown_seconds`; then one signal probes with a single request, and its
  outcome closes the breaker or opens it again.
- `timeout_seconds` bounds a whole attempt, also when the server keeps the connection alive by
  trickling blank lines (which a per-read timeout never catches).
- A response cache (SQLite, keyed by model and a hash of everything sent) answers a repeated
  prompt without a request, at zero cost: replays and backtests never pay twice.
- Daily token / cost budgets (UTC days, kept in the same SQLite file across restarts).
- The API key is read from the environment only and never reaches a log line, a stored row or
  an error message.
- `estimate_cost` tells a backtest what its calls would cost before any is sent.

The package: this module is the synthesizer (config, retry loop, messages, cost estimate),
`client.py` one request and its answer, `cache.py` the SQLite response cache and daily budget,
`guards.py` the remembered retry-after and the circuit breaker.
"""

from __future__ import annotations

import math
import os
import re
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from v7 import (
    CostEstimate, PluginConfig, Synthesis, SynthesisFailed, SynthesisRequest, Synthesizer, TokenUsage, get_logger, hookimpl,
)
from v7.http import backoff_delay, scrub

from .cache import CACHE_FORMAT, SCHEMA, ResponseStore, request_hash
from .client import (
    NO_RETRY_STATUSES, STATUS_LABELS, AttemptFailed, ChatClient, LLMAnswer, parse_answer, strip_fences, transport_errors, usage_from,
)
from .guards import CircuitBreaker, Hold, NotBefore

__all__ = [
    "CACHE_FORMAT", "JSON_HINT", "MAX_REASONING_CHARS", "NO_RETRY_STATUSES", "SCHEMA", "STATUS_LABELS",
    "TOKENS_PER_CHAR", "TYPICAL_COMPLETION_TOKENS", "AttemptFailed", "ChatClient", "CircuitBreaker", "DeepSeekConfig", "DeepSeekSynthesizer",
    "Hold", "LLMAnswer", "NotBefore", "ResponseStore", "parse_answer", "register_synthesizers", "strip_fences", "transport_errors",
]

JSON_HINT = (
    'Answer with a json object only: {"signal": "BUY" | "SELL" | "HOLD", "confidence": <number from 0 to 1>, '
    '"reasoning": "<one or two sentences>"}.'
)
MAX_REASONING_CHARS = 2000
TOKENS_PER_CHAR = 0.3  # DeepSeek's rule of thumb for English text; prompts full of numbers run close to it
TYPICAL_COMPLETION_TOKENS = 100  # {"signal": ..., "confidence": ..., "reasoning": "one or two sentences"}


class DeepSeekConfig(PluginConfig):
    transport_fields = frozenset({
        "timeout_seconds", "api_key_env", "price_input_cache_hit", "price_input_cache_miss", "price_output", "max_attempts",
        "backoff_seconds", "backoff_max_seconds", "max_retry_after_seconds", "breaker_failures",
        "breaker_cooldown_seconds", "cache_enabled", "cache_path", "daily_token_budget", "daily_cost_budget",
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
    backoff_max_seconds: float = Field(default=30.0, ge=0,
                                       description="Cap on the backoff delay; a server's retry-after is honoured beyond it")
    max_retry_after_seconds: float = Field(
        default=60.0, ge=0,
        description="Longest server retry-after (429, 503) waited for; a longer one falls back at once, and so does "
                    "every signal until the time the server gave")
    breaker_failures: int = Field(
        default=5, ge=0,
        description="Consecutive failed signals (every request failed) after which the circuit breaker opens: "
                    "signals fall back without a request; 0 = no breaker")
    breaker_cooldown_seconds: float = Field(
        default=60.0, ge=0, description="How long an open breaker sends nothing before one signal probes with one request")
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


class DeepSeekSynthesizer(Synthesizer):
    """Asks an OpenAI-compatible chat model for BUY / SELL / HOLD given the composed prompt."""

    name = "deepseek"
    confidence_meaning = (
        "the model's own stated confidence in its answer (0-1), for BUY, SELL and HOLD alike; not calibrated: "
        "read the backtest's calibration table before trusting it as a probability"
    )
    version = "1.0"
    needs_prompt = True
    Config = DeepSeekConfig

    def __init__(self, config: DeepSeekConfig | None = None) -> None:
        super().__init__(config)
        self._budget_gate = threading.Lock()
        self._closing = threading.Event()  # set by close(): a retry wait ends at once
        self._store = ResponseStore(self.config)
        self._chat = ChatClient(self.config)
        self._secrets: list[str] = []
        self._not_before = NotBefore()  # the server's latest retry-after, for every signal
        self._breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_cooldown_seconds)

    # -- secrets ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _api_key(self) -> str | None:
        key = (os.environ.get(self.config.api_key_env) or "").strip()
        if key and key not in self._secrets:
            self._secrets.append(key)
        return key or None

    # -- what is sent, what it costs -------------------------------------------------------

    def messages_for(self, prompt: str) -> list[dict[str, str]]:
        """System message (configured, or a JSON hint when the prompt never says "json") then the prompt."""
        system = self.config.system_prompt
        if "json" not in f"{system or ''}\n{prompt}".lower():
            # DeepSeek's JSON mode refuses (HTTP 400) a prompt that does not ask for json.
            system = f"{system.strip()}\n{JSON_HINT}" if system else JSON_HINT
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        return messages

    def request_hash(self, messages: list[dict[str, str]]) -> str:
        """The response cache's key for `messages`: everything that shapes the answer, not the key or base URL."""
        return request_hash(self.config, messages)

    def usage_from(self, raw: Any) -> TokenUsage | None:
        """TokenUsage from a response's `usage` object, priced with the configured per-million prices."""
        return usage_from(raw, self.config)

    def estimate_cost(self, prompt: str, calls: int) -> CostEstimate:
        """What `calls` requests like `prompt` would cost, before any is sent.

        Prompt tokens ≈ 0.3 per character of everything `messages_for(prompt)` sends (system message
        included), all priced as cache misses; a typical answer is min(100, max_tokens) tokens
        (`estimated_cost`), the longest max_tokens (`max_cost`). USD, rounded to 6 decimals. The
        response cache is not consulted: bars already answered will in fact cost nothing.
        """
        cfg: DeepSeekConfig = self.config
        chars = sum(len(message["content"]) for message in self.messages_for(prompt))
        prompt_tokens = max(1, math.ceil(chars * TOKENS_PER_CHAR))
        completion = min(TYPICAL_COMPLETION_TOKENS, cfg.max_tokens)
        price_in, price_out = cfg.price_input_cache_miss, cfg.price_output
        return CostEstimate(
            calls=calls,
            prompt_tokens_per_call=prompt_tokens,
            completion_tokens_per_call=completion,
            max_completion_tokens=cfg.max_tokens,
            price_input_per_million=price_in,
            price_output_per_million=price_out,
            estimated_cost=round(calls * (prompt_tokens * price_in + completion * price_out) / 1e6, 6),
            max_cost=round(calls * (prompt_tokens * price_in + cfg.max_tokens * price_out) / 1e6, 6),
        )

    def spent_today(self) -> tuple[int, float]:
        """(tokens, USD) spent today (UTC) according to the usage table."""
        return self._store.spent_today()

    def _delay(self, attempts: int, retry_after: float | None) -> float:
        """The wait after failed attempt number `attempts` (from 1): `backoff_seconds` doubling, with jitter,
        capped at `backoff_max_seconds`; a server's retry-after is a floor that the cap does not lower."""
        cfg: DeepSeekConfig = self.config
        delay = backoff_delay(attempts - 1, cfg.backoff_seconds, cfg.backoff_max_seconds)
        return max(delay, retry_after) if retry_after is not None else delay

    def _wait_for_retry_after(self, attempts: int, usage: TokenUsage | None, log: Any) -> None:
        """Hold the next request until the server's retry-after has passed; fall back at once if that is too long."""
        max_wait = self.config.max_retry_after_seconds
        hold = self._not_before.hold()
        if hold is None:
            return
        if hold.remaining > max_wait:
            reason = hold.too_long(max_wait)
            log.warning("retry-after too long; handing over to the fallback", reason=reason,
                        remaining_seconds=round(hold.remaining, 3), max_retry_after_seconds=max_wait)
            raise SynthesisFailed(reason, attempts=attempts, usage=usage)
        log.info("waiting for the server's retry-after", delay_seconds=round(hold.remaining, 3))
        if self._closing.wait(hold.remaining):
            raise SynthesisFailed(f"stopped while waiting for the server's retry-after; last: {hold.last}",
                                  attempts=attempts, usage=usage)

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
        key = self.request_hash(messages)
        cached = self._store.cached(key)
        if cached is not None:
            log.info("answer from the response cache; no request sent", direction=cached.direction)
            return cached

        api_key = self._api_key()
        if api_key is None:
            raise SynthesisFailed(f"no API key: environment variable {cfg.api_key_env} is not set", attempts=0)

        probe = self._breaker.admit()
        if probe:
            log.info("llm circuit probe", failures=self._breaker.consecutive_failures)
        try:
            synthesis = self._ask(api_key, messages, key, 1 if probe else cfg.max_attempts, log)
        except SynthesisFailed as exc:
            if exc.attempts > 0 and not self._closing.is_set():
                change = self._breaker.failed(probe)
                fields = {"failures": self._breaker.consecutive_failures, "cooldown_s": cfg.breaker_cooldown_seconds}
                if change == "opened":
                    log.warning("llm circuit open", **fields)
                elif change == "reopened":
                    log.info("llm circuit probe failed", **fields)
            else:
                self._breaker.release(probe)
            raise
        except BaseException:  # a bug or an unexpected error: never leave the breaker waiting for this probe
            self._breaker.release(probe)
            raise
        ended = self._breaker.succeeded()
        if ended:
            log.info("llm circuit closed", failures=ended)
        return synthesis

    def _ask(self, api_key: str, messages: list[dict[str, str]], key: str, max_attempts: int, log: Any) -> Synthesis:
        """The requests of one signal, retried up to `max_attempts`; SynthesisFailed when none gave an answer."""
        usage: TokenUsage | None = None
        attempts = 0
        last_reason = ""
        while attempts < max_attempts:
            self._wait_for_retry_after(attempts, usage, log)
            # With a budget, check, request and count happen under one gate: symbols synthesized in
            # parallel cannot all pass the check before any of them has spent (serial requests, then).
            with self._budget_gate if self._store.budgeted else nullcontext():
                exhausted = self._store.budget_exhausted()
                if exhausted is not None:
                    log.warning("daily budget reached; handing over to the fallback", reason=exhausted)
                    raise SynthesisFailed(exhausted, attempts=attempts, usage=usage)
                attempts += 1
                try:
                    answer, attempt_usage = self._chat.attempt(api_key, messages)
                except AttemptFailed as failure:
                    self._store.record_spend(failure.usage)
                    failed: AttemptFailed | None = failure
                else:
                    self._store.record_spend(attempt_usage)
                    failed = None
            if failed is not None:
                if failed.usage is not None:
                    usage = failed.usage + usage
                last_reason = self._redact(failed.reason)
                if failed.retry_after is not None and failed.retry_after > 0:
                    self._not_before.remember(failed.retry_after, last_reason)
                    if failed.retry and failed.retry_after > self.config.max_retry_after_seconds:
                        self._wait_for_retry_after(attempts, usage, log)  # raises: the wait is too long
                if not failed.retry:
                    log.warning("request failed; not retried", attempt=attempts, reason=last_reason)
                    suffix = f" (attempt {attempts} of {max_attempts})" if attempts > 1 else ""
                    raise SynthesisFailed(last_reason + suffix, attempts=attempts, usage=usage) from None
                if attempts >= max_attempts:
                    break
                delay = self._delay(attempts, failed.retry_after)
                log.warning("attempt failed; retrying", attempt=attempts, max_attempts=max_attempts,
                            reason=last_reason, delay_seconds=round(delay, 3))
                if self._closing.wait(delay):
                    raise SynthesisFailed(f"stopped while waiting to retry; last: {last_reason}", attempts=attempts, usage=usage)
                continue
            if attempt_usage is not None:
                usage = attempt_usage + usage
            synthesis = Synthesis(
                direction=answer.signal,
                confidence=answer.confidence,
                reasoning=self._redact(answer.reasoning.strip())[:MAX_REASONING_CHARS],
                attempts=attempts,
                usage=usage,
            )
            self._store.remember(key, synthesis)
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
        try:
            self._chat.close()
        finally:
            self._store.close()


@hookimpl
def register_synthesizers(register):
    register(DeepSeekSynthesizer)
