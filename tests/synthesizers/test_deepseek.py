"""DeepSeek synthesizer against a fake OpenAI-compatible server over real HTTP, with the real `openai` client.

Each case runs the real engine (replay feed → sample theories → markdown prompt → deepseek →
consensus fallback → sqlite sink) and checks what a user would see: the requests the server
got, the stored signal (synthesizer, fallback_reason, attempts, tokens, cost) and that the API
key appears in no log line, no stored row and no prompt.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fakes.openai_server import (
    FakeOpenAIServer, Reply, answer, content, drop, error, html_error, keep_alive, rate_limited, stall,
)
from helpers import run_v7
from plugin_samples import SamplePlugin
from v7 import SynthesisFailed, SynthesisRequest
from v7.testing import collect_signals
from v7.core.config import ConfigError, validate_config
from v7.core.engine import Pipeline
from v7.core.logs import configure_logging
from v7.core.registry import PluginSource, load_registry

KEY = "sk-test-SECRET-1234567890"
# Usage of one fake answer: 512 cached + 88 uncached prompt tokens, 40 completion tokens.
ONE_CALL_COST = (512 * 0.07 + 88 * 0.27 + 40 * 1.10) / 1_000_000


@pytest.fixture(scope="module")
def registry():
    registry = load_registry()
    registry.add_plugin(SamplePlugin(), PluginSource("samples", "v7-test-samples", "1.0"))
    if registry.get("synthesizer", "deepseek") is None:  # entry point not installed yet
        from v7.plugins.synthesizers import deepseek

        registry.add_plugin(deepseek, PluginSource("deepseek", "v7", "0"))
    return registry


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
    return KEY


@pytest.fixture
def logs(capsys, caplog):
    """Every log line of the test: structlog JSON lines on stderr plus stdlib records (openai, httpx)."""
    configure_logging("debug", json_lines=True)
    caplog.set_level(logging.DEBUG)

    def read() -> str:
        captured = capsys.readouterr()
        return captured.err + captured.out + caplog.text

    return read


def deepseek_options(server: FakeOpenAIServer, tmp_path: Path, **overrides) -> dict:
    return {
        "base_url": server.base_url,
        "backoff_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "timeout_seconds": 5,
        "cache_path": str(tmp_path / "llm-cache.db"),
        **overrides,
    }


def build(registry, tmp_path: Path, server: FakeOpenAIServer, symbols=("BTC-USD",), db="v7.db", **overrides) -> Pipeline:
    raw = {
        "engine": {"symbols": list(symbols), "lookback": 200, "theory_timeout_seconds": 5},
        # `constant` is bullish (+0.5): the consensus fallback says BUY, while the fake LLM says SELL.
        "theories": {"enabled": ["constant", "abstaining"]},
        "synthesizer": {"use": "deepseek", "fallback": "consensus", "deepseek": deepseek_options(server, tmp_path, **overrides)},
        "sinks": {"enabled": ["sqlite"], "sqlite": {"path": str(tmp_path / db)}},
    }
    return Pipeline.build(validate_config(raw, registry), registry)


def stored_signals(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    return [dict(row) for row in db.execute("SELECT * FROM signals ORDER BY bar_time, symbol")]


def text_cells(path: Path) -> list[str]:
    """Every text value in every column of every table of a SQLite file."""
    db = sqlite3.connect(path)
    cells = []
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in db.execute(f'SELECT * FROM "{table}"'):
            cells.extend(str(value) for value in row if isinstance(value, (str, bytes)))
    return cells


def run_one(registry, tmp_path, server, **overrides) -> dict:
    signals = collect_signals(build(registry, tmp_path, server, **overrides), iterations=1)
    assert len(signals) == 1
    rows = stored_signals(tmp_path / "v7.db")
    assert len(rows) == 1
    return rows[0]


def assert_key_never_leaked(tmp_path: Path, log_text: str, row: dict | None = None) -> None:
    assert KEY not in log_text
    for path in tmp_path.glob("*.db"):
        assert not [cell for cell in text_cells(path) if KEY in cell], f"API key stored in {path.name}"
    if row is not None:
        assert KEY not in (row["prompt"] or "")


def assert_usage(row: dict, calls: int) -> None:
    assert row["prompt_tokens"] == 600 * calls
    assert row["completion_tokens"] == 40 * calls
    assert row["cache_hit_tokens"] == 512 * calls
    assert row["cache_miss_tokens"] == 88 * calls
    assert row["cost"] == pytest.approx(ONE_CALL_COST * calls)


# -- through the engine --------------------------------------------------------------------


def test_a_valid_answer_becomes_the_signal(registry, tmp_path, server, api_key, logs):
    server.script(answer("SELL", 0.64, "Filter turned down."))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 1
    assert (row["synthesizer"], row["direction"], row["confidence"]) == ("deepseek", "SELL", 0.64)
    assert row["reasoning"] == "Filter turned down."
    assert row["fallback_reason"] is None and row["attempts"] == 1
    assert_usage(row, calls=1)

    sent = server.requests[0]
    assert sent.path == "/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "deepseek-chat"
    assert sent.body["response_format"] == {"type": "json_object"}
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 300
    assert sent.body["messages"][-1] == {"role": "user", "content": row["prompt"]}
    assert "json" in row["prompt"].lower()
    assert_key_never_leaked(tmp_path, logs(), row)


def test_blank_content_is_a_failed_attempt_then_retried(registry, tmp_path, server, api_key, logs):
    server.script(content("   \n "), answer("SELL", 0.6))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 2
    assert (row["synthesizer"], row["direction"], row["attempts"]) == ("deepseek", "SELL", 2)
    assert_usage(row, calls=2)  # the blank answer was paid for too
    assert "blank content" in logs()


def test_blank_content_every_time_falls_back_with_the_tokens_paid(registry, tmp_path, server, api_key, logs):
    server.script(content(""), content(" "), content(None))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 3
    assert (row["synthesizer"], row["direction"], row["attempts"]) == ("consensus", "BUY", 3)
    assert row["fallback_reason"] == "3 attempts failed; last: blank content (finish_reason stop)"
    assert_usage(row, calls=3)
    assert_key_never_leaked(tmp_path, logs(), row)


@pytest.mark.parametrize(
    "bad, why",
    [
        ("{not json", "invalid JSON"),
        ('{"signal": "STRONG BUY", "confidence": 0.9, "reasoning": "x"}', "invalid answer: signal"),
        ('{"signal": "BUY", "confidence": 70, "reasoning": "x"}', "invalid answer: confidence"),
        ('["BUY", 0.7]', "not an object"),
    ],
)
def test_an_unusable_answer_is_retried(registry, tmp_path, server, api_key, logs, bad, why):
    server.script(content(bad), answer("SELL", 0.55))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 2
    assert (row["synthesizer"], row["direction"], row["attempts"]) == ("deepseek", "SELL", 2)
    assert why in logs()


def test_401_is_not_retried_and_the_key_is_not_echoed(registry, tmp_path, server, api_key, logs):
    server.script(error(401, f"Authentication Fails, Your api key: {KEY} is invalid", error_type="authentication_error"))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 1
    assert (row["synthesizer"], row["direction"], row["attempts"]) == ("consensus", "BUY", 1)
    assert row["fallback_reason"] == "HTTP 401 authentication failed: Authentication Fails, Your api key: *** is invalid"
    assert row["prompt_tokens"] is None and row["cost"] is None
    assert_key_never_leaked(tmp_path, logs(), row)


def test_402_insufficient_balance_is_not_retried(registry, tmp_path, server, api_key, logs):
    server.script(error(402, "Insufficient Balance", error_type="unknown_error", code="invalid_request_error"))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 1
    assert row["synthesizer"] == "consensus"
    assert row["fallback_reason"] == "HTTP 402 insufficient balance: Insufficient Balance"
    assert row["attempts"] == 1
    assert_key_never_leaked(tmp_path, logs(), row)


@pytest.mark.parametrize("status", [400, 422])
def test_bad_request_statuses_are_not_retried(registry, tmp_path, server, api_key, status):
    server.script(error(status, "Invalid max_tokens value"))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 1
    assert row["synthesizer"] == "consensus"
    assert row["fallback_reason"].startswith(f"HTTP {status} ")


def test_429_waits_for_retry_after_then_succeeds(registry, tmp_path, server, api_key, logs):
    server.script(rate_limited("1"), answer("SELL", 0.7))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 2
    gap = server.requests[1].received_at - server.requests[0].received_at
    assert gap >= 0.95  # honoured, although the backoff is 0.01 s and its cap (backoff_max_seconds) 0.05 s
    assert (row["synthesizer"], row["attempts"]) == ("deepseek", 2)
    assert_usage(row, calls=1)  # the 429 carried no usage
    assert_key_never_leaked(tmp_path, logs(), row)


def test_a_stop_request_ends_a_retry_wait_and_the_fallback_answers(registry, tmp_path, server, api_key):
    import threading

    server.script(rate_limited("60"), answer("SELL", 0.7))
    pipeline = build(registry, tmp_path, server, max_retry_after_seconds=120)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    signals = collect_signals(pipeline, stop=stop)
    assert time.monotonic() - started < 15  # not the 60 s retry-after
    assert len(signals) == 1 and server.request_count == 1
    assert signals[0].synthesizer == "consensus"
    assert signals[0].fallback_reason.startswith("stopped while waiting to retry; last: HTTP 429")
    assert len(stored_signals(tmp_path / "v7.db")) == 1  # stored whole


def too_long(status: int, retry_after: str) -> Reply:
    if status == 429:
        return rate_limited(retry_after)
    return error(503, "Service Unavailable", error_type="server_error", headers={"retry-after": retry_after})


@pytest.mark.parametrize("status", [429, 503])
def test_a_retry_after_longer_than_max_wait_falls_back_at_once(registry, tmp_path, server, api_key, logs, status):
    server.script(too_long(status, "120"), answer("SELL", 0.7))
    started = time.monotonic()
    row = run_one(registry, tmp_path, server, max_retry_after_seconds=0.5)
    assert time.monotonic() - started < 5  # neither the 120 s nor a capped wait, and no early retry
    assert server.request_count == 1
    assert (row["synthesizer"], row["direction"], row["attempts"]) == ("consensus", "BUY", 1)
    reason = row["fallback_reason"]
    assert reason.startswith("retry-after 120 s exceeds max_retry_after_seconds (0.5 s): no request before "), reason
    assert f"UTC; last: HTTP {status} " in reason
    assert "retry-after too long; handing over to the fallback" in logs()


def test_a_long_retry_after_holds_back_the_next_signals_too(registry, tmp_path, server, api_key):
    server.script(rate_limited("120"))
    signals = collect_signals(build(registry, tmp_path, server, max_retry_after_seconds=0.5), iterations=3)
    assert server.request_count == 1  # bars 2 and 3 fall within the server's 120 s: nothing sent
    assert [s.synthesizer for s in signals] == ["consensus"] * 3
    assert [s.attempts for s in signals] == [1, 0, 0]
    first_until = signals[0].fallback_reason.split(" UTC")[0]
    for later in signals[1:]:
        assert later.fallback_reason.startswith("retry-after 120 s exceeds max_retry_after_seconds (0.5 s): no request before ")
        assert later.fallback_reason.split(" UTC")[0] == first_until  # the same "not before" time
        assert "last: HTTP 429 rate limited" in later.fallback_reason


def test_the_next_signal_waits_for_a_remembered_retry_after(registry, tmp_path, server, api_key):
    server.script(rate_limited("1"), answer("SELL", 0.7))
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=1, max_retry_after_seconds=5)
    with pytest.raises(SynthesisFailed, match="HTTP 429"):
        deepseek.synthesize(request("Answer in json. Bar 1."))
    assert deepseek.synthesize(request("Answer in json. Bar 2.")).direction == "SELL"
    assert server.request_count == 2
    assert server.requests[1].received_at - server.requests[0].received_at >= 0.95  # not before the server's time


def test_a_remembered_retry_after_ends(registry, tmp_path, server, api_key):
    server.script(rate_limited("0.6"), answer("SELL", 0.7))
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=1, max_retry_after_seconds=0.1)
    with pytest.raises(SynthesisFailed, match="exceeds max_retry_after_seconds"):
        deepseek.synthesize(request("Answer in json. Bar 1."))
    with pytest.raises(SynthesisFailed, match="exceeds max_retry_after_seconds") as held:
        deepseek.synthesize(request("Answer in json. Bar 2."))
    assert held.value.attempts == 0 and server.request_count == 1
    time.sleep(0.65)
    assert deepseek.synthesize(request("Answer in json. Bar 3.")).direction == "SELL"
    assert server.request_count == 2


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_up_to_max_attempts(registry, tmp_path, server, api_key, logs, status):
    message = "Internal Server Error" if status == 500 else "Service Unavailable: the server is overloaded"
    server.script(*[error(status, message, error_type="server_error")] * 4)
    row = run_one(registry, tmp_path, server, max_attempts=4)
    assert server.request_count == 4
    assert (row["synthesizer"], row["attempts"]) == ("consensus", 4)
    label = "server error" if status == 500 else "server overloaded"
    assert row["fallback_reason"] == f"4 attempts failed; last: HTTP {status} {label}: {message}"
    assert row["prompt_tokens"] is None
    assert_key_never_leaked(tmp_path, logs(), row)


def test_a_server_error_then_a_valid_answer(registry, tmp_path, server, api_key):
    server.script(error(500, "Internal Server Error"), html_error(502), answer("SELL", 0.6))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 3
    assert (row["synthesizer"], row["attempts"]) == ("deepseek", 3)


def test_a_dropped_connection_is_retried(registry, tmp_path, server, api_key):
    server.script(drop(), answer("SELL", 0.6))
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 2
    assert (row["synthesizer"], row["attempts"]) == ("deepseek", 2)


@pytest.mark.parametrize("hold", [stall(5), keep_alive(5, interval=0.1)], ids=["silent", "keep-alive-blank-lines"])
def test_a_connection_held_past_the_timeout_is_a_failed_attempt(registry, tmp_path, server, api_key, logs, hold):
    server.script(hold, answer("SELL", 0.6))
    started = time.monotonic()
    row = run_one(registry, tmp_path, server, timeout_seconds=0.5)
    assert time.monotonic() - started < 4  # blank lines every 0.1 s do not keep the attempt alive
    assert server.request_count == 2
    assert (row["synthesizer"], row["attempts"]) == ("deepseek", 2)
    assert "timed out after 0.5 s" in logs()


def test_timeouts_on_every_attempt_fall_back(registry, tmp_path, server, api_key, logs):
    server.script(stall(5), keep_alive(5))
    row = run_one(registry, tmp_path, server, timeout_seconds=0.5, max_attempts=2)
    assert server.request_count == 2
    assert row["synthesizer"] == "consensus"
    assert row["fallback_reason"] == "2 attempts failed; last: timed out after 0.5 s"
    assert_key_never_leaked(tmp_path, logs(), row)


def test_no_api_key_falls_back_without_a_request(registry, tmp_path, server, monkeypatch, logs):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    row = run_one(registry, tmp_path, server)
    assert server.request_count == 0
    assert row["synthesizer"] == "consensus"
    assert row["fallback_reason"] == "no API key: environment variable DEEPSEEK_API_KEY is not set"
    assert row["attempts"] == 0


def test_the_key_env_var_name_is_configurable(registry, tmp_path, server, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    server.script(answer("SELL", 0.6))
    row = run_one(registry, tmp_path, server, api_key_env="MY_LLM_KEY")
    assert row["synthesizer"] == "deepseek"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_v1_base_url_works_too(registry, tmp_path, server, api_key):
    server.script(answer("SELL", 0.6))
    row = collect_signals(build(registry, tmp_path, server, base_url=server.base_url + "/v1"), iterations=1)[0]
    assert row.synthesizer == "deepseek"
    assert server.requests[0].path == "/v1/chat/completions"


def test_the_same_prompt_twice_is_one_request(registry, tmp_path, server, api_key, logs):
    server.script(answer("SELL", 0.66, "Cached reasoning."))
    first = collect_signals(build(registry, tmp_path, server, db="first.db"), iterations=1)[0]
    second = collect_signals(build(registry, tmp_path, server, db="second.db"), iterations=1)[0]  # a replay of the same bar
    assert first.prompt == second.prompt
    assert server.request_count == 1
    assert (second.synthesizer, second.direction, second.confidence, second.reasoning) == ("deepseek", "SELL", 0.66, "Cached reasoning.")
    # A cache hit sends nothing: 0 attempts, 0 tokens, cost 0.
    row = stored_signals(tmp_path / "second.db")[0]
    assert (row["attempts"], row["prompt_tokens"], row["cost"]) == (0, 0, 0.0)
    assert_usage(stored_signals(tmp_path / "first.db")[0], calls=1)
    assert "answer from the response cache" in logs()
    assert_key_never_leaked(tmp_path, logs())


def test_cache_disabled_sends_every_time(registry, tmp_path, server, api_key):
    collect_signals(build(registry, tmp_path, server, db="first.db", cache_enabled=False), iterations=1)
    collect_signals(build(registry, tmp_path, server, db="second.db", cache_enabled=False), iterations=1)
    assert server.request_count == 2


def test_a_different_temperature_is_a_different_cache_entry(registry, tmp_path, server, api_key):
    collect_signals(build(registry, tmp_path, server, db="first.db"), iterations=1)
    collect_signals(build(registry, tmp_path, server, db="second.db", temperature=0.7), iterations=1)
    assert server.request_count == 2


def test_daily_cost_budget_hands_over_to_the_fallback(registry, tmp_path, server, api_key, logs):
    signals = collect_signals(build(registry, tmp_path, server, daily_cost_budget=0.0001), iterations=3)
    assert server.request_count == 1  # the first call (0.0001036 USD) used the budget up
    assert [s.synthesizer for s in signals] == ["deepseek", "consensus", "consensus"]
    reason = signals[1].fallback_reason
    assert reason.startswith("daily cost budget of 0.0001 USD reached (spent 0.000104 USD on ")
    assert signals[1].attempts == 0
    assert "daily budget reached" in logs()
    # The spend survives a restart: a new pipeline on the same file is still over budget.
    again = collect_signals(build(registry, tmp_path, server, db="again.db", daily_cost_budget=0.0001), iterations=3)
    assert server.request_count == 1 and again[0].synthesizer == "deepseek"  # bar 1 comes from the cache
    assert [s.synthesizer for s in again[1:]] == ["consensus", "consensus"]


def test_daily_token_budget(registry, tmp_path, server, api_key):
    signals = collect_signals(build(registry, tmp_path, server, daily_token_budget=1000), iterations=2)
    assert server.request_count == 2  # 640 tokens after the first call: still under 1,000
    signals += collect_signals(build(registry, tmp_path, server, db="more.db", daily_token_budget=1000), iterations=3)
    assert server.request_count == 2
    assert signals[-1].fallback_reason.startswith("daily token budget of 1000 tokens reached (used 1280 tokens on ")


def test_a_budget_holds_when_many_symbols_synthesize_at_once(registry, tmp_path, server, api_key):
    from concurrent.futures import ThreadPoolExecutor

    deepseek = synthesizer(registry, server, tmp_path, daily_cost_budget=0.0001)
    prompts = [request(f"Answer in json. Bar {i}.") for i in range(6)]  # distinct: no cache hits

    def ask(one):
        try:
            return deepseek.synthesize(one).direction
        except SynthesisFailed as exc:
            return exc.reason

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, prompts))
    assert server.request_count == 1  # one call spends the budget; the others see it spent
    assert sum(a.startswith("daily cost budget") for a in answers) == 5


def test_concurrent_symbols_share_one_synthesizer(registry, tmp_path, server, api_key):
    signals = collect_signals(build(registry, tmp_path, server, symbols=("BTC-USD", "ETH-USD")), iterations=2)
    assert len(signals) == 4 and {s.synthesizer for s in signals} == {"deepseek"}
    assert server.request_count == 4
    assert len(stored_signals(tmp_path / "v7.db")) == 4


# -- the synthesizer on its own ------------------------------------------------------------


def request(prompt: str = "Answer in json.") -> SynthesisRequest:
    return SynthesisRequest(
        symbol="BTC-USD", granularity="1h", bar_time=datetime(2024, 1, 1, tzinfo=timezone.utc), price=42000.0,
        results=[], prompt=prompt,
    )


def synthesizer(registry, server, tmp_path, **overrides):
    cls = registry.get("synthesizer", "deepseek").cls
    return cls(cls.Config(**deepseek_options(server, tmp_path, **overrides)))


def test_lowercase_signal_and_fenced_json_are_accepted(registry, tmp_path, server, api_key):
    server.script(content('```json\n{"signal": " sell ", "confidence": "0.4", "reasoning": "ok"}\n```'))
    result = synthesizer(registry, server, tmp_path).synthesize(request())
    assert (result.direction, result.confidence, result.attempts) == ("SELL", 0.4, 1)


def test_a_cut_off_answer_says_to_raise_max_tokens(registry, tmp_path, server, api_key):
    server.script(content('{"signal": "BUY", "confid', finish_reason="length"))
    with pytest.raises(SynthesisFailed) as failed:
        synthesizer(registry, server, tmp_path, max_attempts=1).synthesize(request())
    assert "raise max_tokens" in failed.value.reason
    assert failed.value.attempts == 1 and failed.value.usage.prompt_tokens == 600


def test_a_prompt_without_json_gets_a_json_system_message(registry, tmp_path, server, api_key):
    synthesizer(registry, server, tmp_path).synthesize(request("Decide BUY, SELL or HOLD."))
    messages = server.requests[0].body["messages"]
    assert messages[0]["role"] == "system" and "json" in messages[0]["content"]
    server.script(answer())
    synthesizer(registry, server, tmp_path, system_prompt="You are terse.", cache_enabled=False).synthesize(request())
    assert server.requests[1].body["messages"][0] == {"role": "system", "content": "You are terse."}


def test_an_empty_prompt_is_refused_without_a_request(registry, tmp_path, server, api_key):
    with pytest.raises(SynthesisFailed, match="empty prompt"):
        synthesizer(registry, server, tmp_path).synthesize(request(""))
    assert server.request_count == 0


def test_openai_style_usage_is_priced_too(registry, tmp_path, server):
    synth = synthesizer(registry, server, tmp_path, price_input_cache_hit=1, price_input_cache_miss=2, price_output=4)
    usage = synth.usage_from({"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 400}})
    assert (usage.cache_hit_tokens, usage.cache_miss_tokens) == (400, 600)
    assert usage.cost == pytest.approx((400 * 1 + 600 * 2 + 100 * 4) / 1e6)


def test_estimate_cost_counts_every_character_sent(tmp_path):
    from v7.plugins.synthesizers.deepseek import JSON_HINT, DeepSeekConfig, DeepSeekSynthesizer

    synth = DeepSeekSynthesizer(DeepSeekConfig(cache_path=tmp_path / "llm.db"))
    assert DeepSeekSynthesizer.supports("estimate_cost")
    prompt = "Answer in json. " + "x" * 984  # 1,000 characters, no system message needed
    estimate = synth.estimate_cost(prompt, 1000)
    assert estimate.calls == 1000
    assert estimate.prompt_tokens_per_call == 300  # 0.3 tokens per character
    assert estimate.completion_tokens_per_call == 100 and estimate.max_completion_tokens == 300
    assert (estimate.price_input_per_million, estimate.price_output_per_million) == (0.27, 1.10)  # the cache-miss price
    assert estimate.estimated_cost == pytest.approx(1000 * (300 * 0.27 + 100 * 1.10) / 1e6)  # 0.191 USD
    assert estimate.max_cost == pytest.approx(1000 * (300 * 0.27 + 300 * 1.10) / 1e6)  # 0.411 USD

    # The JSON hint added as a system message is sent, so it is counted; a small max_tokens caps the answer.
    tight = DeepSeekSynthesizer(DeepSeekConfig(max_tokens=50, price_input_cache_miss=1, price_output=2))
    estimate = tight.estimate_cost("x" * 100, 10)
    assert estimate.prompt_tokens_per_call == math.ceil((100 + len(JSON_HINT)) * 0.3)
    assert estimate.completion_tokens_per_call == 50 and estimate.max_completion_tokens == 50
    assert estimate.estimated_cost == estimate.max_cost == pytest.approx(10 * (estimate.prompt_tokens_per_call + 50 * 2) / 1e6)
    assert tight.estimate_cost("json", 0).estimated_cost == 0


def test_retry_delays_double_from_backoff_seconds_with_retry_after_as_a_floor(tmp_path):
    from v7.plugins.synthesizers.deepseek import DeepSeekConfig, DeepSeekSynthesizer

    synth = DeepSeekSynthesizer(DeepSeekConfig(backoff_seconds=1.0, backoff_max_seconds=5.0))
    for _ in range(50):
        assert 0.5 <= synth._delay(1, None) <= 1.0  # after the first attempt: between half and all of backoff_seconds
        assert 1.0 <= synth._delay(2, None) <= 2.0
        assert 2.0 <= synth._delay(3, None) <= 4.0
        assert 2.5 <= synth._delay(4, None) <= 5.0  # capped at backoff_max_seconds
        assert synth._delay(1, 3.0) == 3.0  # a server's retry-after is a floor
        assert synth._delay(1, 60.0) == 60.0  # ... that backoff_max_seconds does not lower


def test_config_is_validated(registry, tmp_path, server):
    raw = {"synthesizer": {"use": "deepseek", "deepseek": {"temperature": 3, "api_key": KEY}}}
    with pytest.raises(ConfigError) as problems:
        validate_config(raw, registry)
    text = str(problems.value)
    assert "synthesizer.deepseek.temperature" in text
    assert "synthesizer.deepseek.api_key: unknown key" in text


def test_importing_the_plugin_does_not_import_openai():
    code = "import sys, v7.plugins.synthesizers.deepseek; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- through the CLI -----------------------------------------------------------------------


def test_v7_run_with_deepseek_through_the_cli(tmp_path, server):
    server.script(answer("SELL", 0.61, "From the CLI."))
    config = tmp_path / "v7.toml"
    config.write_text(textwrap.dedent(f"""
        [engine]
        symbols = ["BTC-USD"]
        lookback = 200

        [theories]
        enabled = ["hurst_exponent"]

        [synthesizer]
        use = "deepseek"
        fallback = "consensus"

        [synthesizer.deepseek]
        base_url = "{server.base_url}"
        backoff_seconds = 0.01
        cache_path = "{tmp_path / 'llm-cache.db'}"

        [sinks.sqlite]
        path = "{tmp_path / 'v7.db'}"
    """))
    result = run_v7("--log-json", "run", "--config", str(config), "--iterations", "1", cwd=tmp_path, env={"DEEPSEEK_API_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert server.request_count == 1
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    row = stored_signals(tmp_path / "v7.db")[0]
    assert (row["synthesizer"], row["direction"], row["reasoning"]) == ("deepseek", "SELL", "From the CLI.")
    assert_usage(row, calls=1)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "llm answered" and line.get("plugin") == "deepseek" for line in lines)
    assert_key_never_leaked(tmp_path, result.stderr + result.stdout, row)


def test_a_connection_cut_while_the_body_streams_is_retried(registry, tmp_path, server, api_key, logs):
    """200 headers, blank lines, then the socket closes: the transport error of openai's HTTP library is a failed attempt."""
    server.script(keep_alive(0.3, interval=0.1), answer("SELL", 0.6))
    row = run_one(registry, tmp_path, server, timeout_seconds=5)
    assert server.request_count == 2
    assert (row["synthesizer"], row["direction"], row["attempts"]) == ("deepseek", "SELL", 2)


