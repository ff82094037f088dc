"""End to end in a real headless Chromium (Debian's `chromium`, driven by Playwright): the real
`v7 dashboard` command serves a store the sqlite sink wrote; signals written during a test
appear without a reload. Every wait is on a selector or an event, never on a fixed time."""

from __future__ import annotations

import shutil

import pytest

from dash_setup import XSS, Server, sample, store_backtest, write, write_config

WAIT_MS = 60_000
GREEN_PIXELS = """() => {
  let found = 0;
  for (const canvas of document.querySelectorAll('#price-chart canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - 22) < 16 && Math.abs(data[i + 1] - 163) < 16 && Math.abs(data[i + 2] - 74) < 16 && data[i + 3] > 200) found++;
    }
  }
  return found;
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, backtest_json):
    """A store (the latest BTC-USD signal reasons in a script tag), a stored backtest, and `v7 dashboard` over them."""
    folder = tmp_path_factory.mktemp("dashboard")
    db = folder / "v7.db"
    write(db, sample(40))
    write(db, sample(1, start=40, run_id="run1", reasoning=XSS), run_id="run1")
    store_backtest(db, backtest_json)
    server = Server(write_config(folder, db))
    yield server.url, db
    server.stop()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is not installed (.ci/run installs it: apt-get install -y chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page that records console errors, uncaught exceptions and dialogs (an executed alert would open one)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.problems = []
    page.on("console", lambda message: page.problems.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (page.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()


def test_overview_renders_without_console_errors_and_shows_the_script_as_text(site, page):
    url, _ = site
    page.goto(url + "?window=all")
    page.wait_for_selector("#latest tr.signal")
    assert page.locator("#signal-count").text_content() == "41"
    cells = page.locator("#latest td.reasoning").all_text_contents()
    assert XSS in cells  # the text itself, shown; not a script element
    assert page.locator("#latest td.reasoning script").count() == 0
    assert page.evaluate("() => window.__xss === undefined && document.querySelectorAll('main script').length") == 0
    assert page.locator("#run-status .status").text_content() == "stopped"
    page.wait_for_function("() => window.htmx !== undefined")
    assert page.problems == []


def test_the_price_chart_draws_candles_with_buy_and_sell_markers(site, page):
    url, _ = site
    page.goto(url + "symbol/BTC-USD")
    page.wait_for_selector('#price-chart[data-ready="1"]')
    assert int(page.get_attribute("#price-chart", "data-markers")) > 0
    assert "feed history (OHLC)" in page.locator("#price-source").text_content()
    assert page.locator("#price-chart canvas").count() > 0
    page.wait_for_function(GREEN_PIXELS)  # BUY arrows are drawn in their green, which nothing else uses
    assert page.locator("#theory-charts .theory").count() == 2  # the two theories the test signals carry
    assert page.locator("#theory-charts select").first.input_value() == "hurst"
    assert page.problems == []


def test_a_signal_stored_during_the_test_appears_without_a_reload(site, page):
    url, db = site
    page.goto(url)
    page.wait_for_selector("#recent tr.signal")
    page.evaluate("() => { window.__sameDocument = true; }")
    newest = int(page.get_attribute("#recent tr.signal", "data-id"))
    write(db, sample(1, start=41, run_id="run2", reasoning="arrived <em>live</em>"), run_id="run2")
    row = page.wait_for_selector(f"#recent tr.signal[data-id='{newest + 1}']")
    assert row.query_selector("td.reasoning").text_content() == "arrived <em>live</em>"
    assert page.evaluate("() => window.__sameDocument") is True  # no reload happened
    assert page.problems == []


def test_the_symbol_chart_takes_new_signals_live(site, page):
    url, db = site
    page.goto(url + "symbol/ETH-USD")
    page.wait_for_selector('#price-chart[data-ready="1"]')
    before = int(page.get_attribute("#price-chart", "data-markers"))
    new = sample(1, start=47, run_id="run3")  # an ETH-USD BUY at a bar after the last one stored
    assert (new[0].symbol, new[0].direction) == ("ETH-USD", "BUY")
    write(db, new, run_id="run3")
    page.wait_for_selector(f"#symbol-signals tr.signal[data-time='{int(new[0].bar_time.timestamp())}']")
    page.wait_for_function("() => document.getElementById('price-chart').dataset.live === '1'")
    assert int(page.get_attribute("#price-chart", "data-markers")) == before + 1
    assert page.problems == []


def test_backtests_and_plugins_pages_render(site, page):
    url, _ = site
    page.goto(url + "backtests")
    page.wait_for_selector('section.backtest[data-ready="1"]')
    assert page.locator("section.backtest .equity canvas").count() > 0
    assert page.locator("section.backtest .calibration canvas").count() > 0
    assert page.locator("section.backtest .hit").count() >= 1
    page.goto(url + "plugins")
    page.wait_for_selector("#plugins tbody tr")
    assert "hurst_exponent" in page.locator("#plugins").text_content()
    assert page.screenshot(full_page=True)[:4] == b"\x89PNG"
    assert page.problems == []
