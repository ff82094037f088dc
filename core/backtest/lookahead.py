"""The lookahead check: recompute a sample of signals in a fresh process, from the candles up to their bar only."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..models import CandleSeries
from ..registry import load_registry
from .compute import BacktestRun
from .synthesis import synthesize_bar, window_at
from .models import BarSignal, LookaheadDifference, LookaheadReport

if TYPE_CHECKING:  # pragma: no cover
    from ..config import V7Config
    from ..registry import Registry


def fresh_config(raw_config: dict[str, Any], expected_hash: str, registry_factory: Callable[[], "Registry"]) -> "tuple[Registry, V7Config] | str":
    """In a freshly spawned process: the registry and the backtest's config rebuilt, or why it cannot be.

    Logging is set to warnings: the recomputed bars' info and debug lines were the backtest's already."""
    from ..config import ConfigError, validate_config
    from ..engine import limit_threads
    from ..logs import configure_logging

    configure_logging("warning")
    limit_threads(1)
    registry = registry_factory()
    try:
        config = validate_config(raw_config, registry, where="<backtest config>")
    except ConfigError as exc:
        return f"the config could not be rebuilt in a fresh process: {exc}"
    if config.config_hash() != expected_hash:
        return f"the config rebuilt in a fresh process has hash {config.config_hash()}, not {expected_hash}"
    return registry, config


def _recompute_fresh(raw_config: dict[str, Any], expected_hash: str, registry_factory: Callable[[], "Registry"], samples: list[tuple[str, int, dict[str, Any]]]) -> list[BarSignal] | str:
    """In a fresh process: a fresh pipeline per sample, given copies of the candles up to the sample's bar only."""
    from ..engine import Pipeline

    rebuilt = fresh_config(raw_config, expected_hash, registry_factory)
    if isinstance(rebuilt, str):
        return rebuilt
    registry, config = rebuilt
    out = []
    for symbol, index, arrays in samples:
        copied = CandleSeries(symbol=symbol, granularity=config.engine.granularity, **arrays)
        window = window_at(copied, len(copied) - 1, config.engine.lookback)
        pipeline = Pipeline.build(config, registry, kinds=("theory", "formatter", "synthesizer"))
        try:
            out.append(synthesize_bar(pipeline, window, pipeline.analyze(window), index))
        finally:
            pipeline.close()
    return out


