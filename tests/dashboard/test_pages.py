"""The dashboard's pages and JSON through FastAPI's TestClient, over a store written by the sqlite sink."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from dash_setup import XSS, app_over, sample, store_backtest, write

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def client(db):
    app, _ = app_over(db, daily_token_budget=50_000, stale_after_s=3600)
    with TestClient(app) as client:
        yield client


def test_overview_shows_the_mix_the_hold_target_latest_signals_fallbacks_latency_llm_theories_and_runs(client):
    page = client.get("/?window=all")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert re.search(r'id="signal-count">26<', html)
    # 26 signals: HOLD is 3 of every 6 directions → 13 of 26 = 50.0%, inside the default 40–70% target.
    assert re.search(r'id="hold-share">50\.0%<', html) and "target 40.0%–70.0%: <strong>within</strong>" in html
    latest = html[html.index('id="latest"'):html.index("Synthesizers and fallbacks")]
    assert 'data-symbol="BTC-USD"' in latest and 'data-symbol="ETH-USD"' in latest and latest.count("<tr class=\"signal") == 2
    assert "deepseek timed out &lt;i&gt;after 30 s&lt;/i&gt;" in html  # the fallback reason, escaped
    for stage in ("feed", "theories", "formatters", "synthesizer", "sink"):
        assert f"<td>{stage}</td>" in html
    # 9 signals carry 1,100 tokens each; the budget is 50,000 tokens a day.
    assert "9,900 <small>tokens</small>" in html and "40,100 of 50,000 tokens left" in html
    assert "<td>monte_carlo</td>" in html and "failed: &lt;img src=x onerror=alert(2)&gt;" in html
    runs = html[html.index('id="runs"'):]
    assert "<code>run0</code>" in runs and 'status stopped">stopped' in runs
    assert 'status running">running' in runs  # run1 has no stop but wrote just now


def test_a_run_without_a_stop_that_went_silent_is_killed(db):
    app, _ = app_over(db, stale_after_s=1)
    from v7.core.dashboard.views import run_statuses

    with TestClient(app) as client:
        data = client.get("/api/overview?window=all").json()
    statuses = {r["run_id"]: r["status"] for r in data["runs"]}
    assert statuses["run0"] == "stopped"
    from datetime import datetime, timedelta, timezone

    from v7 import RunRecord

    now = datetime.now(timezone.utc)
    records = [RunRecord(run_id="old", config_hash="c", v7_version="t", started_at=now - timedelta(hours=2)),
               RunRecord(run_id="live", config_hash="c", v7_version="t", started_at=now - timedelta(hours=2)),
               RunRecord(run_id="new", config_hash="c", v7_version="t", started_at=now - timedelta(seconds=5))]
    assert [(r["run_id"], r["status"]) for r in run_statuses(records, {"live"}, now, 600)] == [
        ("new", "running"), ("old", "killed"), ("live", "running")]


def test_text_from_feeds_and_llm_answers_is_escaped_everywhere(db, client):
    write(db, sample(1, start=50, run_id="run3", reasoning=XSS), run_id="run3")  # the latest BTC-USD signal too
    for url in ("/?window=all", "/overview/figures?window=all", "/symbol/BTC-USD?signal=1"):
        html = client.get(url).text
        assert XSS not in html, url
        assert ESCAPED in html, url
    detail = client.get("/symbol/BTC-USD/signal/1").text
    assert ESCAPED in detail and "prompt 0 &lt;b&gt;bold?&lt;/b&gt;" in detail and "<b>bold?</b>" not in detail
    # JSON carries the text as data; the page's scripts put it in with textContent.
    assert client.get("/api/signals?symbol=BTC-USD&before=2").json()[0]["reasoning"] == XSS


def test_the_overview_window_filters_by_creation_time(db):
    app, dash = app_over(db)
    with TestClient(app) as client:
        assert re.search(r'id="signal-count">26<', client.get("/overview/figures?window=1h").text)
        assert client.get("/api/overview?window=1h").json()["summary"]["filter"]["created_since"] is not None
        assert client.get("/api/overview?window=all").json()["summary"]["filter"]["created_since"] is None
        assert client.get("/api/overview?window=nonsense").json()["window"] == "24h"


def test_symbol_page_lists_its_signals_and_shows_the_chosen_one_with_theories_prompt_and_answer(client):
    html = client.get("/symbol/ETH-USD?signal=6").text
    # Signal #6 is the sixth written (index 5): its prompt, answer and fallback reason.
    assert "Signal #6" in html and 'id="prompt">prompt 5 &lt;b&gt;bold?&lt;/b&gt;</pre>' in html
    assert 'id="answer">reasoning 5<' in html and "(fallback: deepseek timed out &lt;i&gt;" in html
    rows = re.findall(r'<tr class="signal [^"]*" id="signal-\d+" data-id="\d+" data-symbol="([A-Z-]+)"', html)
    assert set(rows) == {"ETH-USD"} and len(rows) == 13
    assert "<td>hurst_exponent</td>" in html and "hurst=" in html
    assert client.get("/symbol/ETH-USD?signal=1").text.count("Choose a signal") == 1  # a BTC signal is not shown under ETH
    html = client.get("/symbol/ETH-USD?signal=2").text
    assert 'id="prompt">prompt 1 &lt;b&gt;' in html and 'id="answer">reasoning 1<' in html


def test_symbol_series_has_markers_for_buy_and_sell_only_and_each_theory_over_time(client):
    data = client.get("/api/symbol/BTC-USD/series?limit=100").json()
    assert data["signals"] == 13 and data["candles"] is None and data["price_source"].startswith("stored signal prices")
    times = [p["time"] for p in data["prices"]]
    assert times == sorted(times) and len(times) == 13
    assert {m["text"].split()[0] for m in data["markers"]} == {"BUY", "SELL"}
    assert all(m["position"] == ("belowBar" if m["text"].startswith("BUY") else "aboveBar") for m in data["markers"])
    theories = {t["theory"]: t for t in data["theories"]}
    assert theories["hurst_exponent"]["headline"] == "hurst" and len(theories["hurst_exponent"]["series"]["hurst"]) == 13
    assert theories["hurst_exponent"]["series"]["bias"][0]["value"] == 0.2


def test_candles_come_from_the_configured_feed_when_it_replays_offline(tmp_path, db):
    from dash_setup import write_config
    from v7.core.commands.dashboard import _app, _reader_factory
    from v7.core.commands.common import Context, load
    from v7.core.commands.stats import open_sink_reader

    config_path = str(write_config(tmp_path, db))
    ctx = Context()
    opened = open_sink_reader(ctx, config_path, None, None)
    registry, config = load(ctx, config_path)
    app, dash = _app(opened, registry, config, config_path, "24h", None, "127.0.0.1", _reader_factory(registry, config, opened, None))
    with TestClient(app, base_url="http://127.0.0.1:8050") as client:
        data = client.get("/api/symbol/BTC-USD/series").json()
        assert data["price_source"] == "feed history (OHLC)"
        assert [c["time"] for c in data["candles"]][0] == data["prices"][0]["time"]
        assert all(c["low"] <= min(c["open"], c["close"]) for c in data["candles"])
        assert {r["name"] for r in client.get("/api/plugins").json()} >= {"replay", "sqlite", "hurst_exponent"}
        plugins = client.get("/plugins").text
        assert "<td>hurst_exponent</td>" in plugins and "#1" in plugins
        # A loopback server answers only to loopback host names (no DNS rebinding).
        assert TestClient(app, base_url="http://evil.example").get("/").status_code == 400
    dash.store.close()


def test_plugins_page_shows_load_errors(db):
    rows = [{"kind": "theory", "name": "broken", "distribution": "acme", "version": "1.0", "enabled": True, "position": None,
             "error": "ImportError: no module named <acme>"}]
    app, _ = app_over(db, plugin_rows=lambda: rows)
    with TestClient(app) as client:
        html = client.get("/plugins").text
    assert '<tr class="failed">' in html and "ImportError: no module named &lt;acme&gt;" in html


def test_backtests_page_shows_two_runs_side_by_side(db, backtest_json):
    first, second = store_backtest(db, backtest_json), store_backtest(db, backtest_json)
    app, _ = app_over(db)
    with TestClient(app) as client:
        html = client.get("/backtests").text
        assert f"Backtest #{second}" in html and f"Backtest #{first}" in html and html.count('class="card backtest"') == 2
        result = json.loads(backtest_json)
        head = result["symbols"][0]["scores"]["horizons"][0]
        assert head["verdict"]["text"].split(" [")[0].replace("<", "&lt;") in html
        assert "hit rate [95% CI]" in html and "base rate" in html and html.count("<td>3</td>") >= 1  # 3 folds
        charts = [json.loads(m) for m in re.findall(r'<script type="application/json" class="backtest-data">(.*?)</script>', html)]
        curve = result["symbols"][0]["equity"]
        strategy = charts[0][0]["equity"]["strategy"]
        assert len(charts) == 2 and len(strategy) == len(curve["times"]) > 100  # the stored curve, bar by bar
        assert strategy[-1]["value"] == pytest.approx(1 + result["symbols"][0]["scores"]["strategy"]["total_return"])
        assert charts[0][0]["equity"]["buy_and_hold"][-1]["value"] == pytest.approx(1 + result["symbols"][0]["scores"]["buy_and_hold"]["total_return"])
        assert charts[0][0]["calibration"] and charts[0][0]["hits"]
        one = client.get(f"/backtests?a={first}&b=999").text
        assert f"Backtest #{first}" in one and "no stored backtest &#39;999&#39;" in one


def test_only_get_is_allowed_and_responses_forbid_inline_scripts(client):
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)("/")
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert client.get("/static/lightweight-charts/lightweight-charts.standalone.production.js").status_code == 200


def test_head_answers_as_get_without_the_body_as_allow_says(client):
    for path in ("/", "/?window=all", "/symbol/BTC-USD", "/api/overview", "/static/app.css", "/healthz", "/events"):
        head, get = client.head(path), (client.get(path) if path != "/events" else None)
        assert head.status_code == 200 and head.content == b"", path
        assert "script-src 'self'" in head.headers["content-security-policy"], path
        if get is not None:
            assert head.headers["content-type"] == get.headers["content-type"], path
    assert client.head("/events").headers["content-type"] == "text/event-stream"
    assert client.head("/symbol/BTC-USD").headers["content-length"] == client.get("/symbol/BTC-USD").headers["content-length"]
    assert client.head("/no/such/page").status_code == 404


def test_a_token_is_required_of_every_request_when_set(db):
    token = "s3cret-token-0123456789"
    app, _ = app_over(db, token=token)
    with TestClient(app) as client:
        assert client.get("/").status_code == 401 and client.get("/static/app.css").status_code == 401
        assert client.get("/events").status_code == 401
        assert client.get("/", headers={"X-V7-Token": "wrong-token-0123456789"}).status_code == 401
        assert client.get("/healthz", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        opened = client.get(f"/?token={token}")
        assert opened.status_code == 200 and "HttpOnly" in opened.headers["set-cookie"]
        assert client.get("/api/overview").status_code == 200  # the cookie carries it from now on


def test_an_unreadable_store_answers_503_with_the_reason(tmp_path):
    app, _ = app_over(tmp_path / "missing.db")
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 503 and "no database at" in page.text and "Traceback" not in page.text
        assert client.get("/api/overview").json()["error"].startswith("no database at")


def test_a_window_is_kept_only_while_nothing_in_it_can_have_changed(db):
    """The same newest signal and window start: the kept figures; a new signal or a later start: computed again."""
    from datetime import datetime, timedelta, timezone

    _, dash = app_over(db, summary_max_age_s=0)
    now = datetime.now(timezone.utc)
    first = dash.summaries.get("all", now)
    assert first["signals"] == 26 and dash.summaries.get("all", now) is first
    assert dash.summaries.get("1h", now)["signals"] == 26
    write(db, sample(2, start=40, run_id="run2"), run_id="run2")
    # A window viewed before is never served stale: its next view has the new signals.
    assert dash.summaries.get("all", now)["signals"] == 28 and dash.summaries.get("1h", now)["signals"] == 28
    # No run writes, yet a bounded window moves on with the clock: two hours later the hour holds nothing.
    later = dash.summaries.get("1h", now + timedelta(hours=2))
    assert later["signals"] == 0 and later["filter"]["created_since"] > first["created_at"]["last"]
    assert dash.summaries.get("all", now + timedelta(hours=2))["signals"] == 28
    dash.store.close()


def test_while_signals_arrive_figures_at_most_max_age_old_are_shown_while_a_worker_computes_new_ones(db):
    import threading

    from v7.core.dashboard.store import SummaryCache

    _, dash = app_over(db, summary_max_age_s=3600)
    first = dash.summaries.get("all")
    write(db, sample(2, start=40, run_id="run2"), run_id="run2")
    computed = threading.Event()
    original = dash.summaries._compute
    dash.summaries._compute = lambda *args: (original(*args), computed.set())[0]
    assert dash.summaries.get("all") is first  # young enough: shown at once, and computed again meanwhile
    assert computed.wait(60)
    assert dash.summaries.get("all")["signals"] == 28
    # Older than max_age_s (here 0), figures are never shown: the request computes them.
    exact = SummaryCache(dash.store, (0.4, 0.7), max_age_s=0, workers=dash.workers)
    assert exact.get("all")["signals"] == 28
    write(db, sample(1, start=50, run_id="run3"), run_id="run3")
    assert exact.get("all")["signals"] == 29
    dash.close()


def test_the_latest_signal_per_symbol_is_kept_up_to_date_from_the_signals_stored_since(db, monkeypatch):
    from v7.core.dashboard.store import LatestPerSymbol
    from v7.plugins.sinks.sqlite import SqliteConfig, SqliteSink

    _, dash = app_over(db)
    reader = SqliteSink(SqliteConfig(path=db)).reader()
    ids = lambda signals: [(s.symbol, s.id) for s in signals]  # noqa: E731
    assert ids(dash.latest.get()) == ids(reader.latest_per_symbol()) == [("BTC-USD", 25), ("ETH-USD", 26)]
    more = [s.model_copy(update={"symbol": "SOL-USD"}) if i == 1 else s for i, s in enumerate(sample(3, start=40, run_id="run2"))]
    write(db, more, run_id="run2")  # BTC 27, a new symbol SOL 28, BTC 29
    assert ids(dash.latest.get()) == ids(reader.latest_per_symbol()) == [("BTC-USD", 29), ("ETH-USD", 26), ("SOL-USD", 28)]
    monkeypatch.setattr(LatestPerSymbol, "BATCH", 2)  # more arrived than one batch: read whole again
    write(db, sample(3, start=50, run_id="run3"), run_id="run3")
    assert ids(dash.latest.get()) == ids(reader.latest_per_symbol()) == [("BTC-USD", 32), ("ETH-USD", 31), ("SOL-USD", 28)]
    reader.close()
    dash.close()


def test_each_thread_reads_with_its_own_reader_and_a_long_query_holds_no_one_back(db):
    """A summary that takes long (here: until released) does not stop another request's read."""
    import threading

    from v7.core.dashboard.store import Store, SummaryCache
    from v7.plugins.sinks.sqlite import SqliteConfig, SqliteReader, SqliteSink

    release, started = threading.Event(), threading.Event()

    class Slow(SqliteReader):
        def summary(self, query=None, hold_target=(0.4, 0.7)):
            started.set()
            assert release.wait(60)
            return super().summary(query, hold_target)

    store = Store(lambda: Slow(db))
    summaries = SummaryCache(store, (0.4, 0.7))
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(summaries.get("all")["signals"]))
    worker.start()
    assert started.wait(60)
    # While that summary runs, this thread reads on its own reader (a lock around the summary would hang here).
    assert [s.id for s in store.read(lambda reader: reader.page(limit=2))] == [26, 25]
    assert not done and store.open_readers == 2
    release.set()
    worker.join(60)
    assert done == [26]
    store.close()
    assert store.open_readers == 0
    shared = Store(SqliteSink(SqliteConfig(path=db)).reader())  # a reader given as such is shared, one read at a time
    assert shared.read(lambda reader: reader.page(limit=1))[0].id == 26 and shared.open_readers == 1
    shared.close()


