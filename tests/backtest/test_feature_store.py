"""The feature store: theory results per bar kept as Parquet, read back by later backtests instead of recomputing.

A counting theory appends the bar time of every call to a file named in its config (a file, so
calls made in forked workers count too): a backtest that reads everything from the store leaves
the file as it was.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import structlog
from pydantic import Field

from backtest_plugins import make_registry as make_leaky_registry
from backtest_setup import LOOKBACK, make_config
from v7 import Theory, TheoryConfig, TheoryFinding, TheoryResult, hookimpl, load_features
from v7.core.backtest import check_lookahead, own_copy, resolve_settings, run_backtest, window_at
from v7.core.features import FeatureStore, theory_key, window_digest


class CountingConfig(TheoryConfig):
    calls_file: str = ""
    window: int = Field(default=20, ge=2)
    fail_every: int = Field(default=0, ge=0, description="raise on bars whose hour count is a multiple of this (0 = never)")


class CountingTheory(Theory):
    """Momentum over `window` closes; every call is recorded in `calls_file`."""

    name = "counting"
    version = "1.0"
    default_min_candles = 5
    Config = CountingConfig

    def analyze(self, candles):
        bar_time = int(candles.timestamp[-1])
        with open(self.config.calls_file, "a", encoding="utf-8") as f:
            f.write(f"{bar_time}\n")
        if self.config.fail_every and (bar_time // 3600) % self.config.fail_every == 0:
            raise RuntimeError("a transient failure")
        closes = candles.close[-self.config.window:]
        change = float(closes[-1] / closes[0] - 1)
        bias = max(-1.0, min(1.0, change * 20))
        return TheoryFinding(
            bias=bias, confidence=min(1.0, abs(bias)), label="up" if bias > 0 else "down",
            interpretation="Momentum over the window.", metrics={"change": change, "last": float(closes[-1])},
        )


class CountingPlugin:
    @hookimpl
    def register_theories(self, register):
        register(CountingTheory)


@pytest.fixture(scope="module")
def counting_registry():
    from v7.core.registry import PluginSource, load_registry

    return load_registry([(CountingPlugin(), PluginSource("feature-test-plugins", "v7-feature-tests", "1.0"))])


@pytest.fixture
def calls(tmp_path) -> Path:
    path = tmp_path / "calls.txt"
    path.write_text("")
    return path


def counted(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def counting_config(registry, tmp_path, calls, backtest=None, counting=None, cache="cache", **sections):
    """The counting theory alone, its cache under tmp_path (cache="" = off)."""
    settings = {"feature_cache": str(tmp_path / cache) if cache else "", **(backtest or {})}
    return _config(registry, settings, {"calls_file": str(calls), **(counting or {})}, **sections)


def _config(registry, settings, counting, engine=None, synthesizer=None):
    from v7.core.config import validate_config

    raw = {
        "engine": {"symbols": ["BTC-USD"], "lookback": LOOKBACK, **(engine or {})},
        "sinks": {"enabled": []},
        "theories": {"enabled": ["counting"], "counting": counting},
        "backtest": {"horizon": 12, "step": 20, "workers": 1, **settings},
    }
    if synthesizer is not None:
        raw["synthesizer"] = synthesizer
    return validate_config(raw, registry)


def planned(btc, step=20):
    return list(range(LOOKBACK - 1, len(btc), step))


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


# -- the store itself -------------------------------------------------------------------------


def test_results_round_trip_exactly_including_nan_metrics_and_none_bias(tmp_path):
    store = FeatureStore(tmp_path)
    awkward = {"third": 0.1 + 0.2, "nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "tiny": 5e-324, "negative_zero": -0.0}
    rows = [
        (3600, "d1", TheoryResult(theory="t", version="2.1", status="ok", bias=None, confidence=1 / 3, label="x", interpretation="i",
                                   metrics=awkward, elapsed_ms=1.2345678901234567)),
        (7200, "d2", TheoryResult(theory="t", version="2.1", status="ok", bias=-0.7071067811865476, confidence=0.0, label="",
                                   interpretation="", metrics={}, elapsed_ms=0.0, message="a note")),
        (10800, "d3", TheoryResult(theory="t", version="2.1", status="insufficient_data", message="needs 50 candles, got 3",
                                    interpretation="Not enough history.")),
    ]
    assert store.write("BTC-USD", "1h", "t", "k1", rows) == 3
    path = tmp_path / "1h" / "BTC-USD" / "t-k1.parquet"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = store.read("BTC-USD", "1h", "t", "k1", np.array([3600, 7200, 10800]), ["d1", "d2", "d3"])
    for bar_time, _, original in rows:
        again = back[bar_time]
        assert again.model_dump(exclude={"metrics"}) == original.model_dump(exclude={"metrics"})
        assert list(again.metrics) == list(original.metrics)
        assert [bits(v) for v in again.metrics.values()] == [bits(v) for v in original.metrics.values()]
        assert bits(again.confidence) == bits(original.confidence) and bits(again.elapsed_ms) == bits(original.elapsed_ms)
    assert back[3600].bias is None and bits(back[7200].bias) == bits(rows[1][2].bias)
    # another window at the same bar: not a match; an unknown bar: nothing
    assert store.read("BTC-USD", "1h", "t", "k1", [3600, 99], ["other", "d"]) == {}


def test_metrics_in_their_own_order_per_row_and_their_digests_come_back(tmp_path):
    from v7.core.backtest import metrics_digest

    store = FeatureStore(tmp_path)
    shapes = [{"a": 1.0, "b": 2.0}, {"b": 3.0, "a": 4.0}, {"c": 0.5}, {}]
    rows = [(3600 * (i + 1), f"d{i}", TheoryResult(theory="t", version="1", status="ok", confidence=0.5, label="x", interpretation="i", metrics=m))
            for i, m in enumerate(shapes)]
    store.write("BTC-USD", "1h", "t", "k", rows)
    times, columns = store.read_columns("BTC-USD", "1h", "t", "k", [t for t, _, _ in rows], [d for _, d, _ in rows])
    assert times == [t for t, _, _ in rows]
    for i, (_, _, original) in enumerate(rows):
        assert list(columns.result(i).metrics.items()) == list(original.metrics.items())
        assert columns.metrics_digests[i] == metrics_digest(original.metrics)


def test_a_file_of_the_first_format_is_read_and_rewritten_in_the_current_one(tmp_path):
    """Metrics as JSON text in a `metrics` column (the first format): still a hit, not a recompute."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = FeatureStore(tmp_path)
    path = store.path("BTC-USD", "1h", "t", "k")
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({
        "bar_time": [3600], "digest": ["d1"], "status": ["ok"], "bias": [0.25], "confidence": [0.5], "label": ["x"],
        "interpretation": ["i"], "message": [None], "metrics": ['{"hurst":0.3,"nan":NaN}'], "elapsed_ms": [1.5], "theory_version": ["1"],
    }), path)
    [old] = store.read("BTC-USD", "1h", "t", "k", [3600], ["d1"]).values()
    assert old.bias == 0.25 and old.metrics["hurst"] == 0.3 and math.isnan(old.metrics["nan"])
    new = TheoryResult(theory="t", version="1", status="ok", confidence=0.5, label="y", interpretation="i", metrics={"hurst": 0.7})
    assert store.write("BTC-USD", "1h", "t", "k", [(7200, "d2", new)]) == 1
    assert "metrics" not in pq.read_table(path).column_names
    back = store.read("BTC-USD", "1h", "t", "k", [3600, 7200], ["d1", "d2"])
    assert back[3600].metrics["hurst"] == 0.3 and math.isnan(back[3600].metrics["nan"]) and back[7200].label == "y"


