"""The notify sink against a real loopback webhook (Apprise's `json://`): content, filters, changes
only, dedup, the rate limit's digest, a hanging channel, a failing one, and secrets kept out of logs."""

from __future__ import annotations

import json
import time

import pytest

from fakes._http_server import server_error, slow
from fakes.webhook_server import FakeWebhook
from sinks.factory import LogCapture, make_signal, run_info
from v7 import RunProblem
from v7.plugins.sinks.notify import NotifyConfig, NotifyError, NotifySink, Scrubber, redacted

TOKEN = "s3cr3t-T0KEN-4242"


@pytest.fixture
def hook():
    with FakeWebhook() as server:
        yield server


def opened(*urls: str, **settings) -> tuple[NotifySink, LogCapture]:
    settings.setdefault("min_interval_seconds", 0)
    sink = NotifySink(NotifyConfig(urls=list(urls), **settings))
    log = LogCapture()
    sink.open(run_info(), log)
    return sink, log


def problem(kind="feed_failing", plugin="coinbase", symbol="ETH-USD", count=3, message="ConnectError: refused") -> RunProblem:
    return RunProblem(kind=kind, plugin=plugin, symbol=symbol, count=count, message=message, run_id="run0")


def test_buy_and_sell_signals_arrive_with_their_facts_and_hold_does_not(hook):
    sink, _ = opened(hook.channel("/hook"))
    assert sink.write(make_signal(0, direction="BUY", confidence=0.72, price=43210.5, reasoning="trend and low entropy"))
    assert not sink.write(make_signal(1, direction="HOLD"))
    assert sink.write(make_signal(2, direction="SELL", fallback_reason="deepseek: HTTP 503", price=0.00012345))
    bodies = hook.wait_for(2)
    sink.close()
    assert [b["title"] for b in bodies] == ["V7 BUY BTC-USD", "V7 SELL BTC-USD"]
    buy, sell = (b["message"].splitlines() for b in bodies)
    assert buy == ["BUY BTC-USD at 43,210.50, confidence 0.72", "1h bar of 2024-03-01T00:00:00Z, decided by consensus", "trend and low entropy"]
    assert sell[0] == "SELL BTC-USD at 0.00012345, confidence 0.50" and "(fallback: deepseek: HTTP 503)" in sell[1]
    assert {b["type"] for b in bodies} == {"info"}
    assert len(hook.bodies()) == 2


def test_filters_by_symbol_direction_and_confidence(hook):
    sink, _ = opened(hook.channel(), symbols=["ETH-USD"], directions=["SELL"], min_confidence=0.6)
    plan = [("ETH-USD", "SELL", 0.7), ("ETH-USD", "SELL", 0.5), ("ETH-USD", "BUY", 0.9), ("BTC-USD", "SELL", 0.9), ("ETH-USD", "SELL", 0.6)]
    sent = [sink.write(make_signal(i, symbol=s, direction=d, confidence=c)) for i, (s, d, c) in enumerate(plan)]
    sink.close()
    assert sent == [True, False, False, False, True]
    assert [b["message"].splitlines()[0] for b in hook.bodies()] == [
        "SELL ETH-USD at 100.00, confidence 0.70", "SELL ETH-USD at 104.00, confidence 0.60",
    ]


def test_changes_only_sends_a_direction_once_until_it_changes(hook):
    sink, _ = opened(hook.channel(), changes_only=True)
    directions = ["BUY", "BUY", "SELL", "SELL", "HOLD", "SELL", "BUY"]
    sent = [sink.write(make_signal(i, direction=d)) for i, d in enumerate(directions)]
    other = sink.write(make_signal(7, symbol="ETH-USD", direction="BUY"))  # per symbol: ETH's first BUY is a change
    sink.close()
    assert sent == [True, False, True, False, False, True, True] and other
    assert [b["title"] for b in hook.bodies()] == ["V7 BUY BTC-USD", "V7 SELL BTC-USD", "V7 SELL BTC-USD", "V7 BUY BTC-USD", "V7 BUY ETH-USD"]


