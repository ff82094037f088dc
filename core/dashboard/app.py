"""The FastAPI application: one `Dashboard` (the store, the summary cache, the settings) behind every page."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from .security import Guard
from .store import LatestPerSymbol, Store, SummaryCache
from .views import Settings

HERE = Path(__file__).resolve().parent
Candles = Callable[[str, str, datetime, datetime], "list[dict[str, float]] | None"]


@dataclass
class Dashboard:
    """What the routes share. `candles(symbol, granularity, first, last)` gives OHLC bars or None;
    `plugin_rows()` what `v7 plugins --json` lists."""

    store: Store
    settings: Settings
    candles: Candles | None = None
    plugin_rows: Callable[[], list[dict[str, Any]]] = lambda: []
    templates: Any = None
    summaries: SummaryCache = field(init=False)
    latest: LatestPerSymbol = field(init=False)
    workers: ThreadPoolExecutor = field(init=False)
    """Where a request runs a query beside its own (each worker thread reads with its own reader)."""

    def __post_init__(self) -> None:
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="v7-dashboard")
        self.summaries = SummaryCache(self.store, self.settings.hold_target, self.settings.summary_max_age_s, self.workers)
        self.latest = LatestPerSymbol(self.store)

    def close(self) -> None:
        self.workers.shutdown(wait=True)
        self.store.close()


def templates() -> Any:
    """Jinja with autoescape on (Starlette's default for .html) and the terminal's number formats as filters."""
    from fastapi.templating import Jinja2Templates

    from ..commands.backtest_output import interval, pct, points, share
    from ..sizing.rule import position_text

    env = Jinja2Templates(directory=str(HERE / "templates"))
    env.env.filters.update(pct=pct, share=share, interval=interval, points=points, num=_num, utc=_utc, position=position_text)
    env.env.autoescape = True  # every template, whatever its name: feeds and LLM answers are never markup
    return env


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _utc(value: Any) -> str:
    from ..timefmt import format_utc

    return "-" if value is None else (value if isinstance(value, str) else format_utc(value))


def create_app(dash: Dashboard, token: str | None = None, allowed_hosts: list[str] | None = None) -> Any:
    """The app; `token` is required of every request when set, `allowed_hosts` (Host header) guards
    a loopback server against DNS rebinding."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from .routes import router

    dash.templates = dash.templates or templates()
    for name in ("overview.html", "symbol.html", "backtests.html", "plugins.html", "error.html"):
        dash.templates.get_template(name)  # compiled now, not in the first request
    app = FastAPI(title="V7 dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dash = dash
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(Guard, token=token)
    return app