@pytest.mark.parametrize("metrics, named", [
    (['{"change":[0.1,0.2]}', '{"change":[0.3,0.4]}'], "dimensional"),  # the same shape in every row: numpy would make a matrix
    (['{"change":null}', '{"change":0.1}'], "empty metric"),
    (['{"change":"high"}', '{"change":0.1}'], "ValueError"),
])
def test_a_first_format_file_whose_metrics_no_result_could_hold_is_a_miss(tmp_path, metrics, named):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = FeatureStore(tmp_path)
    path = store.path("BTC-USD", "1h", "t", "k")
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({
        "bar_time": [3600, 7200], "digest": ["d1", "d2"], "status": ["ok", "ok"], "bias": [0.25, 0.5], "confidence": [0.5, 0.5],
        "label": ["x", "x"], "interpretation": ["i", "i"], "message": [None, None], "metrics": metrics, "elapsed_ms": [1.5, 1.5],
        "theory_version": ["1", "1"],
    }), path)
    with structlog.testing.capture_logs() as events:
        assert store.read_columns("BTC-USD", "1h", "t", "k", [3600, 7200], ["d1", "d2"]) is None
    [event] = [e for e in events if e["event"] == "feature store unreadable"]
    assert named in event["error"]


def test_writes_merge_and_error_results_are_not_stored(tmp_path):
    store = FeatureStore(tmp_path)
    ok = TheoryResult(theory="t", version="1", status="ok", bias=0.1, confidence=0.5, label="a", interpretation="i")
    error = TheoryResult(theory="t", version="1", status="error", message="timed out after 10 s", interpretation="The theory did not finish in time.")
    assert store.write("ETH-USD", "1h", "t", "k", [(1, "a", ok), (2, "b", error)]) == 1
    assert store.write("ETH-USD", "1h", "t", "k", [(3, "c", ok), (1, "a2", ok.model_copy(update={"bias": 0.2}))]) == 2
    assert store.write("ETH-USD", "1h", "t", "k", [(4, "d", error)]) == 0
    back = store.read("ETH-USD", "1h", "t", "k", [1, 2, 3, 4], ["a2", "b", "c", "d"])
    assert sorted(back) == [1, 3] and back[1].bias == 0.2
    assert not [p for p in (tmp_path / "1h" / "ETH-USD").iterdir() if p.name.endswith(".tmp")]