def lookahead_sample(signals: dict[str, list[BarSignal]], size: int) -> list[tuple[str, BarSignal]]:
    """An evenly spread, deterministic sample over every symbol's signals, latest bars first."""
    chosen: list[tuple[str, BarSignal]] = []
    per_symbol = max(1, math.ceil(size / max(1, len(signals))))
    for symbol, items in signals.items():
        if not items:
            continue
        k = min(per_symbol, len(items))
        picks = sorted({round(i * (len(items) - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [len(items) - 1]
        chosen.extend((symbol, items[p]) for p in picks)
    chosen.sort(key=lambda item: -item[1].timestamp)
    return chosen[:max(size, len(signals))]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def compare_signals(symbol: str, original: BarSignal, again: BarSignal) -> list[LookaheadDifference]:
    """Every field in which two signals for the same bar differ (floats to 1e-9, metrics to 10 digits)."""
    diffs = []

    def add(name: str, a: Any, b: Any) -> None:
        diffs.append(LookaheadDifference(symbol=symbol, bar_time=original.bar_time, field=name, backtest=str(a), recomputed=str(b)))

    if original.direction != again.direction:
        add("direction", original.direction, again.direction)
    if not _close(original.confidence, again.confidence):
        add("confidence", original.confidence, again.confidence)
    if not _close(original.position, again.position):
        add("position", original.position, again.position)
    if original.synthesizer != again.synthesizer:
        add("synthesizer", original.synthesizer, again.synthesizer)
    for a, b in zip(original.theories, again.theories):
        for name in ("status", "label", "metrics_digest"):
            if getattr(a, name) != getattr(b, name):
                add(f"{a.theory}.{name.replace('_digest', '')}", getattr(a, name), getattr(b, name))
        for name in ("bias", "confidence"):
            if not _close(getattr(a, name), getattr(b, name)):
                add(f"{a.theory}.{name}", getattr(a, name), getattr(b, name))
    if len(original.theories) != len(again.theories):
        add("theories", len(original.theories), len(again.theories))
    return diffs


def about_theories(difference: LookaheadDifference) -> bool:
    """A difference in the theories' results (`<theory>.<field>`, or their count), not in the synthesizer's answer."""
    return "." in difference.field or difference.field == "theories"


def trained_past_the_bar(signals: dict[str, list[BarSignal]]) -> list[LookaheadDifference]:
    """Every answer whose model learned from an outcome known only after its bar (`Synthesis.learned_until` > the bar).

    Recomputing cannot catch this: a model loaded from a file answers the same wherever the candles
    are cut, so the leak is in what the answer says it knew, checked on every signal."""
    from ..timefmt import format_utc

    return [
        LookaheadDifference(
            symbol=symbol, bar_time=s.bar_time, field=f"{s.synthesizer} model trained past the bar (learned until)",
            backtest=format_utc(datetime.fromtimestamp(s.learned_until, timezone.utc)), recomputed=f"≤ {format_utc(s.bar_time)}",
        )
        for symbol, items in signals.items() for s in items if s.learned_until is not None and s.learned_until > s.timestamp
    ]


def check_lookahead(run: BacktestRun, sample: int | None = None, registry_factory: Callable[[], "Registry"] = load_registry) -> LookaheadReport:
    """Recompute a sample of the run's signals where the future cannot exist, and list every difference.

    Each sampled bar t is recomputed in a freshly spawned process (no memory shared with this one:
    no module globals, caches or arrays filled during the backtest) by a fresh pipeline given
    contiguous copies of the `lookback` candles up to t and nothing else. Any difference is either
    lookahead (something in the backtest saw bars after t) or a plugin whose output is not a pure
    function of its candles (hidden state, unseeded randomness). Every signal's `learned_until` is
    checked too: a model trained on outcomes after its bar (a model file fitted on the whole history)
    answers the same in any replay. Not caught: a plugin that re-reads the data source itself (a
    file or a network API) behind the engine's back, or a model that hides its training range.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    config = run.config
    lookback = config.engine.lookback
    picks = lookahead_sample(run.signals, sample or run.settings.lookahead_sample)
    payload = []
    for symbol, signal in picks:
        window = window_at(run.histories[symbol], signal.index, lookback)
        arrays = {name: np.array(getattr(window, name), copy=True) for name in ("timestamp", "open", "high", "low", "close", "volume")}
        payload.append((symbol, signal.index, arrays))
    raw = config.effective()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            recomputed = pool.submit(_recompute_fresh, raw, config.config_hash(), registry_factory, payload).result()
    except Exception as exc:
        return LookaheadReport(checked=0, error=f"the fresh process failed: {type(exc).__name__}: {exc}")
    if isinstance(recomputed, str):
        return LookaheadReport(checked=0, error=recomputed)
    learner = registry_factory().get("synthesizer", config.synthesizer)
    learning = learner is not None and learner.cls.learns
    differences = trained_past_the_bar(run.signals)
    for (symbol, original), again in zip(picks, recomputed):
        # A learning synthesizer recomputed on one bar has seen nothing before it: only the theories compare here.
        differences.extend(d for d in compare_signals(symbol, original, again) if not learning or about_theories(d))
    checked = len(picks)
    if learning:
        from .replay_check import check_replay

        replayed, more, error = check_replay(run, registry_factory)
        if error:
            return LookaheadReport(checked=checked, differences=differences, error=error)
        checked += replayed
        differences.extend(more)
    return LookaheadReport(checked=checked, differences=differences)