# -- the circuit breaker -------------------------------------------------------------------

SERVER_ERROR = error(500, "Internal Server Error", error_type="server_error")
OPEN_60 = "circuit breaker open after {} consecutive failed signals; next probe in 60 s"


def ask(deepseek, bar: int):
    """The direction, or the SynthesisFailed, for a prompt of its own (no response-cache hits)."""
    try:
        return deepseek.synthesize(request(f"Answer in json. Bar {bar}.")).direction
    except SynthesisFailed as exc:
        return exc


def events(log_text: str, name: str) -> int:
    return sum(1 for line in log_text.splitlines() if line.startswith("{") and json.loads(line).get("event") == name)


def test_the_breaker_opens_after_consecutive_failed_signals_and_sends_nothing(registry, tmp_path, server, api_key, logs):
    server.default = SERVER_ERROR
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=2, breaker_failures=3, breaker_cooldown_seconds=60)
    failed = [ask(deepseek, bar) for bar in range(3)]
    assert [f.attempts for f in failed] == [2, 2, 2] and server.request_count == 6
    started = time.monotonic()
    held = [ask(deepseek, bar) for bar in range(3, 8)]
    assert time.monotonic() - started < 1  # no request, no retry wait
    assert server.request_count == 6
    assert [(f.reason, f.attempts) for f in held] == [(OPEN_60.format(3), 0)] * 5
    text = logs()
    assert events(text, "llm circuit open") == 1  # once, not per signal held back
    assert '"failures": 3' in text and '"cooldown_s": 60' in text