def _write_many(root: str, offset: int) -> None:
    store = FeatureStore(root)
    result = TheoryResult(theory="t", version="1", status="ok", bias=0.5, confidence=0.5, label="a", interpretation="i")
    for batch in range(20):
        rows = [(offset + batch * 10 + i, f"d{offset + batch * 10 + i}", result) for i in range(10)]
        store.write("BTC-USD", "1h", "t", "k", rows)


def test_two_processes_writing_the_same_file_lose_nothing(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), offset)) for offset in (0, 100_000)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    times = [o + i for o in (0, 100_000) for i in range(200)]
    back = FeatureStore(tmp_path).read("BTC-USD", "1h", "t", "k", times, [f"d{t}" for t in times])
    assert sorted(back) == times


def test_the_window_digest_changes_only_with_the_candles_it_holds(btc):
    history = own_copy(btc)
    edited = dataclasses.replace(history, close=history.close.copy())
    edited.close[350] *= 1.001
    for t in (320, 349, 350, 400, 459):
        same = window_digest(window_at(history, t, LOOKBACK)) == window_digest(window_at(edited, t, LOOKBACK))
        assert same == (t < 350 or t - LOOKBACK + 1 > 350)


def test_the_theory_key_follows_version_config_lookback_and_granularity(counting_registry, tmp_path, calls):
    base = counting_config(counting_registry, tmp_path, calls)
    key = theory_key(base, "counting", "1.0")
    assert len(key) == 16 and key == theory_key(counting_config(counting_registry, tmp_path, calls, backtest={"horizon": 48}), "counting", "1.0")
    others = {
        theory_key(base, "counting", "1.1"),
        theory_key(counting_config(counting_registry, tmp_path, calls, counting={"window": 30}), "counting", "1.0"),
        theory_key(counting_config(counting_registry, tmp_path, calls, engine={"lookback": 200}), "counting", "1.0"),
        theory_key(counting_config(counting_registry, tmp_path, calls, engine={"granularity": "1d"}), "counting", "1.0"),
    }
    assert key not in others and len(others) == 4


# -- in a backtest ----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_rescoring_runs_no_theory_and_gives_identical_signals(counting_registry, btc, tmp_path, calls, workers):
    config = counting_config(counting_registry, tmp_path, calls, backtest={"workers": workers})
    first = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    assert first.result.workers == workers
    assert sorted(counted(calls)) == sorted(int(btc.timestamp[t]) for t in planned(btc))
    calls.write_text("")
    rescored = counting_config(
        counting_registry, tmp_path, calls, synthesizer={"consensus": {"buy_threshold": 0.3, "sell_threshold": 0.2}},
        backtest={"workers": workers, "horizon": 6, "horizons": [3, 24], "fees_bps": 25, "slippage_bps": 1, "execution": "close",
                  "delay_bars": 1, "folds": 2},
    )
    second = run_backtest(rescored, counting_registry, histories={"BTC-USD": btc})
    assert counted(calls) == []
    theories = lambda run: [s.theories for s in run.signals["BTC-USD"]]  # noqa: E731
    assert theories(second) == theories(first)
    assert second.result.theory_ms == first.result.theory_ms
    again = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    assert counted(calls) == [] and again.signals == first.signals


