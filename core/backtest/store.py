"""Keeping backtest results beside the signals, through a sink's reader, and comparing two of them.

The sink is `--sink NAME` or the first enabled sink that can read back (`Sink.reader`); `--db
LOCATION` opens another store of that sink (`Sink.reader_at`). Results go through
`SignalReader.save_backtest` / `.backtest`: the core never knows how a sink stores them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..components import NotSupported
from ..config import V7Config
from ..reading import SignalReader, StoredBacktest
from ..timefmt import format_utc
from .models import BacktestError, BacktestResult, SymbolResult

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import RegisteredComponent, Registry


def result_sink(config: V7Config, registry: "Registry", name: str | None = None) -> "RegisteredComponent":
    """The sink that keeps backtest results: `name`, else the first enabled sink that implements `reader`."""
    if name is not None:
        component = registry.get("sink", name)
        if component is None:
            raise BacktestError(f"--sink: no sink named {name!r} is installed")
        if not component.cls.supports("reader"):
            raise BacktestError(f"--sink: sink {name!r} cannot read back what it stores (it does not implement reader)")
        return component
    for enabled in config.enabled.get("sink", []):
        component = registry.get("sink", enabled)
        if component is not None and component.cls.supports("reader"):
            return component
    raise BacktestError(
        f"none of the enabled sinks {config.enabled.get('sink', [])} can read back what it stores (reader); "
        "enable one in [sinks] or name one with --sink"
    )


def keeps_backtests(reader: SignalReader) -> bool:
    """True when the reader's store can keep backtest results (it implements `save_backtest`)."""
    return type(reader).save_backtest is not SignalReader.save_backtest


def open_results(config: V7Config, registry: "Registry", sink: str | None = None, location: str | None = None) -> SignalReader:
    """A reader of the result sink's store: `sink`, else the first enabled readable sink that keeps
    backtest results (a jsonl file before a database does not capture them); `location` is `--db`."""
    if sink is None and location is None:
        first: SignalReader | None = None
        for enabled in config.enabled.get("sink", []):
            component = registry.get("sink", enabled)
            if component is None or not component.cls.supports("reader"):
                continue
            try:
                reader = component.cls(config.plugin_config("sink", enabled) or component.cls.Config()).reader()
            except Exception:
                continue
            if keeps_backtests(reader):
                if first is not None:
                    first.close()
                return reader
            if first is None:
                first = reader
            else:
                reader.close()
        if first is not None:
            return first  # storing then says which sink cannot keep results
    component = result_sink(config, registry, sink)
    cls = component.cls
    try:
        if location is not None:
            if not cls.supports("reader_at"):
                raise BacktestError(f"--db: sink {component.name!r} cannot open a store by location (it does not implement reader_at)")
            return cls.reader_at(location)
        return cls(config.plugin_config("sink", component.name) or cls.Config()).reader()
    except BacktestError:
        raise
    except Exception as exc:
        where = location or f"sink {component.name!r}"
        raise BacktestError(f"{where}: cannot open the stored results: {type(exc).__name__}: {exc}") from exc


def stored_backtest(result: BacktestResult) -> StoredBacktest:
    """The searchable columns of a result, plus the result itself as JSON."""
    starts = [s.scores.start for s in result.symbols]
    ends = [s.scores.end for s in result.symbols]
    return StoredBacktest(
        created_at=result.created_at, config_hash=result.config_hash, config_path=result.config_path,
        v7_version=result.v7_version, granularity=result.granularity, symbols=[s.symbol for s in result.symbols],
        range_start=min(starts), range_end=max(ends), bars=result.bars, settings=result.settings,
        result_json=result.model_dump_json(),
    )


def store_result(reader: SignalReader, result: BacktestResult) -> int:
    """Keep one backtest; returns its id (also set on `result`)."""
    try:
        result.id = int(reader.save_backtest(stored_backtest(result)))
    except NotSupported as exc:
        raise BacktestError(str(exc)) from exc
    return result.id


def load_result(reader: SignalReader, key: str) -> BacktestResult:
    """A stored backtest by id, or the latest one whose config hash starts with `key`."""
    where = reader.location or type(reader).__name__
    try:
        stored = reader.backtest(key)
    except NotSupported as exc:
        raise BacktestError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise BacktestError(f"{where}: cannot read backtest {key!r}: {type(exc).__name__}: {exc}") from exc
    if stored is None:
        raise BacktestError(f"{where}: no backtest with id or config hash {key!r}")
    result = BacktestResult.model_validate_json(stored.result_json)
    result.id = stored.id
    return result


# -- comparing --------------------------------------------------------------------------------------


