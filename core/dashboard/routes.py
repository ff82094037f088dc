"""The pages (HTML, htmx fragments) and the JSON their charts draw, all GET.

A store that cannot be read answers 503 with the reason (the page says which store), never a traceback.
"""

from __future__ import annotations

from typing import Any, Callable

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from . import backtests as backtest_views
from . import views

router = APIRouter()
log = structlog.get_logger("v7.dashboard")


def _dash(request: Request) -> Any:
    return request.app.state.dash


def _failed(request: Request, exc: Exception, as_json: bool = False) -> Any:
    dash = _dash(request)
    reason = str(exc) if isinstance(exc, (RuntimeError, OSError, ValueError)) and str(exc) else f"{type(exc).__name__}: {exc}"
    log.warning("dashboard cannot read the store", sink=dash.settings.sink, location=dash.settings.location, error=reason)
    if as_json:
        return JSONResponse({"error": reason, "store": dash.settings.location}, status_code=503)
    return dash.templates.TemplateResponse(request, "error.html", {"dash": dash, "reason": reason}, status_code=503)


def _page(request: Request, template: str, build: Callable[[], dict[str, Any]], page: str) -> Any:
    dash = _dash(request)
    try:
        data = build()
    except Exception as exc:  # any reader failure: the page says so
        return _failed(request, exc)
    return dash.templates.TemplateResponse(request, template, {"dash": dash, "page": page, **data})


def _json(request: Request, build: Callable[[], Any]) -> Any:
    try:
        return JSONResponse(_plain(build()))
    except Exception as exc:
        return _failed(request, exc, as_json=True)


def _plain(value: Any) -> Any:
    """Pydantic models and datetimes as JSON data."""
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, window: str = Query("")) -> Any:
    dash = _dash(request)
    return _page(request, "overview.html", lambda: views.overview(dash, window or dash.settings.default_window), "overview")


@router.get("/overview/figures", response_class=HTMLResponse)
def overview_figures(request: Request, window: str = Query("")) -> Any:
    """The overview without its frame: what htmx swaps in when the window changes or signals arrive."""
    dash = _dash(request)
    return _page(request, "partials/figures.html", lambda: views.overview(dash, window or dash.settings.default_window), "overview")


@router.get("/api/overview")
def overview_json(request: Request, window: str = Query("")) -> Any:
    dash = _dash(request)
    return _json(request, lambda: views.overview(dash, window or dash.settings.default_window))


@router.get("/api/signals")
def signals_json(
    request: Request, symbol: str | None = None, after: int | None = None, before: int | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> Any:
    from ..reading import SignalQuery

    dash = _dash(request)
    query = SignalQuery(symbol=symbol) if symbol else None
    return _json(request, lambda: dash.store.read(lambda reader: reader.page(query, after_id=after, before_id=before, limit=limit)))


@router.get("/symbol/{symbol}", response_class=HTMLResponse)
def symbol(request: Request, symbol: str, signal: int | None = None, before: int | None = None, limit: int = Query(500, ge=10, le=5000)) -> Any:
    dash = _dash(request)
    return _page(request, "symbol.html", lambda: {**views.symbol_page(dash, symbol, signal, before), "limit": limit}, "symbol")


@router.get("/symbol/{symbol}/signal/{signal_id}", response_class=HTMLResponse)
def signal_detail(request: Request, symbol: str, signal_id: int) -> Any:
    dash = _dash(request)

    def build() -> dict[str, Any]:
        chosen = dash.store.read(lambda reader: reader.signal(signal_id, with_prompt=True))
        return {"chosen": chosen if chosen is not None and chosen.symbol == symbol else None, "symbol": symbol}

    return _page(request, "partials/signal_detail.html", build, "symbol")


@router.get("/api/symbol/{symbol}/series")
def symbol_series(request: Request, symbol: str, limit: int = Query(500, ge=10, le=5000)) -> Any:
    dash = _dash(request)
    return _json(request, lambda: views.symbol_series(dash, symbol, limit))


@router.get("/backtests", response_class=HTMLResponse)
def backtests(request: Request, a: str | None = None, b: str | None = None) -> Any:
    dash = _dash(request)
    return _page(request, "backtests.html", lambda: backtest_views.backtests_page(dash, a, b), "backtests")


@router.get("/plugins", response_class=HTMLResponse)
def plugins(request: Request) -> Any:
    dash = _dash(request)
    return _page(request, "plugins.html", lambda: {"rows": dash.plugin_rows()}, "plugins")


@router.get("/api/plugins")
def plugins_json(request: Request) -> Any:
    return _json(request, lambda: _dash(request).plugin_rows())


@router.get("/events")
async def events(request: Request, symbol: str | None = None, after: int | None = None) -> Any:
    from .sse import stream

    last_event = request.headers.get("last-event-id")
    if last_event is not None and last_event.isdigit():
        after = int(last_event)
    return StreamingResponse(
        stream(_dash(request), request, after, symbol), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/healthz")
def health(request: Request) -> Any:
    dash = _dash(request)
    return {"ok": True, "store": dash.settings.location, "sink": dash.settings.sink}