def test_an_edited_candle_recomputes_only_the_bars_whose_window_holds_it(counting_registry, btc, tmp_path, calls):
    config = counting_config(counting_registry, tmp_path, calls)
    history = own_copy(btc)
    run_backtest(config, counting_registry, histories={"BTC-USD": history})
    edited = dataclasses.replace(history, close=history.close.copy())
    edited.close[350] *= 1.01
    calls.write_text("")
    run = run_backtest(config, counting_registry, histories={"BTC-USD": edited})
    expected = [int(btc.timestamp[t]) for t in planned(btc) if t - LOOKBACK + 1 <= 350 <= t]
    assert counted(calls) == expected and 0 < len(expected) < len(planned(btc))
    fresh = run_backtest(counting_config(counting_registry, tmp_path, calls, cache=""), counting_registry, histories={"BTC-USD": edited})
    assert [s.theories[0].bias for s in run.signals["BTC-USD"]] == [s.theories[0].bias for s in fresh.signals["BTC-USD"]]


@pytest.mark.parametrize("change", [{"counting": {"window": 30}}, {"engine": {"lookback": 250}}])
def test_a_theory_config_or_lookback_change_recomputes(counting_registry, btc, tmp_path, calls, change):
    run_backtest(counting_config(counting_registry, tmp_path, calls), counting_registry, histories={"BTC-USD": btc})
    calls.write_text("")
    changed = counting_config(counting_registry, tmp_path, calls, **change)
    run = run_backtest(changed, counting_registry, histories={"BTC-USD": btc})
    assert len(counted(calls)) == run.result.bars > 0


def test_error_results_are_not_stored_and_run_again(counting_registry, btc, tmp_path, calls):
    config = counting_config(counting_registry, tmp_path, calls, counting={"fail_every": 3})
    first = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    errors = [s.timestamp for s in first.signals["BTC-USD"] if s.theories[0].status == "error"]
    assert errors and len(errors) < first.result.bars
    calls.write_text("")
    run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    assert counted(calls) == errors


def test_a_corrupt_file_is_logged_and_recomputed(counting_registry, btc, tmp_path, calls):
    config = counting_config(counting_registry, tmp_path, calls)
    first = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    [path] = (tmp_path / "cache").rglob("*.parquet")
    path.write_bytes(b"PAR1 not really parquet")
    calls.write_text("")
    with structlog.testing.capture_logs() as events:
        second = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    unreadable = [e for e in events if e["event"] == "feature store unreadable"]
    assert unreadable and unreadable[0]["path"] == str(path.resolve()) and unreadable[0]["error"]
    assert len(counted(calls)) == first.result.bars
    assert [s.theories[0].bias for s in second.signals["BTC-USD"]] == [s.theories[0].bias for s in first.signals["BTC-USD"]]
    calls.write_text("")
    run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    assert counted(calls) == []  # written again, whole


def test_a_parquet_file_holding_impossible_values_is_a_cache_miss(counting_registry, btc, tmp_path, calls):
    """A confidence of 1.5 (a foreign or tampered file) is logged and recomputed, never handed to the synthesizer."""
    import pyarrow.parquet as pq

    config = counting_config(counting_registry, tmp_path, calls)
    first = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    [path] = (tmp_path / "cache").rglob("*.parquet")
    table = pq.read_table(path)
    confidence = table.column("confidence").to_pylist()
    confidence[3] = 1.5
    pq.write_table(table.set_column(table.schema.get_field_index("confidence"), "confidence", [confidence]), path)
    calls.write_text("")
    with structlog.testing.capture_logs() as events:
        second = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    assert any(e["event"] == "feature store unreadable" and "confidence" in e["error"] for e in events)
    assert len(counted(calls)) == first.result.bars
    assert [s.theories[0].confidence for s in second.signals["BTC-USD"]] == [s.theories[0].confidence for s in first.signals["BTC-USD"]]


