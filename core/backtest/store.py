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


def comparison_rows(a: BacktestResult, b: BacktestResult) -> list[tuple[str, str, str]]:
    """(metric, A, B) rows for `v7 backtest compare`, per symbol the two share (or each has)."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:+.2%}"

    def num(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [
        ("backtest id", str(a.id), str(b.id)),
        ("config hash", a.config_hash, b.config_hash),
        ("created", format_utc(a.created_at), format_utc(b.created_at)),
        ("synthesizer", a.synthesizer, b.synthesizer),
        ("theories", ", ".join(a.theories), ", ".join(b.theories)),
        ("horizon / step", f"{a.settings.get('horizon')} / {a.settings.get('step')}", f"{b.settings.get('horizon')} / {b.settings.get('step')}"),
        ("fees + slippage (bps)", f"{a.settings.get('fees_bps')} + {a.settings.get('slippage_bps')}", f"{b.settings.get('fees_bps')} + {b.settings.get('slippage_bps')}"),
    ]
    by_a = {s.symbol: s for s in a.symbols}
    by_b = {s.symbol: s for s in b.symbols}
    for symbol in list(dict.fromkeys([*by_a, *by_b])):
        sa, sb = by_a.get(symbol), by_b.get(symbol)

        def both(getter: Callable[[SymbolResult], str]) -> tuple[str, str]:
            return (getter(sa) if sa else "-", getter(sb) if sb else "-")

        def hit(direction: str) -> Callable[[SymbolResult], str]:
            def get(s: SymbolResult) -> str:
                d = s.scores.directions[direction]
                return "-" if d.hit_rate is None else f"{d.hit_rate:.1%} [{d.ci_low:.1%}, {d.ci_high:.1%}] n={d.scored}"
            return get

        rows += [
            (f"{symbol} range", *both(lambda s: f"{format_utc(s.scores.start)} → {format_utc(s.scores.end)}")),
            (f"{symbol} signals", *both(lambda s: str(s.scores.signals))),
            (f"{symbol} BUY hit rate", *both(hit("BUY"))),
            (f"{symbol} SELL hit rate", *both(hit("SELL"))),
            (f"{symbol} HOLD share", *both(lambda s: f"{s.scores.hold_share:.1%}")),
            (f"{symbol} strategy return", *both(lambda s: pct(s.scores.strategy.total_return))),
            (f"{symbol} buy-and-hold return", *both(lambda s: pct(s.scores.buy_and_hold.total_return))),
            (f"{symbol} strategy Sharpe", *both(lambda s: num(s.scores.strategy.sharpe))),
            (f"{symbol} max drawdown", *both(lambda s: f"{s.scores.strategy.max_drawdown:.2%}")),
            (f"{symbol} trades", *both(lambda s: str(s.scores.strategy.trades))),
        ]
    return rows


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def differing_settings(a: BacktestResult, b: BacktestResult) -> list[tuple[str, str, str]]:
    """(setting, A, B) for every setting in which two runs differ: what shaped the signals, then `[backtest]`."""
    rows = []
    for name, x, y in (
        ("config hash", a.config_hash, b.config_hash),
        ("granularity", a.granularity, b.granularity),
        ("lookback", a.lookback, b.lookback),
        ("synthesizer", a.synthesizer, b.synthesizer),
        ("theories", a.theories, b.theories),
    ):
        if x != y:
            rows.append((name, _shown(x), _shown(y)))
    for key in sorted(set(a.settings) | set(b.settings)):
        x, y = a.settings.get(key), b.settings.get(key)
        if x != y:
            rows.append((f"settings.{key}", _shown(x), _shown(y)))
    return rows


def range_warning(a: BacktestResult, b: BacktestResult) -> str | None:
    """A warning when the two runs do not cover the same symbols over the same date ranges, else None."""
    ranges_a = {s.symbol: (s.scores.start, s.scores.end) for s in a.symbols}
    ranges_b = {s.symbol: (s.scores.start, s.scores.end) for s in b.symbols}
    if ranges_a == ranges_b:
        return None

    def span(ranges: dict[str, tuple[Any, Any]], symbol: str) -> str:
        if symbol not in ranges:
            return "absent"
        start, end = ranges[symbol]
        return f"{format_utc(start)} → {format_utc(end)}"

    parts = [
        f"{symbol} A {span(ranges_a, symbol)}, B {span(ranges_b, symbol)}"
        for symbol in dict.fromkeys([*ranges_a, *ranges_b]) if ranges_a.get(symbol) != ranges_b.get(symbol)
    ]
    return "the two backtests cover different date ranges (" + "; ".join(parts) + "): their scores are not directly comparable"
