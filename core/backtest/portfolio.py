"""The portfolio backtest: every symbol on one timeline, sized, through the portfolio step, costs and execution.

- The timeline is the bars every symbol has (their common timestamps); a signal at a bar some
  symbol lacks is left out (`dropped_signals`).
- At each bar where a symbol decides, its proposed position is `BarSignal.position` (core/sizing),
  with its own limit `BarSignal.limit`; HOLD with `hold_keeps_position` and a bar without a signal
  keep the last ones. The proposed positions of all symbols then go through the portfolio step
  (core/portfolio/allocate.py: never past a symbol's limit, never above the proposed gross) with the
  covariance of the `covariance_bars` returns up to that bar's close, never a later one.
- Each symbol's book position is filled by core/backtest/execution.py (`in_force`, `fill`: next
  open or close, `delay_bars`, fees + slippage on every change) as a fraction of the whole capital;
  the portfolio's return over an interval is the sum of the symbols' net returns.
- Against: the same signals unsized (±1/0 as `decisions` makes them, 1/n of the capital each) and
  the equal-weight buy-and-hold basket (1/n bought in each symbol at the first fill, never
  rebalanced: the mean of the symbols' buy-and-hold equity, entry cost paid).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import namedtuple
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from ..config import BacktestConfig
from ..models import CandleSeries
from ..portfolio import PortfolioConfig, allocate
from .equity import EquityCurve
from .execution import Execution, buy_and_hold, decisions, fill, in_force
from .models import BacktestError, BarSignal
from .portfolio_metrics import portfolio_performance
from .portfolio_models import PortfolioResult, PortfolioWindow
from .scoring import fold_bounds, periods_per_year

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .compute import BacktestRun

_Bar = namedtuple("_Bar", "index")  # what `fold_bounds` reads of a signal


@dataclasses.dataclass
class Book:
    """The symbols on their common timeline: aligned candles, signals re-indexed onto it, close-to-close returns."""

    symbols: list[str]
    timestamp: "np.ndarray"
    histories: list[CandleSeries]
    signals: list[list[BarSignal]]
    returns: "np.ndarray"  # (bars × symbols); row k = close[k] / close[k − 1] − 1, row 0 NaN
    last: int
    dropped: int = 0


@dataclasses.dataclass
class Curves:
    """A book's per-interval net returns, units traded and gross exposure, and the positions in force (symbols × bars)."""

    returns: "np.ndarray"
    traded: "np.ndarray"
    gross: "np.ndarray"
    held: "np.ndarray"
    weights: list["np.ndarray"] = dataclasses.field(default_factory=list)


def book_of(histories: dict[str, CandleSeries], signals: dict[str, list[BarSignal]], lasts: dict[str, int], symbols: Sequence[str]) -> Book:
    """Align `symbols` on the timestamps they all have, up to the earliest of their last bars."""
    import numpy as np

    if len(symbols) < 1:
        raise BacktestError("a portfolio backtest needs at least one symbol")
    end = min(int(histories[s].timestamp[lasts[s]]) for s in symbols)
    common = histories[symbols[0]].timestamp
    for s in symbols[1:]:
        common = np.intersect1d(common, histories[s].timestamp, assume_unique=True)
    common = common[common <= end]
    if common.size < 2:
        raise BacktestError(f"the symbols {', '.join(symbols)} share fewer than 2 bars: no common timeline for a portfolio")
    aligned, remapped, dropped = [], [], 0
    for s in symbols:
        h = histories[s]
        rows = np.searchsorted(h.timestamp, common)
        aligned.append(dataclasses.replace(h, **{f: getattr(h, f)[rows] for f in ("timestamp", "open", "high", "low", "close", "volume")}, gaps=0, dropped={}))
        at = np.searchsorted(common, [sig.timestamp for sig in signals[s]])
        kept = []
        for sig, k in zip(signals[s], at):
            if k < common.size and int(common[k]) == sig.timestamp:
                kept.append(dataclasses.replace(sig, index=int(k)))
            else:
                dropped += 1
        remapped.append(kept)
    closes = np.column_stack([h.close for h in aligned])
    returns = np.full(closes.shape, np.nan)
    returns[1:] = closes[1:] / closes[:-1] - 1.0
    return Book(list(symbols), common, aligned, remapped, returns, int(common.size - 1), dropped)


