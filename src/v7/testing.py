"""Helpers for testing V7 plugins, public and stable; also a pytest plugin (entry point `pytest11`).

    from v7.testing import bundled_candles, run_theory

    def test_my_theory_answers_on_real_candles():
        result = run_theory(MyTheory, bundled_candles("BTC-USD", bars=500))
        assert result.status == "ok"

With V7 installed, pytest also offers the fixtures `v7_registry` (a factory of fresh registries)
and `btc_candles` (the bundled BTC-USD hourly candles) without any import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from v7.core.components import Synthesizer, Theory
    from v7.core.models import CandleSeries, Signal, TheoryResult
    from v7.core.synthesis_batch import SynthesisBatch
    from v7.core.registry import Registry

BUNDLED_SYMBOLS = ("BTC-USD", "ETH-USD")


def bundled_candles_dir() -> Path:
    """The folder of real Coinbase hourly candles shipped with V7 (`<SYMBOL>.csv`, licences beside them)."""
    from importlib import resources

    return Path(str(resources.files("v7.data") / "candles"))


def bundled_candles(symbol: str = "BTC-USD", bars: int | None = None) -> "CandleSeries":
    """Real hourly candles shipped with V7, validated; the last `bars` of them when given."""
    from v7.core.candles import read_candles_csv

    if symbol not in BUNDLED_SYMBOLS:
        raise ValueError(f"no bundled candles for {symbol!r}; bundled: {', '.join(BUNDLED_SYMBOLS)}")
    series = read_candles_csv(bundled_candles_dir() / f"{symbol}.csv", symbol, "1h")
    return series.tail(bars) if bars is not None else series


def registry_with(*plugins: Any, installed: bool = False) -> "Registry":
    """A fresh registry holding only the given plugin objects (modules, or objects with hookimpls).

    `installed=True` also loads every installed plugin, as `v7 run` does. Nothing is shared with
    other registries, so tests cannot leak plugins into each other.
    """
    from v7.core.registry import PluginSource, Registry

    registry = Registry()
    if installed:
        registry.load_entry_points()
    for index, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        registry.add_plugin(plugin, PluginSource(plugin=name, distribution="test", version="0"))
    if registry.errors:
        problems = "; ".join(error.describe() for error in registry.errors)
        raise ValueError(f"plugins failed to register: {problems}")
    return registry


def theory_plugin(*classes: type) -> Any:
    """A plugin object registering the given Theory classes: `registry_with(theory_plugin(MyTheory))`."""
    from v7.core.hookspecs import hookimpl

    class _TheoryPlugin:
        __name__ = "theories:" + ",".join(cls.__name__ for cls in classes)

        @hookimpl
        def register_theories(self, register: Any) -> None:
            for cls in classes:
                register(cls)

    return _TheoryPlugin()


def run_theory(theory: "Theory | type[Theory]", candles: "CandleSeries", config: dict[str, Any] | None = None,
               timeout: float = 30.0) -> "TheoryResult":
    """Run one theory exactly as the engine does: time limit, error isolation, output validation.

    `theory` is an instance or a class (then built with `config`, validated by its Config model).
    """
    from v7.core.engine import run_theory as engine_run_theory

    if isinstance(theory, type):
        theory = theory(theory.Config.model_validate(config or {}))
    elif config is not None:
        raise ValueError("pass either a theory instance or a class with config, not both")
    return engine_run_theory(theory, candles, timeout)


def run_pipeline(config: dict[str, Any], plugins: Iterable[Any] = (), iterations: int = 1,
                 symbols: list[str] | None = None) -> "list[Signal]":
    """Run `v7 run` in this process on a config given as a dict (the TOML's tables), with extra plugins.

    Installed plugins are available as usual; `plugins` adds more. Returns the signals produced.
    Use the `replay` feed for offline tests; point sinks at a temporary folder.
    """
    from v7.core.config import validate_config
    from v7.core.engine import Pipeline

    registry = registry_with(*plugins, installed=True)
    validated = validate_config(config, registry, where="<test config>")
    return collect_signals(Pipeline.build(validated, registry), iterations=iterations, symbols=symbols)


def collect_signals(pipeline: Any, **run_options: Any) -> "list[Signal]":
    """`pipeline.run(**run_options)`, keeping every signal it produced (a run itself keeps none)."""
    signals: "list[Signal]" = []
    pipeline.run(on_signal=signals.append, **run_options)
    return signals


# -- the pytest plugin --------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers above work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def v7_registry() -> Any:
        """A factory of fresh registries: `v7_registry(my_plugin_module)`."""
        return registry_with

    @pytest.fixture(scope="session")
    def btc_candles() -> "CandleSeries":
        """The bundled BTC-USD hourly candles, validated."""
        return bundled_candles("BTC-USD")


def assert_batch_matches(theory: "Theory", history: "CandleSeries", ends: Iterable[int], lookback: int, tolerance: float = 1e-9) -> int:
    """Assert that `theory.analyze_batch` gives, at every bar of `ends`, what `analyze` gives on that bar's window.

    Floats (bias, confidence, every metric) must agree to `tolerance` (absolute, and relative for
    large values), labels and interpretations exactly; an `InsufficientData` on one side must be one
    on the other. Returns how many bars were compared.
    """
    import math

    from v7.core.components import InsufficientData

    ends = list(ends)
    batch = theory.analyze_batch(history, ends, lookback)
    assert len(batch) == len(ends), f"{theory.name}: analyze_batch answered {len(batch)} findings for {len(ends)} bars"

    def close(a: float | None, b: float | None) -> bool:
        if a is None or b is None:
            return a is b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))

    for t, fast in zip(ends, batch):
        window = history.slice(max(0, t + 1 - lookback), t + 1)
        try:
            slow: Any = theory.analyze(window)
        except InsufficientData as exc:
            slow = exc
        where = f"{theory.name} at bar {t}"
        if isinstance(slow, InsufficientData) or isinstance(fast, InsufficientData):
            assert isinstance(slow, InsufficientData) and isinstance(fast, InsufficientData), (
                f"{where}: analyze gave {type(slow).__name__}, analyze_batch {type(fast).__name__}")
            assert str(slow) == str(fast), f"{where}: insufficient data {str(slow)!r} vs {str(fast)!r}"
            continue
        assert fast.label == slow.label, f"{where}: label {fast.label!r} vs {slow.label!r}"
        assert fast.interpretation == slow.interpretation, f"{where}: interpretation {fast.interpretation!r} vs {slow.interpretation!r}"
        assert close(fast.bias, slow.bias), f"{where}: bias {fast.bias!r} vs {slow.bias!r}"
        assert close(fast.confidence, slow.confidence), f"{where}: confidence {fast.confidence!r} vs {slow.confidence!r}"
        assert fast.metrics.keys() == slow.metrics.keys(), f"{where}: metrics {sorted(fast.metrics)} vs {sorted(slow.metrics)}"
        for name, value in slow.metrics.items():
            assert close(fast.metrics[name], value), f"{where}: metric {name} {fast.metrics[name]!r} vs {value!r}"
    return len(ends)


def assert_synthesis_batch_matches(synthesizer: "Synthesizer", batch: "SynthesisBatch") -> int:
    """Assert that `synthesizer.synthesize_batch(batch)` answers, at every bar, exactly what
    `synthesize(batch.request(i))` answers: direction, confidence (to the bit, sign of zero
    included), rule, payoff and (when the batch asks for it) reasoning. Returns how many bars were compared."""
    from v7.core.synthesis_batch import SynthesisColumns

    columns = SynthesisColumns.model_validate(synthesizer.synthesize_batch(batch).model_dump())
    assert len(columns.direction) == len(batch), f"{synthesizer.name}: synthesize_batch answered {len(columns.direction)} bars of {len(batch)}"
    for i in range(len(batch)):
        slow, where = synthesizer.synthesize(batch.request(i)), f"{synthesizer.name} at bar {batch.ends[i]}"
        assert columns.direction[i] == slow.direction, f"{where}: direction {columns.direction[i]!r} vs {slow.direction!r}"
        assert float(columns.confidence[i]).hex() == float(slow.confidence).hex(), f"{where}: confidence {columns.confidence[i]!r} vs {slow.confidence!r}"
        assert columns.decided_by[i] == slow.decided_by, f"{where}: decided_by {columns.decided_by[i]!r} vs {slow.decided_by!r}"
        if batch.reasoning:
            assert columns.reasoning[i] == slow.reasoning, f"{where}: reasoning {columns.reasoning[i]!r} vs {slow.reasoning!r}"
        payoff = columns.payoff[i] if columns.payoff else None
        assert payoff == slow.payoff, f"{where}: payoff {payoff!r} vs {slow.payoff!r}"
    return len(batch)