def test_the_position_is_shown_in_the_signal_tables_and_the_detail(client):
    html = client.get("/").text
    assert "position</th>" in html
    latest = html[html.index('id="latest"'):]
    latest = latest[: latest.index("</table>")]
    for number, signal in zip((25, 26), sample(2, start=24)):  # the newest of each symbol: the latest-per-symbol table
        cell = re.search(rf'id="signal-{number}".*?<td class="num position"[^>]*>([^<]*)</td>', latest, re.S)
        assert cell and cell.group(1) == (f"{signal.position:+.1%}" if signal.position else "0%")
    detail = client.get("/symbol/BTC-USD?signal=3").text  # index 2: a SELL
    assert 'id="position">-12.5%</strong>' in detail and 'id="sizing">rule 2 &lt;b&gt;sized&lt;/b&gt;</span>' in detail
    assert 'data-position="-0.125"' in detail and 'title="rule 2 &lt;b&gt;sized&lt;/b&gt;"' in detail
    unsized = client.get("/symbol/ETH-USD?signal=8").text
    assert 'id="position">0%</strong>' in unsized and "not sized (stored before position sizing)" in unsized


def test_a_backtest_stored_without_its_equity_curve_charts_the_folds(db, backtest_json):
    """A result stored before V7 kept curves: equity at the start and at each of its three folds' ends."""
    older = json.loads(backtest_json)
    for item in older["symbols"]:
        del item["equity"]
    stored = store_backtest(db, json.dumps(older))
    app, _ = app_over(db)
    with TestClient(app) as client:
        html = client.get(f"/backtests?a={stored}").text
    charts = [json.loads(m) for m in re.findall(r'<script type="application/json" class="backtest-data">(.*?)</script>', html)]
    assert len(charts[0][0]["equity"]["strategy"]) == 4