def sized_decisions(signals: Sequence[BarSignal], first: int, last: int, hold_keeps_position: bool, field: str = "position") -> "np.ndarray":
    """Each signal's `position` (or its `limit`, with `field`) at its bar (first..last); NaN = keep (no signal,
    no synthesizer answer, a HOLD that keeps)."""
    import numpy as np

    decided = np.full(max(last - first + 1, 0), np.nan)
    for s in signals:
        if not first <= s.index <= last or s.direction is None or (s.direction == "HOLD" and hold_keeps_position):
            continue
        decided[s.index - first] = getattr(s, field)
    return decided


def _fill_book(book: Book, decided: "np.ndarray", first: int, execution: Execution) -> Curves:
    """Fill each symbol's decided positions (symbols × bars, NaN = keep) and add up the book."""
    import numpy as np

    held = np.vstack([in_force(row, execution.lag) for row in decided])
    filled = [fill(h, first, row, execution) for h, row in zip(book.histories, held)]
    return Curves(
        returns=np.sum([f.returns for f in filled], axis=0), traded=np.sum([f.traded for f in filled], axis=0),
        gross=np.sum([np.abs(f.held) for f in filled], axis=0), held=held,
    )


def stepped(
    book: Book, proposed: "np.ndarray", first: int, config: PortfolioConfig, limits: "np.ndarray | None" = None,
) -> tuple["np.ndarray", list["np.ndarray"]]:
    """The book's decisions: at every bar where a symbol decides, the portfolio step over everyone's latest
    proposal and its own limit (`limits`, symbols × bars like `proposed`, NaN = keep; None: 1 each)."""
    import numpy as np

    out = np.full(proposed.shape, np.nan)
    current = np.zeros(proposed.shape[0])
    own = np.ones(proposed.shape[0])
    weights = []
    for j in np.flatnonzero(np.any(np.isfinite(proposed), axis=0)):
        new = proposed[:, j]
        current = np.where(np.isfinite(new), new, current)
        if limits is not None:
            own = np.where(np.isfinite(limits[:, j]), limits[:, j], own)
        k = first + int(j)  # the bar decided on: returns up to its close only
        allocation = allocate(current, book.returns[max(1, k - config.covariance_bars + 1):k + 1], config, own)
        out[:, j] = allocation.positions
        weights.append(np.where(current != 0, allocation.weights, np.nan))
    return out, weights


def curves(book: Book, first: int, last: int, settings: BacktestConfig, config: PortfolioConfig) -> dict[str, Curves]:
    """The sized portfolio, the unsized equal-weight signals and the buy-and-hold basket from bar `first` to `last`."""
    import numpy as np

    execution = Execution.of(settings)
    n = len(book.symbols)
    proposed = np.vstack([sized_decisions(s, first, last, settings.hold_keeps_position) for s in book.signals])
    limits = np.vstack([sized_decisions(s, first, last, settings.hold_keeps_position, "limit") for s in book.signals])
    decided, weights = stepped(book, proposed, first, config, limits)
    portfolio = _fill_book(book, decided, first, execution)
    portfolio.weights = weights
    plain = np.vstack([decisions(s, first, last, settings.short_on_sell, settings.hold_keeps_position) for s in book.signals]) / n
    unsized = _fill_book(book, plain, first, execution)
    holds = [buy_and_hold(h, first, last, settings) for h in book.histories]
    equity = np.mean([np.concatenate([[1.0], np.cumprod(1.0 + f.returns)]) for f in holds], axis=0)
    held = np.vstack([f.held for f in holds]) / n
    basket = Curves(
        returns=equity[1:] / equity[:-1] - 1.0, traded=np.sum([f.traded for f in holds], axis=0) / n,
        gross=np.abs(held).sum(axis=0), held=held,
    )
    return {"portfolio": portfolio, "unsized": unsized, "basket": basket}


