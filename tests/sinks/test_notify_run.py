"""The notify sink in a real `v7 run`: run problems reach it through the engine (a feed failing,
the LLM budget reached, a store spooling), signals reach a webhook while another channel hangs
and a third answers 500, and the tokens of `urls_env` appear in no output and no stored data."""

from __future__ import annotations

import json
import time

import pytest

from fakes._http_server import server_error, slow
from fakes.webhook_server import FakeWebhook
from helpers import BTC_CSV, make_distribution, run_v7

TOKEN = "tg-9f8e7d6c5b4a-SECRET"

TROUBLE_PLUGINS = f"""
    from v7 import (Feed, SignalSpooled, Sink, SynthesisFailed, Synthesizer, Theory, TheoryFinding, hookimpl,
                    read_candles_csv)

    class FlakyFeed(Feed):
        '''BTC-USD one bar further each iteration; ETH-USD's upstream always refuses.'''
        name = "flaky"
        live = False

        def __init__(self, config=None):
            super().__init__(config)
            self.series = read_candles_csv({str(BTC_CSV)!r}, "BTC-USD", "1h")
            self.end = 200

        def fetch_candles(self, symbol, granularity, lookback):
            if symbol == "ETH-USD":
                raise ConnectionError("upstream refused the connection")
            self.end += 1
            return self.series.slice(self.end - lookback, self.end)

    class Bullish(Theory):
        name = "bullish"
        default_min_candles = 5

        def analyze(self, candles):
            return TheoryFinding(bias=0.9, confidence=1.0, label="up", interpretation="always up")

    class Broke(Synthesizer):
        '''An LLM whose daily budget is used up, as the deepseek synthesizer reports it.'''
        name = "broke"

        def synthesize(self, request):
            raise SynthesisFailed("daily cost budget of 1 USD reached (spent 1.000042 USD on 2024-03-01 UTC)", attempts=0)

    class Spooler(Sink):
        '''A store whose database is locked: every signal waits in its spool.'''
        name = "spooler"

        def write(self, signal):
            raise SignalSpooled("database is locked; the signal waits in v7.db.spool.jsonl")

    @hookimpl
    def register_feeds(register):
        register(FlakyFeed)

    @hookimpl
    def register_theories(register):
        register(Bullish)

    @hookimpl
    def register_synthesizers(register):
        register(Broke)

    @hookimpl
    def register_sinks(register):
        register(Spooler)
"""

CONFIG = """
[engine]
symbols = ["BTC-USD", "ETH-USD"]
granularity = "1h"
lookback = 100

[feeds]
enabled = ["flaky"]

[theories]
enabled = ["bullish"]

[formatters]
enabled = []

[synthesizer]
use = "broke"
fallback = "consensus"

[sinks]
enabled = ["spooler", "notify"]
[sinks.notify]
urls_env = "V7_NOTIFY_URLS"
feed_failures = 3
min_interval_seconds = 0
timeout_seconds = 30
close_timeout_seconds = 2
"""


@pytest.fixture
def hook():
    with FakeWebhook() as server:
        yield server


def test_run_problems_and_signals_reach_the_channels_through_a_real_run(tmp_path, hook):
    site = make_distribution(tmp_path / "site", "v7-trouble", "1.0", {"trouble": "v7_trouble"}, {"v7_trouble": TROUBLE_PLUGINS})
    (tmp_path / "config.toml").write_text(CONFIG)
    hook.fail_always(slow(30, path_prefix="/hang"))
    hook.inject(server_error(500, path_prefix="/broken"), times=1000)
    urls = f"{hook.channel('/good')}, {hook.channel('/hang')}\n{hook.channel('/broken/' + TOKEN)}"

    started = time.monotonic()
    done = run_v7("--log-json", "run", "--config", "config.toml", "--iterations", "5", cwd=tmp_path, extra_path=site,
                  env={"V7_NOTIFY_URLS": urls})
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr  # ETH-USD made no signal; and the closing line counts none as stored:
    assert "5 signal(s) produced, 0 stored, 0 already stored, 5 spooled, 0 lost" in done.stdout + done.stderr
    assert elapsed < 25, elapsed  # the /hang channel holds its first message 30 s; close waits 2 s

    good = hook.bodies("/good")
    titles = [b["title"] for b in good]
    assert titles.count("V7 BUY BTC-USD") == 5
    problems = [b for b in good if b["title"].startswith("V7 problem")]
    assert sorted(b["title"] for b in problems) == [
        "V7 problem: LLM budget reached", "V7 problem: feed failing", "V7 problem: store spooling",
    ]
    feed = next(b["message"] for b in problems if b["title"] == "V7 problem: feed failing")
    assert feed.startswith("feed flaky failed for ETH-USD 3 iteration(s) in a row\nConnectionError: upstream refused the connection")
    budget = next(b["message"] for b in problems if b["title"] == "V7 problem: LLM budget reached")
    assert budget.startswith("synthesizer broke reached its budget; the fallback decides\ndaily cost budget of 1 USD reached")
    spool = next(b["message"] for b in problems if b["title"] == "V7 problem: store spooling")
    assert spool.startswith("sink spooler could not store a signal (1 in a row)\nspooled: database is locked")
    assert len(hook.bodies("/broken")) == 8 and len(hook.bodies("/hang")) == 1

    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    signals = [r for r in records if r.get("event") == "signal"]
    assert len(signals) == 5 and all(r["timings_ms"]["sink"] < 500 for r in signals), [r["timings_ms"] for r in signals]
    failures = [r for r in records if r.get("event") == "notification failed"]
    assert len(failures) == 8 and {r["channel"] for r in failures} == {f"#3 json://127.0.0.1:{hook.port}/***"}
    assert all("500" in r["reason"] for r in failures)
    assert any(r.get("event") == "notification channel still busy at close; what it had queued is dropped" for r in records)

    # The token is in no output and in no file the run left behind.
    assert TOKEN not in done.stdout and TOKEN not in done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and "site" not in path.parts:
            assert TOKEN.encode() not in path.read_bytes(), path
    shown = run_v7("config", "show", "--config", "config.toml", cwd=tmp_path, extra_path=site, env={"V7_NOTIFY_URLS": urls})
    assert shown.returncode == 0, shown.stderr
    assert "V7_NOTIFY_URLS" in shown.stdout and TOKEN not in shown.stdout + shown.stderr


