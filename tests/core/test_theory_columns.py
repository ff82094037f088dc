"""`TheoryColumns`: one theory's results at many bars as checked columns, equal to the results they stand for."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from v7 import TheoryColumns, TheoryResult
from v7.core.features.keys import metrics_digests


def some_results(n: int = 40, seed: int = 1) -> list[TheoryResult]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        status = rng.choice(["ok", "ok", "ok", "insufficient_data", "error"])
        metrics = {name: rng.uniform(-2, 2) for name in rng.sample(["var", "cvar", "drift"], k=rng.randint(0, 3))}
        if rng.random() < 0.1:
            metrics["var"] = math.nan
        out.append(TheoryResult(
            theory="monte_carlo", version="1.2", status=status, bias=None if rng.random() < 0.3 else rng.uniform(-1, 1),
            confidence=rng.random(), label=rng.choice(["normal", "extreme"]), interpretation="i", metrics=metrics,
            elapsed_ms=rng.uniform(0, 5), message=None if status == "ok" else "why",
        ))
    return out


def rebuilt(columns: TheoryColumns) -> TheoryColumns:
    """The same columns as a store would hand them over: not wrapping the original objects."""
    return TheoryColumns(
        columns.theory, version=columns.version, status=columns.status, bias=columns.bias, confidence=columns.confidence,
        label=columns.label, interpretation=columns.interpretation, message=columns.message, elapsed_ms=columns.elapsed_ms,
        metric_names=columns.metric_names, metrics={name: columns.metric(name) for name in ("var", "cvar", "drift")},
    )


def test_columns_of_results_hold_every_field_and_hand_the_results_back():
    results = some_results()
    columns = TheoryColumns.of("monte_carlo", results)
    assert len(columns) == 40 and all(columns.result(i) is r for i, r in enumerate(results))
    assert columns.status == tuple(r.status for r in results) and columns.label == tuple(r.label for r in results)
    assert columns.ok.tolist() == [r.ok for r in results]
    assert [None if math.isnan(b) else b for b in columns.bias.tolist()] == [r.bias for r in results]
    assert columns.confidence.tolist() == [r.confidence for r in results]
    for name in ("var", "cvar", "drift"):
        assert columns.has_metric(name).tolist() == [name in r.metrics for r in results]
        expected = [r.metrics.get(name, math.nan) for r in results]
        assert np.array_equal(columns.metric(name), np.array(expected), equal_nan=True)
    assert np.isnan(columns.metric("absent")).all() and not columns.has_metric("absent").any()
    assert columns.metrics_digests == tuple(metrics_digests([r.metrics for r in results]))


def test_results_made_from_columns_equal_the_originals_field_for_field_and_metric_order_kept():
    results = some_results()
    columns = rebuilt(TheoryColumns.of("monte_carlo", results))
    for i, original in enumerate(results):
        made = columns.result(i)
        assert made is not original
        assert made.model_dump(exclude={"metrics"}) == original.model_dump(exclude={"metrics"})
        assert list(made.metrics) == list(original.metrics)
        assert [v.hex() for v in made.metrics.values()] == [v.hex() for v in original.metrics.values()]
        assert all(type(v) is float for v in made.metrics.values()) and type(made.confidence) is float
    assert columns.results() is columns.results()  # made once


def test_take_picks_bars_in_the_order_given_and_survives_pickling():
    results = some_results()
    columns = TheoryColumns.of("monte_carlo", results)
    rows = [5, 0, 39, 5]
    part = columns.take(rows)
    assert [part.result(i) for i in range(4)] == [results[i] for i in rows]
    assert part.metrics_digests == tuple(columns.metrics_digests[i] for i in rows)
    copy = pickle.loads(pickle.dumps(rebuilt(columns).take(rows)))
    assert [copy.result(i) for i in range(4)] == [results[i] for i in rows]
    assert copy.ok.tolist() == [results[i].ok for i in rows]


@pytest.mark.parametrize("column, value, message", [
    ("status", "maybe", "column status at bar 2: must be one of"),
    ("bias", 1.5, "column bias at bar 2: must lie in"),
    ("bias", -math.inf, "column bias at bar 2"),
    ("confidence", math.nan, "column confidence at bar 2"),
    ("confidence", -0.1, "column confidence at bar 2"),
    ("label", None, "column label at bar 2: must be a string"),
    ("version", 3, "column version at bar 2"),
    ("message", 7, "column message at bar 2"),
])
def test_a_value_a_result_could_not_hold_is_refused_naming_theory_column_and_bar(column, value, message):
    columns = rebuilt(TheoryColumns.of("monte_carlo", some_results(5)))
    fields = dict(
        version=list(columns.version), status=list(columns.status), bias=columns.bias.copy(), confidence=columns.confidence.copy(),
        label=list(columns.label), interpretation=columns.interpretation, message=list(columns.message), elapsed_ms=columns.elapsed_ms,
        metric_names=columns.metric_names, metrics={name: columns.metric(name) for name in ("var", "cvar", "drift")},
    )
    fields[column][2] = value
    with pytest.raises(ValueError, match=f"theory 'monte_carlo': {message}"):
        TheoryColumns("monte_carlo", **fields)


def test_columns_of_unequal_length_a_named_metric_without_values_and_a_foreign_result_are_refused():
    results = some_results(5)
    columns = TheoryColumns.of("monte_carlo", results)
    base = dict(
        version=columns.version, status=columns.status, bias=columns.bias, confidence=columns.confidence, label=columns.label,
        interpretation=columns.interpretation, message=columns.message, elapsed_ms=columns.elapsed_ms,
        metric_names=[("var",)] * 5, metrics={"var": np.zeros(5)},
    )
    with pytest.raises(ValueError, match="column label has 4 bars, status has 5"):
        TheoryColumns("monte_carlo", **{**base, "label": columns.label[:4]})
    with pytest.raises(ValueError, match="metric 'cvar' is named but has no column"):
        TheoryColumns("monte_carlo", **{**base, "metric_names": [("var", "cvar")] * 5})
    with pytest.raises(ValueError, match="bar 0's result is theory 'monte_carlo', not 'hurst'"):
        TheoryColumns.of("hurst", results)


def test_every_column_is_read_only_and_the_callers_arrays_are_copied():
    bias = np.array([0.5, -0.5])
    columns = TheoryColumns(
        "t", version=["1", "1"], status=["ok", "ok"], bias=bias, confidence=np.array([0.1, 0.2]), label=["a", "b"],
        interpretation=["", ""], message=[None, None], elapsed_ms=np.zeros(2), metric_names=[("var",), ()], metrics={"var": np.array([0.1, np.nan])},
    )
    unpickled = pickle.loads(pickle.dumps(columns))
    for each in (columns, columns.take([1, 0]), unpickled):
        for array in (each.bias, each.confidence, each.elapsed_ms, each.ok, each.metric("var")):
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 0.0
        assert all(type(getattr(each, name)) is tuple for name in ("version", "status", "label", "interpretation", "message", "metric_names"))
    bias[0] = 0.9  # the caller's array stays the caller's: the checked column does not move
    assert columns.bias[0] == 0.5 and columns.result(0).bias == 0.5


def test_arrays_of_more_than_one_dimension_and_names_not_in_tuples_are_refused():
    base = dict(
        version=["1", "1"], status=["ok", "ok"], bias=np.array([0.5, -0.5]), confidence=np.array([0.1, 0.2]), label=["a", "b"],
        interpretation=["", ""], message=[None, None], elapsed_ms=np.zeros(2), metric_names=[("var",), ()], metrics={"var": np.array([0.1, 0.2])},
    )
    with pytest.raises(ValueError, match="column bias is 2-dimensional"):
        TheoryColumns("t", **{**base, "bias": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="column metric 'var' is 2-dimensional"):
        TheoryColumns("t", **{**base, "metrics": {"var": [[0.1, 0.2], [0.3, 0.4]]}})
    with pytest.raises(ValueError, match="column metric_names at bar 0: must be a tuple"):
        TheoryColumns("t", **{**base, "metric_names": [["var"], ()]})