def test_after_the_cooldown_one_probe_and_its_success_closes_the_breaker(registry, tmp_path, server, api_key, logs):
    server.script(*[SERVER_ERROR] * 4)  # then the default HOLD answer
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=2, breaker_failures=2, breaker_cooldown_seconds=0.3)
    assert all(isinstance(ask(deepseek, bar), SynthesisFailed) for bar in range(2))
    assert ask(deepseek, 2).reason.startswith("circuit breaker open after 2 consecutive failed signals; next probe in ")
    assert server.request_count == 4
    time.sleep(0.35)
    assert ask(deepseek, 3) == "HOLD"  # the probe
    assert server.request_count == 5
    assert [ask(deepseek, bar) for bar in range(4, 7)] == ["HOLD"] * 3  # closed again
    assert server.request_count == 8
    text = logs()
    assert events(text, "llm circuit open") == 1 and events(text, "llm circuit closed") == 1


def test_a_failed_probe_is_one_request_and_reopens_the_breaker(registry, tmp_path, server, api_key, logs):
    server.default = SERVER_ERROR
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=3, breaker_failures=1, breaker_cooldown_seconds=0.3)
    assert ask(deepseek, 0).attempts == 3
    assert ask(deepseek, 1).attempts == 0
    time.sleep(0.35)
    probe = ask(deepseek, 2)
    assert server.request_count == 4  # the probe is a single request, not max_attempts
    assert (probe.attempts, probe.reason) == (1, "HTTP 500 server error: Internal Server Error")
    again = ask(deepseek, 3)
    assert again.attempts == 0 and again.reason.startswith("circuit breaker open after 2 consecutive failed signals")
    assert server.request_count == 4
    time.sleep(0.35)
    server.default = answer("SELL", 0.6)
    assert ask(deepseek, 4) == "SELL" and server.request_count == 5
    text = logs()
    assert events(text, "llm circuit open") == 1 and events(text, "llm circuit closed") == 1
    assert events(text, "llm circuit probe failed") == 1