def _tampered(table, column, change):
    import pyarrow as pa

    values = table.column(column).to_pylist()
    values, kind = change(values)
    return table.set_column(table.schema.get_field_index(column), pa.field(column, kind or table.schema.field(column).type), [values])


@pytest.mark.parametrize("column, change, named", [
    ("status", lambda v: (v[:1] + ["maybe"] + v[2:], None), "status"),
    ("bias", lambda v: (v[:1] + [math.nan] + v[2:], None), "bias"),
    ("bias", lambda v: ([None if x is None else str(x) for x in v], "string"), "bias"),
    ("label", lambda v: (v[:1] + [None] + v[2:], None), "label"),
    ("elapsed_ms", lambda v: (v[:1] + [None] + v[2:], None), "elapsed_ms"),
    ("metric_names", lambda v: (v[:1] + ['["change","gone"]'] + v[2:], None), "gone"),
    ("metrics_digest", lambda v: (v[:1] + [None] + v[2:], None), "metrics_digest"),
    ("metric.change", lambda v: (v[:1] + [None] + v[2:], None), "metric.change is empty in a row that names it"),
])
def test_a_file_holding_what_no_result_could_hold_is_a_miss_naming_the_column(tmp_path, column, change, named):
    import pyarrow.parquet as pq

    store = FeatureStore(tmp_path)
    rows = [(3600 * k, f"d{k}", TheoryResult(theory="t", version="1", status="ok", bias=0.1 * k, confidence=0.5, label="up",
                                              metrics={"change": 0.01 * k})) for k in range(1, 4)]
    store.write("BTC-USD", "1h", "t", "k", rows)
    path = store.path("BTC-USD", "1h", "t", "k")
    assert store.read_columns("BTC-USD", "1h", "t", "k", [3600, 7200, 10800], ["d1", "d2", "d3"]) is not None
    pq.write_table(_tampered(pq.read_table(path), column, change), path)
    with structlog.testing.capture_logs() as events:
        assert store.read_columns("BTC-USD", "1h", "t", "k", [3600, 7200, 10800], ["d1", "d2", "d3"]) is None
    [event] = [e for e in events if e["event"] == "feature store unreadable"]
    assert event["path"] == str(path) and named in event["error"]


def test_rescoring_makes_no_theory_result_per_stored_result(counting_registry, btc, tmp_path, calls, monkeypatch):
    """The stored columns go to the batch synthesizer as they are: a TheoryResult is made only where sizing
    reads a tail (a theory declaring `loss_metrics`, at a bar that trades; the counting theory declares none)."""
    from v7.core.theory_columns import TheoryColumns

    config = counting_config(counting_registry, tmp_path, calls, backtest={"step": 1})
    first = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    made = []
    real = TheoryColumns.result
    monkeypatch.setattr(TheoryColumns, "result", lambda self, i: made.append(i) or real(self, i))
    second = run_backtest(config, counting_registry, settings=resolve_settings(config, horizon=6), histories={"BTC-USD": btc})
    trading = sum(1 for s in second.signals["BTC-USD"] if s.direction in ("BUY", "SELL"))
    assert second.result.bars == first.result.bars > 100 and 0 < trading < second.result.bars
    assert made == []
    assert [s.theories for s in second.signals["BTC-USD"]] == [s.theories for s in first.signals["BTC-USD"]]