def test_the_same_signal_or_problem_is_sent_once(hook):
    sink, _ = opened(hook.channel(), repeat_problem_minutes=0.01)  # a problem may come back after 0.6 s
    signal = make_signal(0, direction="BUY")
    assert sink.write(signal) and not sink.write(signal.model_copy())
    sink.notice(problem(count=3))
    sink.notice(problem(count=4))  # the same feed still failing
    sink.notice(problem(count=1, symbol="BTC-USD"))  # below feed_failures (3): not yet
    sink.notice(problem(kind="llm_budget", plugin="deepseek", symbol=None, count=1, message="daily cost budget of 1 USD reached"))
    sink.notice(problem(kind="llm_budget", plugin="deepseek", symbol=None, count=2, message="daily cost budget of 1 USD reached"))
    hook.wait_for(3)
    time.sleep(0.7)
    sink.notice(problem(count=40))  # the repeat window has passed
    sink.close()
    titles = [b["title"] for b in hook.bodies()]
    assert titles == ["V7 BUY BTC-USD", "V7 problem: feed failing", "V7 problem: LLM budget reached", "V7 problem: feed failing"]
    messages = [b["message"] for b in hook.bodies()]
    assert messages[1].startswith("feed coinbase failed for ETH-USD 3 iteration(s) in a row\nConnectError: refused")
    assert messages[3].startswith("feed coinbase failed for ETH-USD 40 iteration(s) in a row")
    assert {b["type"] for b in hook.bodies()[1:]} == {"warning"}


def test_problems_off_sends_none(hook):
    sink, _ = opened(hook.channel(), problems=False)
    sink.notice(problem(count=10))
    sink.write(make_signal(0, direction="SELL"))
    sink.close()
    assert [b["title"] for b in hook.bodies()] == ["V7 SELL BTC-USD"]


def test_over_the_rate_limit_one_digest_sums_up_what_was_held_back(hook):
    sink, log = opened(hook.channel(), rate_limit=3, rate_window_seconds=1.5)
    started = time.monotonic()
    for i in range(10):
        sink.write(make_signal(i, direction="BUY" if i % 2 else "SELL"))
    assert time.monotonic() - started < 0.5  # held back in the channel's worker, not in write()
    bodies = hook.wait_for(4, timeout=15)
    arrivals = [p.at for p in hook.received]
    sink.close()
    assert len(bodies) == 4, [b["title"] for b in bodies]
    assert [b["title"] for b in bodies[:3]] == ["V7 SELL BTC-USD", "V7 BUY BTC-USD", "V7 SELL BTC-USD"]
    digest = bodies[3]
    assert digest["title"] == "V7 digest: 7 held back"
    lines = digest["message"].splitlines()
    assert lines[0] == "7 notification(s) held back by the rate limit:"
    assert lines[1:] == [f"- {'BUY' if i % 2 else 'SELL'} BTC-USD at {100 + i:.2f}, confidence 0.50" for i in range(3, 10)]
    assert arrivals[3] - arrivals[0] >= 1.0  # the digest waited for the window to open again
    closed = [f for level, event, f in log.records if event == "notification channel closed"]
    assert closed[0]["sent"] == 4 and closed[0]["digested"] == 7 and closed[0]["failed"] == 0


def test_what_is_still_held_at_close_goes_out_as_one_digest(hook):
    sink, _ = opened(hook.channel(), rate_limit=2, rate_window_seconds=600)
    for i in range(5):
        sink.write(make_signal(i, direction="BUY"))
    hook.wait_for(2)
    sink.close()
    bodies = hook.bodies()
    assert [b["title"] for b in bodies] == ["V7 BUY BTC-USD", "V7 BUY BTC-USD", "V7 digest: 3 held back"]