def test_while_one_signal_probes_the_others_fall_back(registry, tmp_path, server, api_key):
    from concurrent.futures import ThreadPoolExecutor

    server.script(SERVER_ERROR, keep_alive(0.5, interval=0.1, then=answer("SELL", 0.6)))
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=1, breaker_failures=1, breaker_cooldown_seconds=0.2)
    assert ask(deepseek, 0).attempts == 1
    time.sleep(0.25)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda bar: ask(deepseek, bar), range(1, 7)))
    assert server.request_count == 2  # one probe
    assert answers.count("SELL") == 1
    assert sorted(a.reason for a in answers if a != "SELL") == ["circuit breaker half-open: another signal is probing"] * 5
    assert ask(deepseek, 7) == "HOLD" and server.request_count == 3


def test_a_success_resets_the_count(registry, tmp_path, server, api_key):
    server.script(SERVER_ERROR, SERVER_ERROR, answer("SELL", 0.6), SERVER_ERROR, SERVER_ERROR)
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=1, breaker_failures=3)
    results = [ask(deepseek, bar) for bar in range(6)]
    assert results[2] == "SELL" and results[5] == "HOLD"  # 2 failures, a success, 2 failures: never open
    assert server.request_count == 6


def test_breaker_failures_0_turns_the_breaker_off(registry, tmp_path, server, api_key):
    server.default = SERVER_ERROR
    deepseek = synthesizer(registry, server, tmp_path, max_attempts=1, breaker_failures=0)
    assert [ask(deepseek, bar).attempts for bar in range(8)] == [1] * 8
    assert server.request_count == 8


