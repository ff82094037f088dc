"""The figures `v7 stats` shows, computed in Python from any `SignalReader`.

`SignalReader.summary()` calls `summarize` unless the store aggregates where the data lives (the
sqlite sink does it in SQL and must return the same dict; a test holds them equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .numbers import quantile
from .timefmt import format_utc

if TYPE_CHECKING:  # pragma: no cover
    from .reading import SignalQuery, SignalReader

STAGES = ("feed", "theories", "formatters", "synthesizer", "sink")
DIRECTIONS = ("BUY", "SELL", "HOLD")
LATE_SECONDS = 60.0
"""A signal stored more than this long after it was made waited somewhere (a spool)."""


def share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def latency(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "count": len(ordered), "p50": quantile(ordered, 0.5), "p90": quantile(ordered, 0.9),
        "p99": quantile(ordered, 0.99), "max": ordered[-1] if ordered else None,
    }


def hold_status(hold_share: float | None, hold_target: tuple[float, float]) -> str:
    low, high = hold_target
    if hold_share is None:
        return "no signals"
    return "below" if hold_share < low else "above" if hold_share > high else "within"


def summarize(reader: "SignalReader", query: "SignalQuery", hold_target: tuple[float, float] = (0.4, 0.7)) -> dict[str, Any]:
    """Every figure `v7 stats` shows, as plain data (its `--json` output without `database` and `sink`).

    `filter.hours` is None here: the command that turned `--hours` into `query.created_since` fills it in.
    """
    signals = sorted(reader.signals(query), key=lambda s: s.id)
    total = len(signals)
    created = [format_utc(s.created_at) for s in signals]
    bars = [format_utc(s.bar_time) for s in signals]

    directions = {}
    for direction in DIRECTIONS:
        chosen = [s.confidence for s in signals if s.direction == direction]
        directions[direction] = {"count": len(chosen), "share": share(len(chosen), total), "mean_confidence": _mean(chosen)}
    hold_share = directions["HOLD"]["share"]
    low, high = hold_target

    by_symbol: dict[str, list[Any]] = {}
    for s in signals:
        by_symbol.setdefault(s.symbol, []).append(s)
    symbols = []
    for symbol in sorted(by_symbol):
        group = by_symbol[symbol]
        counts = {d: sum(1 for s in group if s.direction == d) for d in DIRECTIONS}
        last_bar = max(format_utc(s.bar_time) for s in group)
        last = max((s for s in group if format_utc(s.bar_time) == last_bar), key=lambda s: s.id)
        symbols.append({
            "symbol": symbol, "signals": len(group), **counts, "hold_share": share(counts["HOLD"], len(group)),
            "mean_confidence": _mean([s.confidence for s in group]), "last_bar_time": last_bar, "last_direction": last.direction,
        })

    by_synthesizer: dict[str, list[Any]] = {}
    for s in signals:
        by_synthesizer.setdefault(s.synthesizer, []).append(s)
    synthesizers = []
    for name, group in sorted(by_synthesizer.items(), key=lambda item: (-len(item[1]), item[0])):
        reasons: dict[str, int] = {}
        for s in group:
            if s.fallback_reason is not None:
                reasons[s.fallback_reason] = reasons.get(s.fallback_reason, 0) + 1
        top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:5]
        synthesizers.append({
            "synthesizer": name, "signals": len(group), "share": share(len(group), total),
            "fallbacks": sum(1 for s in group if s.fallback_reason is not None),
            "mean_attempts": _mean([s.attempts for s in group]),
            "fallback_reasons": [{"reason": reason, "count": count} for reason, count in top],
        })
    fallbacks = sum(s["fallbacks"] for s in synthesizers)

    per_theory: dict[str, dict[str, Any]] = {}
    for s in signals:
        for position, result in enumerate(s.theory_results):
            row = per_theory.setdefault(result.theory, {"position": position, "statuses": [], "ok_ms": [], "last_error": None})
            row["position"] = min(row["position"], position)
            row["statuses"].append(result.status)
            if result.status == "ok":
                row["ok_ms"].append(result.elapsed_ms)
            elif result.status == "error":
                row["last_error"] = result.message  # signals go by increasing id: the last one wins
    theories = []
    for name, row in sorted(per_theory.items(), key=lambda item: (item[1]["position"], item[0])):
        results = len(row["statuses"])
        ok, insufficient, error = (row["statuses"].count(status) for status in ("ok", "insufficient_data", "error"))
        ok_ms = sorted(row["ok_ms"])
        theories.append({
            "theory": name, "results": results, "ok": ok, "insufficient_data": insufficient, "error": error,
            "error_rate": share(error, results), "insufficient_data_rate": share(insufficient, results),
            "p50_ms": quantile(ok_ms, 0.5), "p99_ms": quantile(ok_ms, 0.99), "last_error": row["last_error"],
        })

    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for s in signals:
        for stage, value in s.timings_ms.items():
            if stage in samples and stage != "sink" and isinstance(value, (int, float)):
                samples[stage].append(float(value))
        if s.sink_ms is not None:
            samples["sink"].append(float(s.sink_ms))

    used = [s.usage for s in signals if s.usage is not None]
    hit, miss = sum(u.cache_hit_tokens for u in used), sum(u.cache_miss_tokens for u in used)
    cost = sum(u.cost for u in used)
    llm = {
        "signals_with_usage": len(used), "prompt_tokens": sum(u.prompt_tokens for u in used),
        "completion_tokens": sum(u.completion_tokens for u in used), "cache_hit_tokens": hit, "cache_miss_tokens": miss,
        "cache_hit_ratio": share(hit, hit + miss), "cost": cost, "cost_per_signal": share(cost, len(used)),
    }

    late = sum(1 for s in signals if s.stored_at is not None and (s.stored_at - s.created_at).total_seconds() > LATE_SECONDS)
    runs = reader.runs(query.created_since)

    return {
        "schema_version": reader.schema_version(),
        "filter": {
            "hours": None, "symbol": query.symbol,
            "created_since": format_utc(query.created_since) if query.created_since is not None else None,
        },
        "signals": total,
        "created_at": {"first": min(created, default=None), "last": max(created, default=None)},
        "bar_time": {"first": min(bars, default=None), "last": max(bars, default=None)},
        "directions": directions,
        "hold": {"share": hold_share, "target_min": low, "target_max": high, "status": hold_status(hold_share, hold_target)},
        "symbols": symbols,
        "synthesizers": synthesizers,
        "fallbacks": {"signals": fallbacks, "share": share(fallbacks, total)},
        "theories": theories,
        "latency_ms": {stage: latency(values) for stage, values in samples.items()},
        "llm": llm,
        "storage": {
            "spool_waiting": reader.waiting(), "stored_late": late,
            "runs": len(runs), "runs_without_stop": sum(1 for run in runs if run.stopped_at is None),
        },
    }
