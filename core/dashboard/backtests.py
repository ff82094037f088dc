"""The backtests page: stored results (`SignalReader.backtests()` / `backtest(key)`), two side by side.

A stored result keeps each symbol's equity curve against buy-and-hold at up to 2,000 bars
(`EquityCurve`), drawn as it is; a result stored before V7 kept them has only summaries, and its
chart chains the walk-forward folds' total returns instead (equity at each fold's end, both
starting at 1). A result of `v7 backtest --portfolio` adds its portfolio block: the three books'
figures, and the sized portfolio against the basket, the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .views import epoch

if TYPE_CHECKING:  # pragma: no cover
    from ..reading import StoredBacktest
    from .app import Dashboard


def chained(periods: list[Any], total_return: Any) -> list[dict[str, float]]:
    """Equity 1 at the first period's start, then compounded by `total_return(period)` at each period's end."""
    out = [{"time": epoch(periods[0].start), "value": 1.0}]
    for period in periods:
        out.append({"time": epoch(period.end), "value": out[-1]["value"] * (1 + total_return(period))})
    return out


def stored_curve(curve: Any, strategy: str, hold: str) -> dict[str, list[dict[str, float]]]:
    """A stored `EquityCurve`'s two books as the chart's strategy and buy-and-hold series."""
    return {
        "strategy": [{"time": t, "value": v} for t, v in zip(curve.times, curve.books[strategy])],
        "buy_and_hold": [{"time": t, "value": v} for t, v in zip(curve.times, curve.books[hold])],
    }


def equity(item: Any) -> dict[str, list[dict[str, float]]]:
    """Strategy and buy-and-hold equity over the run; for an older result, at the start and at each fold's end."""
    if item.equity is not None:
        return stored_curve(item.equity, "strategy", "buy_and_hold")
    periods = item.folds or [item.scores]
    return {"strategy": chained(periods, lambda p: p.strategy.total_return), "buy_and_hold": chained(periods, lambda p: p.buy_and_hold.total_return)}


def portfolio_chart(portfolio: Any) -> dict[str, Any]:
    """The portfolio's chart data, drawn like a symbol's: the sized portfolio as the strategy, the basket as buy-and-hold."""
    if portfolio.equity is not None:
        curve = stored_curve(portfolio.equity, "portfolio", "basket")
    else:
        periods = portfolio.folds or [portfolio.overall]
        curve = {"strategy": chained(periods, lambda p: p.portfolio.total_return), "buy_and_hold": chained(periods, lambda p: p.basket.total_return)}
    return {"symbol": "portfolio", "calibration": [], "hits": [], "equity": curve}


def charts(item: Any) -> dict[str, Any]:
    """The chart data of one symbol: equity, calibration bins, hit rates against the base rate."""
    head = item.scores.horizons[0] if item.scores.horizons else None
    calibration = []
    if head is not None and head.calibration is not None:
        calibration = [{"confidence": b.mean_confidence, "hit_rate": b.hit_rate, "low": b.ci_low, "high": b.ci_high, "n": b.n}
                       for b in head.calibration.bins]
    hits = []
    if head is not None:
        for direction, e in head.directions.items():
            if e.hit_rate is not None and e.hit_rate.value is not None:
                hits.append({"direction": direction, "hit_rate": e.hit_rate.value, "low": e.hit_rate.low, "high": e.hit_rate.high,
                             "base_rate": e.base_rate})
    return {"symbol": item.symbol, "equity": equity(item), "calibration": calibration, "hits": hits}


def load(stored: "StoredBacktest | None") -> dict[str, Any] | None:
    """A stored backtest parsed as a `BacktestResult`, or the reason it cannot be shown."""
    from ..backtest.models import BacktestResult

    if stored is None:
        return None
    try:
        result = BacktestResult.model_validate_json(stored.result_json)
    except ValueError as exc:
        return {"stored": stored, "result": None, "error": f"backtest #{stored.id} cannot be read by this V7: {str(exc).splitlines()[0]}"}
    shown = [charts(item) for item in result.symbols] + ([portfolio_chart(result.portfolio)] if result.portfolio is not None else [])
    return {"stored": stored, "result": result, "error": None, "charts": shown}


def backtests_page(dash: "Dashboard", a: str | None, b: str | None) -> dict[str, Any]:
    from ..components import NotSupported

    def read(reader: Any) -> tuple[list[Any], list[Any]]:
        try:
            listing = reader.backtests(limit=50)
        except NotSupported:
            listing = []
        keys = [k for k in (a, b) if k]
        if not keys and listing:
            keys = [str(s.id) for s in listing[:2]]
        chosen = []
        for key in keys:
            try:
                chosen.append((key, reader.backtest(key)))
            except NotSupported:
                chosen.append((key, None))
        return listing, chosen

    listing, chosen = dash.store.read(read)
    shown = []
    for key, stored in chosen:
        loaded = load(stored)
        shown.append(loaded if loaded is not None else {"stored": None, "result": None, "error": f"no stored backtest {key!r}"})
    return {"listing": listing, "shown": shown, "a": a, "b": b}