def test_a_dead_endpoint_costs_requests_only_until_the_breaker_opens(registry, tmp_path, server, api_key):
    server.default = SERVER_ERROR
    signals = collect_signals(build(registry, tmp_path, server, max_attempts=2, breaker_failures=2), iterations=5)
    assert server.request_count == 4
    assert [s.synthesizer for s in signals] == ["consensus"] * 5
    assert [s.attempts for s in signals] == [2, 2, 0, 0, 0]
    assert {s.fallback_reason for s in signals[2:]} == {OPEN_60.format(2)}  # breaker_cooldown_seconds: 60 by default


# -- the response cache file ---------------------------------------------------------------


def test_the_response_cache_file_is_owner_only(registry, tmp_path, server, api_key):
    import os
    import stat

    path = tmp_path / "cache" / "llm-cache.db"  # its folder is created too
    previous = os.umask(0o022)  # the usual default: files readable by everyone
    try:
        deepseek = synthesizer(registry, server, tmp_path, cache_path=str(path))
        assert deepseek.synthesize(request()).direction == "HOLD"
        files = [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))]
        assert path.with_name(path.name + "-wal").exists()  # WAL mode: the companions exist while it is open
        for created in files:
            if created.exists():
                assert stat.S_IMODE(os.stat(created).st_mode) == 0o600, created.name
        deepseek.close()
    finally:
        os.umask(previous)