def comparison_rows(*results: BacktestResult) -> list[tuple[str, ...]]:
    """(metric, one value per run) rows for `v7 backtest compare`, per symbol any run has.

    With several runs, each symbol's strategy Sharpe is also deflated for the number of runs
    compared (Bailey & López de Prado 2014): the chance that it beats the best of as many tries
    without skill."""
    from ..evaluation import deflated_sharpe_of

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:+.2%}"

    def num(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    def each(getter: Callable[[BacktestResult], str]) -> tuple[str, ...]:
        return tuple(getter(r) for r in results)

    rows: list[tuple[str, ...]] = [
        ("backtest id", *each(lambda r: str(r.id))),
        ("config hash", *each(lambda r: r.config_hash)),
        ("created", *each(lambda r: format_utc(r.created_at))),
        ("synthesizer", *each(lambda r: r.synthesizer)),
        ("theories", *each(lambda r: ", ".join(r.theories))),
        ("horizon / step", *each(lambda r: f"{r.settings.get('horizon')} / {r.settings.get('step')}")),
        ("fees + slippage (bps)", *each(lambda r: f"{r.settings.get('fees_bps')} + {r.settings.get('slippage_bps')}")),
        ("pooled verdict", *each(lambda r: r.pooled[0].verdict.text if r.pooled else "-")),
    ]
    by_run = [{s.symbol: s for s in r.symbols} for r in results]
    for symbol in list(dict.fromkeys(name for run in by_run for name in run)):
        picked = [run.get(symbol) for run in by_run]

        def per(getter: Callable[[SymbolResult], str]) -> tuple[str, ...]:
            return tuple(getter(s) if s else "-" for s in picked)

        def hit(direction: str) -> Callable[[SymbolResult], str]:
            def get(s: SymbolResult) -> str:
                d = s.scores.directions[direction]
                head = s.scores.horizons[0].directions[direction] if s.scores.horizons else None
                if d.hit_rate is None:
                    return "-"
                if head is None or head.edge is None or head.edge.value is None or head.edge.low is None:
                    return f"{d.hit_rate:.1%} n={d.scored}"
                return f"{d.hit_rate:.1%} (edge {head.edge.value * 100:+.1f} [{head.edge.low * 100:+.1f}, {head.edge.high * 100:+.1f}] pts) n={d.scored}"
            return get

        def verdict(s: SymbolResult) -> str:
            return s.scores.verdict.text if s.scores.verdict else "-"

        def null(s: SymbolResult) -> str:
            return "-" if s.scores.null is None or s.scores.null.p_value is None else f"{s.scores.null.p_value:.3f}"

        rows += [
            (f"{symbol} range", *per(lambda s: f"{format_utc(s.scores.start)} → {format_utc(s.scores.end)}")),
            (f"{symbol} verdict", *per(verdict)),
            (f"{symbol} signals", *per(lambda s: str(s.scores.signals))),
            (f"{symbol} BUY hit rate", *per(hit("BUY"))),
            (f"{symbol} SELL hit rate", *per(hit("SELL"))),
            (f"{symbol} HOLD share", *per(lambda s: f"{s.scores.hold_share:.1%}")),
            (f"{symbol} strategy return", *per(lambda s: pct(s.scores.strategy.total_return))),
            (f"{symbol} buy-and-hold return", *per(lambda s: pct(s.scores.buy_and_hold.total_return))),
            (f"{symbol} strategy Sharpe", *per(lambda s: num(s.scores.strategy.sharpe))),
            (f"{symbol} shift-null p", *per(null)),
            (f"{symbol} max drawdown", *per(lambda s: f"{s.scores.strategy.max_drawdown:.2%}")),
            (f"{symbol} trades", *per(lambda s: str(s.scores.strategy.trades))),
        ]
        if len(results) > 2:
            trials = [s.scores.strategy.sharpe_per_bar for s in picked if s is not None and s.scores.strategy.sharpe_per_bar is not None]

            def deflated(s: SymbolResult) -> str:
                p = s.scores.strategy
                if p.sharpe_per_bar is None or p.skewness is None or p.kurtosis is None:
                    return "-"
                value = deflated_sharpe_of(p.sharpe_per_bar, p.bars, p.skewness, p.kurtosis, trials)
                return "-" if value is None else f"{value:.3f}"

            rows.append((f"{symbol} deflated Sharpe ({len(trials)} trials)", *per(deflated)))
    return rows


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def differing_settings(*results: BacktestResult) -> list[tuple[str, ...]]:
    """(setting, one value per run) for every setting in which the runs differ: what shaped the signals, then `[backtest]`."""
    rows = []
    for name, getter in (
        ("config hash", lambda r: r.config_hash),
        ("granularity", lambda r: r.granularity),
        ("lookback", lambda r: r.lookback),
        ("synthesizer", lambda r: r.synthesizer),
        ("theories", lambda r: r.theories),
    ):
        values = [getter(r) for r in results]
        if any(v != values[0] for v in values):
            rows.append((name, *(_shown(v) for v in values)))
    for key in sorted({k for r in results for k in r.settings}):
        values = [r.settings.get(key) for r in results]
        if any(v != values[0] for v in values):
            rows.append((f"settings.{key}", *(_shown(v) for v in values)))
    return rows


def range_warning(*results: BacktestResult) -> str | None:
    """A warning when the runs do not cover the same symbols over the same date ranges, else None."""
    ranges = [{s.symbol: (s.scores.start, s.scores.end) for s in r.symbols} for r in results]
    if all(r == ranges[0] for r in ranges):
        return None
    labels = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def span(one: dict[str, tuple[Any, Any]], symbol: str) -> str:
        if symbol not in one:
            return "absent"
        start, end = one[symbol]
        return f"{format_utc(start)} → {format_utc(end)}"

    symbols = dict.fromkeys(name for one in ranges for name in one)
    parts = [
        f"{symbol} " + ", ".join(f"{labels[i] if i < 26 else i + 1} {span(one, symbol)}" for i, one in enumerate(ranges))
        for symbol in symbols if any(one.get(symbol) != ranges[0].get(symbol) for one in ranges)
    ]
    which = "the two backtests" if len(results) == 2 else "the backtests"
    return f"{which} cover different date ranges (" + "; ".join(parts) + "): their scores are not directly comparable"