def test_a_run_without_a_channel_stops_before_fetching_with_a_clear_error(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[feeds]\nenabled = ["replay"]\n[sinks]\nenabled = ["notify"]\n[sinks.notify]\nurls_env = "V7_NOTIFY_URLS"\n'
    )
    done = run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path, env={"V7_NOTIFY_URLS": ""})
    assert done.returncode == 2
    assert "urls_env: environment variable V7_NOTIFY_URLS is not set or holds no URL" in done.stderr


class Listening:
    """Sinks for the bookkeeping tests: one that hears notices, one that fails to, one that takes none."""

    @staticmethod
    def classes():
        from v7 import Sink

        class Ear(Sink):
            name = "ear"

            def __init__(self):
                super().__init__()
                self.heard = []

            def write(self, signal):
                return True

            def notice(self, problem):
                self.heard.append((problem.kind, problem.plugin, problem.symbol, problem.count))

        class Deaf(Ear):
            name = "deaf"

            def notice(self, problem):
                raise RuntimeError("cannot hear")

        class Store(Sink):
            name = "store"

            def write(self, signal):
                return True

        return Ear, Deaf, Store


def test_streaks_reset_on_success_and_a_failing_notice_does_not_stop_the_others():
    from sinks.factory import make_signal
    from v7.core.run_problems import RunProblems

    Ear, Deaf, Store = Listening.classes()
    deaf, ear = Deaf(), Ear()
    problems = RunProblems([deaf, Store(), ear], "run0", "deepseek")
    for _ in range(2):
        problems.failed("feed_failing", "coinbase", "ConnectError", "ETH-USD")
    problems.ok("feed_failing", "coinbase", "ETH-USD")
    problems.failed("feed_failing", "coinbase", "ConnectError", "ETH-USD")
    problems.synthesized(make_signal(0, fallback_reason="daily token budget of 1000 tokens reached (used 1200 tokens)"))
    problems.synthesized(make_signal(1, fallback_reason="deepseek: HTTP 503"))  # a fallback, but not for the budget
    problems.synthesized(make_signal(2, fallback_reason="daily token budget of 1000 tokens reached (used 1300 tokens)"))
    assert ear.heard == []  # nothing reaches a sink before deliver(), called from the run's thread
    problems.deliver()
    assert ear.heard == [
        ("feed_failing", "coinbase", "ETH-USD", 1), ("feed_failing", "coinbase", "ETH-USD", 2),
        ("feed_failing", "coinbase", "ETH-USD", 1), ("llm_budget", "deepseek", None, 1), ("llm_budget", "deepseek", None, 2),
    ]


def test_without_a_sink_taking_notices_nothing_is_kept():
    from v7.core.run_problems import RunProblems

    _, _, Store = Listening.classes()
    problems = RunProblems([Store()], "run0", "deepseek")
    assert not problems.enabled
    problems.failed("feed_failing", "coinbase", "ConnectError", "ETH-USD")
    assert problems._streaks == {} and problems._waiting == []