def test_the_breaker_and_the_retry_after_memory_follow_their_clock():
    from v7.plugins.synthesizers.deepseek import CircuitBreaker, NotBefore

    now = [1000.0]
    breaker = CircuitBreaker(failures=2, cooldown=60, clock=lambda: now[0])
    assert breaker.admit() is False and breaker.failed(False) is None
    assert breaker.failed(False) == "opened"
    now[0] += 18
    with pytest.raises(SynthesisFailed, match="^circuit breaker open after 2 consecutive failed signals; next probe in 42 s$"):
        breaker.admit()
    now[0] += 42
    assert breaker.admit() is True  # the probe
    with pytest.raises(SynthesisFailed, match="another signal is probing"):
        breaker.admit()
    breaker.release(True)  # it sent nothing: the next signal probes instead
    assert breaker.admit() is True
    assert breaker.succeeded() == 2 and breaker.admit() is False

    not_before = NotBefore(clock=lambda: now[0])
    not_before.remember(120, "HTTP 429 rate limited")
    not_before.remember(5, "HTTP 429 rate limited")  # an earlier time does not shorten the wait
    now[0] += 100
    hold = not_before.hold()
    assert (hold.remaining, hold.asked) == (20, 120)
    assert hold.too_long(10).startswith("retry-after 120 s exceeds max_retry_after_seconds (10 s): no request before ")
    now[0] += 20
    assert not_before.hold() is None
