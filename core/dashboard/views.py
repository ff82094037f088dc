"""What each page shows, as plain data for its template and charts, from the reader's own queries.

Nothing here reads the store but through `SignalReader` (summary, page, latest_per_symbol,
signal, runs, active_runs, backtests); the aggregates come from `summary()` and the latest signal
per symbol from `latest_per_symbol()`, each kept as `store.py` says.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .store import WINDOWS

if TYPE_CHECKING:  # pragma: no cover
    from ..reading import RunRecord, StoredSignal
    from .app import Dashboard

MARKER = {"BUY": ("belowBar", "arrowUp", "#16a34a"), "SELL": ("aboveBar", "arrowDown", "#dc2626")}


class Settings(BaseModel):
    """What the command hands the app: where the store is and what the config says about it."""

    model_config = ConfigDict(extra="forbid")

    location: str = Field(description="the store, for the page header")
    sink: str
    config_path: str | None = None
    hold_target: tuple[float, float] = (0.4, 0.7)
    stale_after_s: float = Field(default=300.0, gt=0, description="a run without a stop that stored nothing for this long is shown as killed")
    daily_token_budget: int | None = None
    daily_cost_budget: float | None = None
    poll_s: float = Field(default=1.0, gt=0, description="how often the event stream looks for new signals")
    summary_max_age_s: float = Field(default=2.0, ge=0, description="while signals arrive, figures this old are shown while new ones are computed")
    default_window: str = "24h"


def run_statuses(runs: list["RunRecord"], active: set[str], now: datetime, stale_after_s: float) -> list[dict[str, Any]]:
    """Newest first; stopped when a stop was recorded, running while it stores signals (or just started),
    else killed: no stop and silent for `stale_after_s` means its process is gone."""
    out = []
    for run in sorted(runs, key=lambda r: r.started_at, reverse=True):
        if run.stopped_at is not None:
            status = "stopped"
        elif run.run_id in active or now - run.started_at < timedelta(seconds=stale_after_s):
            status = "running"
        else:
            status = "killed"
        out.append({"run_id": run.run_id, "started_at": run.started_at, "stopped_at": run.stopped_at,
                    "config_path": run.config_path, "v7_version": run.v7_version, "status": status})
    return out


def budget_left(settings: Settings, today: dict[str, Any]) -> dict[str, Any]:
    """Today's (UTC) stored LLM usage against the synthesizer's daily budgets, when it has any."""
    tokens = today["llm"]["prompt_tokens"] + today["llm"]["completion_tokens"]
    cost = today["llm"]["cost"]
    return {
        "tokens_today": tokens, "cost_today": cost,
        "token_budget": settings.daily_token_budget, "cost_budget": settings.daily_cost_budget,
        "tokens_left": None if settings.daily_token_budget is None else max(settings.daily_token_budget - tokens, 0),
        "cost_left": None if settings.daily_cost_budget is None else max(settings.daily_cost_budget - cost, 0.0),
    }


def overview(dash: "Dashboard", window: str) -> dict[str, Any]:
    if window not in WINDOWS:
        window = dash.settings.default_window
    now = datetime.now(timezone.utc)
    # The window's figures on a worker thread (its own reader), today's and the rest meanwhile on this one.
    figures = dash.workers.submit(dash.summaries.get, window, now)
    today = dash.summaries.get("today", now)
    since = now - timedelta(seconds=dash.settings.stale_after_s)

    def read(reader: Any) -> tuple[Any, ...]:
        return reader.page(limit=20), reader.runs(), reader.active_runs(since), reader.waiting()

    latest = dash.latest.get()
    recent, runs, active, waiting = dash.store.read(read)
    summary = figures.result()
    return {
        "window": window, "windows": list(WINDOWS), "summary": summary, "latest": latest, "recent": recent,
        "runs": run_statuses(runs, active, now, dash.settings.stale_after_s)[:10], "budget": budget_left(dash.settings, today),
        "waiting": waiting, "newest_id": recent[0].id if recent else 0,
    }


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def headline(theory: str, metrics: list[str]) -> str | None:
    """The metric a theory's chart shows first: one named like the theory (`hurst`, `entropy`), else its bias.

    Stored metrics lose the theory's own order (the first is its headline), so the name decides."""
    words = set(theory.lower().split("_"))
    for name in metrics:
        if name.lower() in words or any(word and name.lower().startswith(word) for word in words):
            return name
    return "bias" if "bias" in metrics else (metrics[0] if metrics else None)