def test_a_hanging_channel_delays_neither_write_nor_another_channel(hook):
    hook.fail_always(slow(10, path_prefix="/hang"))
    sink, log = opened(hook.channel("/hang"), hook.channel("/fast"), timeout_seconds=30, close_timeout_seconds=1)
    started = time.monotonic()
    for i in range(5):
        sink.write(make_signal(i, direction="BUY"))
        sink.notice(problem(count=3, symbol=f"S{i}-USD"))
    writing = time.monotonic() - started
    fast = hook.wait_for(10, prefix="/fast", timeout=8)
    fast_done = time.monotonic() - started
    assert len(hook.bodies("/hang")) == 1  # the hanging channel got its first message and is stuck on it
    sink.close()
    closing = time.monotonic() - started - fast_done
    assert writing < 0.5, writing  # the channel hangs 10 s
    assert len(fast) == 10 and fast_done < 8
    assert closing < 5, closing  # close_timeout_seconds = 1, not the 10 s hang
    busy = [f for level, event, f in log.records if event == "notification channel still busy at close; what it had queued is dropped"]
    assert busy == [{"channel": f"#1 {redacted(hook.channel('/hang'))}"}]
    closed = {f["channel"]: f for level, event, f in log.records if event == "notification channel closed"}
    assert closed[f"#2 json://127.0.0.1:{hook.port}/***"]["sent"] == 10
    assert closed[f"#1 json://127.0.0.1:{hook.port}/***"]["dropped"] == 9


def test_a_channel_answering_500_is_logged_redacted_and_the_others_go_on(hook):
    hook.fail_always(server_error(500, path_prefix="/broken"))
    broken = hook.channel(f"/broken/{TOKEN}")
    sink, log = opened(broken, hook.channel("/fine"))
    for i in range(3):
        assert sink.write(make_signal(i, direction="SELL"))
    assert len(hook.wait_for(3, prefix="/fine")) == 3
    hook.wait_for(3, prefix="/broken")
    sink.close()
    failures = [f for level, event, f in log.records if event == "notification failed"]
    assert len(failures) == 3 and [f["failures"] for f in failures] == [1, 2, 3]
    assert all(f["channel"] == f"#1 json://127.0.0.1:{hook.port}/***" for f in failures)
    assert "500" in failures[0]["reason"]
    assert TOKEN not in json.dumps(log.records, default=str)
    closed = {f["channel"]: f for level, event, f in log.records if event == "notification channel closed"}
    assert closed[f"#1 {redacted(broken)}"]["failed"] == 3 and closed[f"#2 {redacted(hook.channel('/fine'))}"]["sent"] == 3


def test_urls_from_the_environment_and_clear_startup_errors(hook, monkeypatch):
    monkeypatch.setenv("V7_TEST_NOTIFY", f" {hook.channel('/a/' + TOKEN)} ,\n{hook.channel('/b')} ")
    sink, log = opened(urls_env="V7_TEST_NOTIFY")
    assert [c.name for c in sink.channels] == [f"#1 json://127.0.0.1:{hook.port}/***", f"#2 json://127.0.0.1:{hook.port}/***"]
    sink.write(make_signal(0, direction="BUY"))
    assert len(hook.wait_for(2)) == 2
    sink.close()
    assert TOKEN not in json.dumps(log.records, default=str)

    monkeypatch.setenv("V7_TEST_NOTIFY", "  ")
    with pytest.raises(NotifyError, match="urls_env: environment variable V7_TEST_NOTIFY is not set or holds no URL"):
        opened(urls_env="V7_TEST_NOTIFY")
    with pytest.raises(NotifyError, match="no channel: set urls"):
        opened()
    with pytest.raises(NotifyError) as refused:
        opened(hook.channel("/ok"), f"nosuchscheme://{TOKEN}/x")
    assert "urls[1]: nosuchscheme://***/*** is not a URL Apprise can send to" in str(refused.value)
    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize("url, shown", [
    ("json://127.0.0.1:8080/hook/abcdef123", "json://127.0.0.1:8080/***"),
    ("tgram://123456789:AAHk-secret-bot-token/-100987654", "tgram://***/***"),
    ("ntfys://ntfy.sh/my-private-topic", "ntfys://ntfy.sh/***"),
    ("mailto://me:password1@smtp.example.com", "mailto://***@smtp.example.com"),
    ("discord://1234567890/webhook-token", "discord://***/***"),
    ("not a url", "***"),
])
def test_channels_are_named_without_their_secrets(url, shown):
    assert redacted(url) == shown
    scrub = Scrubber([url])
    text = scrub(f"could not reach {url}; token {url.split('/')[-1]}")
    assert text.startswith("could not reach ***; token ***")


def test_the_sink_imports_apprise_only_when_opened():
    import subprocess
    import sys

    code = "import sys, v7.plugins.sinks.notify; print('apprise' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