def _time(book: Book, k: int) -> datetime:
    return datetime.fromtimestamp(int(book.timestamp[k]), timezone.utc)


def window(book: Book, first: int, last: int, settings: BacktestConfig, config: PortfolioConfig) -> tuple[PortfolioWindow, dict[str, Curves]]:
    per_year = periods_per_year(book.histories[0].granularity)
    ends = book.timestamp[first + 1:last + 1]
    books = curves(book, first, last, settings, config)
    scores = {name: portfolio_performance(c.returns, c.traded, c.gross, ends, per_year) for name, c in books.items()}
    return PortfolioWindow(start=_time(book, first), end=_time(book, last), **scores), books


def decision_bars(book: Book) -> list[int]:
    """Bars of the common timeline where some symbol has a signal, in order."""
    return sorted({s.index for signals in book.signals for s in signals})


def portfolio_result(
    histories: dict[str, CandleSeries], signals: dict[str, list[BarSignal]], lasts: dict[str, int], symbols: Sequence[str],
    settings: BacktestConfig, config: PortfolioConfig,
) -> PortfolioResult:
    """The portfolio backtest over the whole range and, with `settings.folds` > 1, each walk-forward window (starting flat)."""
    import numpy as np

    book = book_of(histories, signals, lasts, symbols)
    bars = decision_bars(book)
    if not bars:
        raise BacktestError(f"no signal of {', '.join(symbols)} falls on a bar they all have: nothing to put in a portfolio")
    overall, books = window(book, bars[0], book.last, settings, config)
    folds = []
    if settings.folds > 1:
        for lo, hi, fold_last in fold_bounds([_Bar(k) for k in bars], book.last, settings.folds):
            if fold_last > bars[lo]:
                folds.append(window(book, bars[lo], fold_last, settings, config)[0])
    portfolio = books["portfolio"]
    weights = np.vstack(portfolio.weights) if portfolio.weights else np.full((1, len(symbols)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a symbol never held has no mean weight
        mean_weight = np.nanmean(weights, axis=0)
    return PortfolioResult(
        symbols=list(symbols), settings=config.model_dump(mode="json", exclude={"enabled"}), bars=overall.portfolio.bars,
        dropped_signals=book.dropped, overall=overall, folds=folds,
        mean_weight={s: round(float(w), 6) for s, w in zip(symbols, mean_weight) if np.isfinite(w)},
        mean_position={s: round(float(p), 6) for s, p in zip(symbols, portfolio.held.mean(axis=1))},
        equity=EquityCurve.of(book.timestamp[bars[0]:book.last + 1], {k: np.concatenate([[1.0], np.cumprod(1.0 + c.returns)]) for k, c in books.items()}),
    )


def portfolio_of(run: "BacktestRun") -> PortfolioResult:
    """`portfolio_result` for a finished backtest, with the config's [portfolio] settings."""
    symbols = [item.symbol for item in run.result.symbols]
    return portfolio_result(run.histories, run.signals, run.lasts, symbols, run.settings, run.config.portfolio)


def equity_of(run: "BacktestRun") -> tuple["np.ndarray", dict[str, "np.ndarray"]]:
    """Bar timestamps and each book's equity (1.0 at the first decision), for the report's chart."""
    import numpy as np

    book = book_of(run.histories, run.signals, run.lasts, [item.symbol for item in run.result.symbols])
    first = decision_bars(book)[0]
    books = curves(book, first, book.last, run.settings, run.config.portfolio)
    return book.timestamp[first:book.last + 1], {k: np.concatenate([[1.0], np.cumprod(1.0 + c.returns)]) for k, c in books.items()}