def test_an_empty_feature_cache_setting_writes_nothing(counting_registry, btc, tmp_path, calls, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = counting_config(counting_registry, tmp_path, calls, cache="")
    for _ in range(2):
        calls.write_text("")
        run = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
        assert len(counted(calls)) == run.result.bars
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.txt"]


def test_the_default_folder_is_relative_to_the_working_directory(counting_registry, btc, tmp_path, calls, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(counting_registry, {}, {"calls_file": str(calls)})
    assert config.backtest.feature_cache == ".v7-cache/features"
    run_backtest(config, counting_registry, histories={"BTC-USD": btc}, bars=3)
    assert [p.relative_to(tmp_path).parts[:4] for p in tmp_path.rglob("*.parquet")] == [(".v7-cache", "features", "1h", "BTC-USD")]


def test_load_features_has_the_documented_columns_and_values(counting_registry, btc, tmp_path, calls):
    config = counting_config(counting_registry, tmp_path, calls, counting={"fail_every": 3})
    run = run_backtest(config, counting_registry, histories={"BTC-USD": btc})
    frame = load_features(config, registry=counting_registry)
    assert list(frame.columns) == [
        "symbol", "bar_time", "counting.status", "counting.bias", "counting.confidence", "counting.label",
        "counting.metric.change", "counting.metric.last",
    ]
    stored = [s for s in run.signals["BTC-USD"] if s.theories[0].status == "ok"]
    assert len(frame) == len(stored) and set(frame["symbol"]) == {"BTC-USD"}
    assert str(frame["bar_time"].dt.tz) == "UTC"
    assert [t.to_pydatetime() for t in frame["bar_time"]] == [s.bar_time for s in stored]
    assert list(frame["counting.bias"]) == [s.theories[0].bias for s in stored]
    assert list(frame["counting.confidence"]) == [s.theories[0].confidence for s in stored]
    assert list(frame["counting.label"]) == [s.theories[0].label for s in stored]
    assert set(frame["counting.status"]) == {"ok"}
    closes = {int(btc.timestamp[t]): float(btc.close[t]) for t in range(len(btc))}
    assert list(frame["counting.metric.last"]) == [closes[s.timestamp] for s in stored]
    middle = stored[len(stored) // 2].bar_time
    assert frame["bar_time"].min() == stored[0].bar_time
    assert len(load_features(config, start=middle, registry=counting_registry)) == len(stored) - len(stored) // 2
    assert len(load_features(config, end=middle.replace(tzinfo=None), registry=counting_registry)) == len(stored) // 2 + 1
    assert load_features(config, symbols=["ETH-USD"], registry=counting_registry).empty
    other_key = counting_config(counting_registry, tmp_path, calls, counting={"window": 30})
    assert load_features(other_key, registry=counting_registry).empty
    with pytest.raises(ValueError, match="feature_cache"):
        load_features(counting_config(counting_registry, tmp_path, calls, cache=""), registry=counting_registry)


def test_check_lookahead_recomputes_and_never_reads_the_store(btc, tmp_path):
    registry = make_leaky_registry()
    config = make_config(registry, theories=["constant"], backtest={"feature_cache": str(tmp_path / "cache"), "step": 40})
    history = own_copy(btc)
    clean = run_backtest(config, registry, histories={"BTC-USD": history})
    assert check_lookahead(clean, sample=3, registry_factory=make_leaky_registry).ok
    # Poison the stored results: a later backtest reads them; the check must not.
    store, theory = FeatureStore(tmp_path / "cache"), clean.result.theories[0]
    key = theory_key(config, theory, "1.0")
    indices = [s.index for s in clean.signals["BTC-USD"]]
    times = [int(history.timestamp[t]) for t in indices]
    digests = [window_digest(window_at(history, t, LOOKBACK)) for t in indices]
    stored = store.read("BTC-USD", "1h", theory, key, times, digests)
    assert sorted(stored) == times
    store.write("BTC-USD", "1h", theory, key, [(t, d, stored[t].model_copy(update={"bias": -0.9})) for t, d in zip(times, digests)])
    poisoned = run_backtest(config, registry, histories={"BTC-USD": history}, settings=resolve_settings(config))
    assert {s.theories[0].bias for s in poisoned.signals["BTC-USD"]} == {-0.9}
    report = check_lookahead(poisoned, sample=3, registry_factory=make_leaky_registry)
    assert report.checked == 3 and {d.field for d in report.differences} >= {"constant.bias"}


def test_the_digests_of_every_window_at_once_equal_each_windows_own(btc):
    """`window_digests` reads every window's digest from prefix sums: the same as hashing each window alone."""
    from v7.core.features.keys import window_digests

    indices = [0, 1, LOOKBACK - 1, LOOKBACK, LOOKBACK + 7, len(btc) - 1]
    at_once = window_digests(btc, indices, LOOKBACK)
    assert at_once == {t: window_digest(window_at(btc, t, LOOKBACK)) for t in indices}
    assert len(set(at_once.values())) == len(indices)  # different windows, different digests