def symbol_series(dash: "Dashboard", symbol: str, limit: int) -> dict[str, Any]:
    """The price (candles from the feed when it can replay them offline, else the stored prices), BUY/SELL
    markers and every theory's metrics over time, oldest first, for the last `limit` signals of `symbol`."""
    from ..reading import SignalQuery

    by_time = {epoch(s.bar_time): s for s in reversed(dash.store.read(lambda reader: reader.page(SignalQuery(symbol=symbol), limit=limit)))}
    signals = [by_time[t] for t in sorted(by_time)]  # charts need one point per bar, in time order (the last stored wins)
    prices = [{"time": epoch(s.bar_time), "value": s.price} for s in signals]
    markers = []
    for s in signals:
        if s.direction in MARKER:
            position, shape, color = MARKER[s.direction]
            markers.append({"time": epoch(s.bar_time), "position": position, "shape": shape, "color": color,
                            "text": f"{s.direction} {s.confidence:.2f}", "id": s.id})
    theories: dict[str, dict[str, list[dict[str, float]]]] = {}
    for s in signals:
        for result in s.theory_results:
            if result.status != "ok":
                continue
            series = theories.setdefault(result.theory, {})
            values = dict(result.metrics)
            if result.bias is not None:
                values["bias"] = result.bias
            for name, value in values.items():
                series.setdefault(name, []).append({"time": epoch(s.bar_time), "value": value})
    candles = None
    if signals and dash.candles is not None:
        candles = dash.candles(symbol, signals[0].granularity, signals[0].bar_time, signals[-1].bar_time)
    return {
        "symbol": symbol, "signals": len(signals), "candles": candles, "prices": prices, "markers": markers,
        "theories": [{"theory": name, "metrics": sorted(series), "headline": headline(name, sorted(series)), "series": series}
                     for name, series in sorted(theories.items())],
        "price_source": "feed history (OHLC)" if candles else "stored signal prices (close)",
    }


def symbol_page(dash: "Dashboard", symbol: str, signal_id: int | None, before_id: int | None) -> dict[str, Any]:
    from ..reading import SignalQuery

    def read(reader: Any) -> tuple[Any, Any]:
        rows = reader.page(SignalQuery(symbol=symbol), before_id=before_id, limit=50)
        chosen_id = signal_id if signal_id is not None else (rows[0].id if rows else None)
        chosen = reader.signal(chosen_id, with_prompt=True) if chosen_id is not None else None
        return rows, chosen

    rows, chosen = dash.store.read(read)
    symbols = [s.symbol for s in dash.latest.get()]
    if chosen is not None and chosen.symbol != symbol:
        chosen = None
    newest = rows[0].id if rows and before_id is None else None
    if newest is None:  # a page of older signals: the live feed still starts at the symbol's newest
        newest_rows = dash.store.read(lambda reader: reader.page(SignalQuery(symbol=symbol), limit=1))
        newest = newest_rows[0].id if newest_rows else 0
    return {"symbol": symbol, "rows": rows, "chosen": chosen, "symbols": symbols, "newest_id": newest,
            "older": rows[-1].id if len(rows) == 50 else None}


def signal_row(signal: "StoredSignal") -> dict[str, Any]:
    """The fields the live feed sends for a new signal (its HTML row is rendered from the same)."""
    return {"id": signal.id, "symbol": signal.symbol, "direction": signal.direction, "confidence": signal.confidence,
            "position": signal.position, "sizing": signal.sizing,
            "price": signal.price, "time": epoch(signal.bar_time), "bar_time": signal.bar_time, "reasoning": signal.reasoning,
            "synthesizer": signal.synthesizer, "fallback_reason": signal.fallback_reason}
