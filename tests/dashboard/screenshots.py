"""Screenshots of every dashboard page for docs/images/ (run by hand; not a test).

Makes the store a new user has after the offline run, a little longer (`v7 run --config
config.toml --iterations 40`, the replay one bar in 12, so the 40 signals of each symbol span
20 days and hold BUY and SELL) plus two stored backtests (`v7 backtest --bars 600 --step 6
--folds 3` with two horizons), serves it with `v7 dashboard` and saves one PNG per page, each
the whole page; the page of the symbol with the newest SELL, that signal chosen, down to its
prompt and answer.

    python tests/dashboard/screenshots.py            # writes docs/images/dashboard-*.png
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO / "tests")]

from dash_setup import Server  # noqa: E402

PAGES = {"overview": "?window=all", "symbol": "symbol/BTC-USD", "backtests": "backtests", "plugins": "plugins"}


def v7(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "v7.core.cli", *args], cwd=cwd, check=True, capture_output=True)


def main() -> None:
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="v7-dashboard-shots-"))
    text = (REPO / "config.toml").read_text()
    (folder / "config.toml").write_text(text.replace("[feeds.replay]\n", "[feeds.replay]\nstep = 12\n", 1))
    v7("run", "--config", "config.toml", "--iterations", "40", cwd=folder)
    for horizon in ("12", "24"):
        v7("backtest", "--config", "config.toml", "--symbols", "BTC-USD", "--bars", "600", "--step", "6", "--folds", "3",
           "--horizon", horizon, "--workers", "1", cwd=folder)
    sell = sqlite3.connect(folder / "v7.db").execute(
        "SELECT symbol, id FROM signals WHERE direction = 'SELL' ORDER BY id DESC LIMIT 1").fetchone()
    pages = {**PAGES, "symbol": f"symbol/{sell[0]}?signal={sell[1]}" if sell else PAGES["symbol"]}
    server = Server(folder / "config.toml")
    out = REPO / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for name, path in pages.items():
                page.goto(server.url + path)
                page.wait_for_load_state("networkidle")
                if name == "symbol":
                    page.wait_for_selector('#price-chart[data-ready="1"]')
                if name == "backtests":
                    page.wait_for_selector('section.backtest[data-ready="1"]')
                page.wait_for_timeout(500)  # let the charts finish their first frame
                clip = None
                if name == "symbol":  # down to the chosen signal's prompt and answer, not the whole table of signals beside it
                    bottom = page.evaluate(  # the card stretches to the table beside it: its last content's end
                        "Math.max(...[...document.querySelectorAll('#detail *')].map(e => e.getBoundingClientRect().bottom)) + window.scrollY")
                    clip = {"x": 0, "y": 0, "width": 1400, "height": int(bottom) + 16}
                page.screenshot(path=str(out / f"dashboard-{name}.png"), full_page=True, clip=clip)
                print(out / f"dashboard-{name}.png")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
