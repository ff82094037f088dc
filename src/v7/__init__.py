"""V7: a signal engine for crypto markets. Everything a plugin author needs is importable from here
(plus `v7.http` for HTTP clients and `v7.testing` for tests); `v7.core` is internal and may change.

    from v7 import hookimpl, Theory, TheoryConfig, TheoryFinding, CandleSeries

    class MyTheory(Theory):
        name = "my_theory"
        def analyze(self, candles: CandleSeries) -> TheoryFinding: ...

    @hookimpl
    def register_theories(register):
        register(MyTheory)
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Names resolve on first use, so `v7 --help` does not pay for pydantic and friends.
_EXPORTS: dict[str, str] = {
    "hookimpl": "v7.core.hookspecs",
    "hookspec": "v7.core.hookspecs",
    "Component": "v7.core.components",
    "Feed": "v7.core.components",
    "InsufficientData": "v7.core.components",
    "PluginConfig": "v7.core.components",
    "PromptFormatter": "v7.core.components",
    "Sink": "v7.core.components",
    "Synthesizer": "v7.core.components",
    "SynthesisFailed": "v7.core.components",
    "Theory": "v7.core.components",
    "TheoryConfig": "v7.core.components",
    "EndOfData": "v7.core.components",
    "UpToDate": "v7.core.components",
    "NotSupported": "v7.core.components",
    "StartupError": "v7.core.components",
    "SignalSpooled": "v7.core.components",
    "SignalHeld": "v7.core.components",
    "EnvVarName": "v7.core.components",
    "CostEstimate": "v7.core.models",
    "GRANULARITY_SECONDS": "v7.core.models",
    "granularity_seconds": "v7.core.models",
    "count_gaps": "v7.core.models",
    "CandleDataError": "v7.core.candles",
    "validate_candles": "v7.core.candles",
    "check_spacing": "v7.core.candles",
    "read_candles_csv": "v7.core.candles",
    "series_from_frame": "v7.core.candles",
    "SeriesConfig": "v7.core.series_checks",
    "window_closes": "v7.core.series_checks",
    "log_returns": "v7.core.series_checks",
    "SignalReader": "v7.core.reading",
    "SignalQuery": "v7.core.reading",
    "StoredSignal": "v7.core.reading",
    "StoredBacktest": "v7.core.reading",
    "RunRecord": "v7.core.reading",
    "get_logger": "v7.core.logs",
    "format_utc": "v7.core.timefmt",
    "parse_utc": "v7.core.timefmt",
    "unix_seconds": "v7.core.timefmt",
    "one_line": "v7.core.errors",
    "create_private": "v7.core.files",
    "PRIVATE_MODE": "v7.core.files",
    "quantile": "v7.core.numbers",
    "Candle": "v7.core.models",
    "CandleSeries": "v7.core.models",
    "Direction": "v7.core.models",
    "MarketContext": "v7.core.models",
    "PromptRequest": "v7.core.models",
    "RunInfo": "v7.core.models",
    "RunProblem": "v7.core.models",
    "Signal": "v7.core.models",
    "Synthesis": "v7.core.models",
    "SynthesisRequest": "v7.core.models",
    "SynthesisBatch": "v7.core.synthesis_batch",
    "SynthesisColumns": "v7.core.synthesis_batch",
    "TheoryColumns": "v7.core.theory_columns",
    "TheoryFinding": "v7.core.models",
    "TheoryResult": "v7.core.models",
    "TokenUsage": "v7.core.models",
    "analyze": "v7.core.api",
    "signals_frame": "v7.core.commands.export",
    "load_features": "v7.core.features.frame",
    "__version__": "v7.core",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'v7' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from v7.core import __version__
    from v7.core.api import analyze
    from v7.core.commands.export import signals_frame
    from v7.core.candles import CandleDataError, check_spacing, read_candles_csv, series_from_frame, validate_candles
    from v7.core.components import (
        Component, EndOfData, EnvVarName, Feed, InsufficientData, NotSupported, PluginConfig, PromptFormatter, SignalHeld,
        SignalSpooled, Sink, StartupError, SynthesisFailed, Synthesizer, Theory, TheoryConfig, UpToDate,
    )
    from v7.core.errors import one_line
    from v7.core.features.frame import load_features
    from v7.core.files import PRIVATE_MODE, create_private
    from v7.core.hookspecs import hookimpl, hookspec
    from v7.core.logs import get_logger
    from v7.core.numbers import quantile
    from v7.core.models import (
        GRANULARITY_SECONDS, Candle, CandleSeries, CostEstimate, Direction, MarketContext, PromptRequest, RunInfo, RunProblem, Signal,
        Synthesis, SynthesisRequest, TheoryFinding, TheoryResult, TokenUsage, count_gaps, granularity_seconds,
    )
    from v7.core.synthesis_batch import SynthesisBatch, SynthesisColumns
    from v7.core.theory_columns import TheoryColumns
    from v7.core.reading import RunRecord, SignalQuery, SignalReader, StoredBacktest, StoredSignal
    from v7.core.series_checks import SeriesConfig, log_returns, window_closes
    from v7.core.timefmt import format_utc, parse_utc, unix_seconds
