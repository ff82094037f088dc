"""`--check-lookahead` for a synthesizer that learns: its history replayed, truncated at a sampled bar.

Its answer at bar t depends on every bar it was shown before t, so recomputing bar t alone proves
nothing. Instead a freshly spawned process is given each symbol's candles up to a sampled bar t only
(contiguous copies) and runs the same backtest over the same bars up to t: every signal up to t must
come out the same. A difference means something in the learning saw a bar after t.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from .lookahead import about_theories, compare_signals, fresh_config
from .models import BarSignal, LookaheadDifference

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Registry
    from .compute import BacktestRun


def replay_points(run: "BacktestRun") -> list[tuple[str, int]]:
    """Per symbol, the signal at the middle of its range: the truncation point (half its history is cut off)."""
    points = []
    for symbol, signals in run.signals.items():
        if len(signals) >= 2:
            points.append((symbol, len(signals) // 2))
    return points


def _replay_fresh(raw_config: dict[str, Any], expected_hash: str, registry_factory: Callable[[], "Registry"], settings: dict[str, Any],
                  jobs: list[tuple[str, dict[str, Any], str]]) -> list[list[BarSignal]] | str:
    """In the fresh process: the backtest of each (symbol, candles up to t, first signal bar) job."""
    from ..models import CandleSeries
    from .compute import resolve_settings, run_backtest

    rebuilt = fresh_config(raw_config, expected_hash, registry_factory)
    if isinstance(rebuilt, str):
        return rebuilt
    registry, config = rebuilt
    out = []
    for symbol, arrays, first in jobs:
        history = CandleSeries(symbol=symbol, granularity=config.engine.granularity, **arrays)
        replay = resolve_settings(config, **{**settings, "start": first, "end": None, "folds": 1, "workers": 1})
        out.append(run_backtest(config, registry, settings=replay, symbols=[symbol], histories={symbol: history}).signals[symbol])
    return out


def check_replay(run: "BacktestRun", registry_factory: Callable[[], "Registry"]) -> tuple[int, list[LookaheadDifference], str | None]:
    """(signals compared, differences, error) of the truncated replays."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    jobs, expected = [], []
    for symbol, cut in replay_points(run):
        signals = run.signals[symbol]
        t = signals[cut].index
        history = run.histories[symbol]
        arrays = {name: np.array(getattr(history, name)[: t + 1], copy=True) for name in ("timestamp", "open", "high", "low", "close", "volume")}
        first = datetime.fromtimestamp(signals[0].timestamp, timezone.utc).isoformat()
        jobs.append((symbol, arrays, first))
        expected.append((symbol, signals[: cut + 1]))
    if not jobs:
        return 0, [], None
    settings = {k: v for k, v in run.settings.model_dump().items() if k not in ("start", "end", "folds", "workers")}
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            replayed = pool.submit(_replay_fresh, run.config.effective(), run.config.config_hash(), registry_factory, settings, jobs).result()
    except Exception as exc:
        return 0, [], f"the fresh replay failed: {type(exc).__name__}: {exc}"
    if isinstance(replayed, str):
        return 0, [], replayed
    differences, compared = [], 0
    for (symbol, original), again in zip(expected, replayed):
        if len(again) != len(original):
            differences.append(LookaheadDifference(symbol=symbol, bar_time=original[-1].bar_time, field="signals",
                                                   backtest=str(len(original)), recomputed=str(len(again))))
            continue
        for a, b in zip(original, again):
            compared += 1
            differences.extend(
                d.model_copy(update={"field": f"replayed {d.field}"}) for d in compare_signals(symbol, a, b) if not about_theories(d)
            )
    return compared, differences, None