def test_a_rerun_whose_signals_are_all_stored_already_notifies_nothing_again(tmp_path, hook):
    """Notify is listed before the store: the store still answers first, and what it already had is not sent twice."""
    site = make_distribution(tmp_path / "site", "v7-trouble", "1.0", {"trouble": "v7_trouble"}, {"v7_trouble": TROUBLE_PLUGINS})
    config = CONFIG.replace('symbols = ["BTC-USD", "ETH-USD"]', 'symbols = ["BTC-USD"]').replace('use = "broke"', 'use = "consensus"')
    config = config.replace('enabled = ["spooler", "notify"]', 'enabled = ["notify", "sqlite"]')
    (tmp_path / "config.toml").write_text(config + '[sinks.sqlite]\npath = "v7.db"\n')
    env = {"V7_NOTIFY_URLS": hook.channel("/good")}

    first = run_v7("run", "--config", "config.toml", "--iterations", "3", cwd=tmp_path, extra_path=site, env=env)
    assert first.returncode == 0, first.stderr
    assert [b["title"] for b in hook.bodies("/good")] == ["V7 BUY BTC-USD"] * 3

    again = run_v7("run", "--config", "config.toml", "--iterations", "4", cwd=tmp_path, extra_path=site, env=env)
    assert again.returncode == 0, again.stderr
    assert "4 signal(s) produced, 1 stored, 3 already stored" in again.stdout + again.stderr
    assert [b["title"] for b in hook.bodies("/good")] == ["V7 BUY BTC-USD"] * 4  # only the new bar's signal


CONTEXT_PLUGINS = TROUBLE_PLUGINS.replace("        register(FlakyFeed)\n", "        register(FlakyFeed)\n        register(DeadContext)\n") + """
    class DeadContext(Feed):
        '''A market-context feed whose API is down.'''
        name = "deadcontext"
        provides = frozenset({"context"})
        live = False

        def fetch_context(self, symbol):
            raise TimeoutError("the context API did not answer")
"""


def run_with_context_feed(tmp_path, hook, plugins: str, feeds: str) -> list[dict]:
    """Four iterations of BTC-USD with the consensus rule, `feeds` as the [feeds] lines, the notify sink alone: what reached it."""
    site = make_distribution(tmp_path / "site", "v7-trouble", "1.0", {"trouble": "v7_trouble"}, {"v7_trouble": plugins})
    config = CONFIG.replace('symbols = ["BTC-USD", "ETH-USD"]', 'symbols = ["BTC-USD"]').replace('use = "broke"', 'use = "consensus"')
    config = config.replace('enabled = ["flaky"]', feeds)
    (tmp_path / "config.toml").write_text(config.replace('enabled = ["spooler", "notify"]', 'enabled = ["notify"]'))
    done = run_v7("run", "--config", "config.toml", "--iterations", "4", cwd=tmp_path, extra_path=site, env={"V7_NOTIFY_URLS": hook.channel("/good")})
    assert done.returncode == 0, done.stderr
    return hook.bodies("/good")


def test_a_market_context_feed_failing_iterations_in_a_row_is_a_run_problem(tmp_path, hook):
    bodies = run_with_context_feed(tmp_path, hook, CONTEXT_PLUGINS, 'enabled = ["flaky", "deadcontext"]\ncandles = "flaky"\ncontext = ["deadcontext"]')
    problems = [b for b in bodies if b["title"] == "V7 problem: feed failing"]
    assert len(problems) == 1, problems  # at the third failure in a row (feed_failures = 3), once
    assert problems[0]["message"].startswith("feed deadcontext failed for BTC-USD 3 iteration(s) in a row\nTimeoutError: the context API did not answer")


BOTH_PLUGINS = CONTEXT_PLUGINS.replace("        register(DeadContext)\n", "        register(DeadContext)\n        register(Both)\n") + """
    class Both(FlakyFeed):
        '''Candles that always arrive and a market context that never does, from one feed.'''
        name = "both"
        provides = frozenset({"candles", "context"})

        def fetch_context(self, symbol):
            raise TimeoutError("the context endpoint did not answer")
"""


def test_a_feed_whose_candles_arrive_but_whose_context_fails_is_still_a_run_problem(tmp_path, hook):
    """Its good candle fetches do not end the streak of failing context fetches: they are different jobs."""
    bodies = run_with_context_feed(tmp_path, hook, BOTH_PLUGINS, 'enabled = ["both"]\ncandles = "both"\ncontext = ["both"]')
    assert [b["title"] for b in bodies].count("V7 BUY BTC-USD") == 4  # the candles did arrive
    problems = [b for b in bodies if b["title"] == "V7 problem: feed failing"]
    assert len(problems) == 1, problems
    assert problems[0]["message"].startswith("feed both failed for BTC-USD 3 iteration(s) in a row\nTimeoutError: the context endpoint did not answer")


def test_config_show_hides_tokens_inside_notification_urls(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[sinks]\nenabled = ["sqlite", "notify"]\n[sinks.notify]\n'
        f'urls = ["tgram://{TOKEN}/12345", "json://127.0.0.1:8099/hook/{TOKEN}", "ntfys://ntfy.sh"]\n'
    )
    shown = run_v7("config", "show", "--config", "config.toml", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert TOKEN not in shown.stdout + shown.stderr
    assert 'urls = ["tgram://***/***", "json://127.0.0.1:8099/***", "ntfys://ntfy.sh"]' in shown.stdout
    hashed = run_v7("config", "show", "--json", "--config", "config.toml", cwd=tmp_path)
    assert TOKEN not in hashed.stdout and "json://127.0.0.1:8099/***" in hashed.stdout
