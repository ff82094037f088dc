"""The consensus rule's batch path answers what the rule answers bar by bar, at every bar.

A backtest hands a chunk of bars to `synthesize_batch` in one call (tests/backtest/test_synthesis_batch.py);
direction, confidence, rule and reasoning must be those of `synthesize` on each bar's request.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from v7 import SynthesisBatch, TheoryResult
from v7.core.models import CandleSeries
from v7.plugins.synthesizers.consensus import ConsensusConfig, ConsensusSynthesizer
from v7.testing import assert_synthesis_batch_matches

ORDER = ("hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo", "rsi")


def random_result(rng: random.Random, theory: str) -> TheoryResult:
    """Every case the rule distinguishes: failed and abstaining theories, missing bias, each regime,
    entropy on both sides of the floor, vetoing labels, VaR present or not."""
    status = rng.choices(["ok", "insufficient_data", "error"], weights=[8, 1, 1])[0]
    labels = {"hurst_exponent": ["trending", "mean_reverting", "random_walk"], "monte_carlo": ["normal", "extreme", "elevated"]}
    metrics: dict[str, float] = {}
    if theory == "shannon_entropy" and rng.random() < 0.9:
        metrics["entropy"] = rng.uniform(0.95, 1.0)
    if theory == "monte_carlo" and rng.random() < 0.8:
        metrics["var"] = rng.uniform(0.0, 0.08)
    bias = None if theory in ("shannon_entropy", "monte_carlo") or rng.random() < 0.1 else rng.choice([rng.uniform(-1, 1), 0.0, 1.0, -1.0])
    return TheoryResult(
        theory=theory, version="1", status=status, bias=bias if status == "ok" else None, confidence=rng.choice([rng.random(), 0.0, 1.0]),
        label=rng.choice(labels.get(theory, ["up", "down"])), metrics=metrics if status == "ok" else {},
        message=None if status == "ok" else "no",
    )


def batch_of(rows: list[list[TheoryResult]], reasoning: bool = True) -> SynthesisBatch:
    n = len(rows)
    stamps = np.arange(n, dtype=np.int64) * 3600 + 1_700_000_000
    close = np.linspace(100.0, 120.0, n)
    history = CandleSeries(symbol="BTC-USD", granularity="1h", timestamp=stamps, open=close, high=close, low=close, close=close, volume=np.ones(n))
    return SynthesisBatch(symbol="BTC-USD", granularity="1h", history=history, ends=list(range(n)), lookback=50, results=rows, reasoning=reasoning)


CONFIGS = [
    {},
    {"max_var": 0.03, "veto_labels": ["extreme", "elevated"]},
    {"buy_threshold": 0.0, "sell_threshold": 0.0},
    {"weights": {"kalman_filter": 0.0, "markov_regime": 0.0}, "default_weight": 0.0},
    {"weights": {"kalman_filter": 2.0}, "momentum_theories": ["kalman_filter", "rsi"], "entropy_floor": 0.0, "entropy_penalty": 1.0},
]


@pytest.mark.parametrize("settings", CONFIGS, ids=["defaults", "max_var", "zero_thresholds", "zero_weights", "reweighted"])
@pytest.mark.parametrize("reasoning", [True, False])
def test_the_batch_answers_what_the_rule_answers_bar_by_bar(settings, reasoning):
    rng = random.Random(7)
    rows = [[random_result(rng, theory) for theory in ORDER] for _ in range(600)]
    synthesizer = ConsensusSynthesizer(ConsensusConfig(**settings))
    assert assert_synthesis_batch_matches(synthesizer, batch_of(rows, reasoning)) == 600
    columns = synthesizer.synthesize_batch(batch_of(rows, reasoning))
    if settings.get("default_weight") == 0:  # nothing directional weighs anything
        assert set(columns.decided_by) == {"no directional theory"}
    else:  # the cases were really mixed
        assert {"buy threshold", "sell threshold", "risk veto", "no directional theory"} <= set(columns.decided_by)
    assert bool(columns.reasoning) is reasoning


def test_any_set_and_order_of_theories_is_answered_as_bar_by_bar():
    """A config may enable any of the theories, in any order: the columns are read by name."""
    rng = random.Random(3)
    for _ in range(20):
        order = rng.sample(ORDER, k=rng.randint(1, len(ORDER)))
        rows = [[random_result(rng, theory) for theory in order] for _ in range(60)]
        assert assert_synthesis_batch_matches(ConsensusSynthesizer(ConsensusConfig()), batch_of(rows)) == 60


def test_a_batch_whose_bars_name_different_theories_is_refused_naming_the_bar():
    rng = random.Random(3)
    rows = [[random_result(rng, theory) for theory in ORDER] for _ in range(5)]
    rows[3] = rows[3][::-1]
    with pytest.raises(ValueError, match=r"results: bar 3 names the theories \['rsi'"):
        batch_of(rows)
    rows[3] = rows[3][:2]
    with pytest.raises(ValueError, match="bar 3"):
        batch_of(rows)


def test_a_risk_theory_without_a_finite_var_is_described_as_bar_by_bar():
    """`TheoryResult.metrics` may hold NaN (only theory findings must be finite): the veto's text says so as `synthesize` does."""
    def bar(var: dict) -> list[TheoryResult]:
        return [
            TheoryResult(theory="kalman_filter", version="1", status="ok", bias=0.9, confidence=0.9, label="up"),
            TheoryResult(theory="monte_carlo", version="1", status="ok", confidence=0.7, label="extreme", metrics=var),
        ]

    rows = [bar({"var": float("nan")}), bar({}), bar({"var": 0.05})]
    assert assert_synthesis_batch_matches(ConsensusSynthesizer(ConsensusConfig()), batch_of(rows)) == 3
    reasons = ConsensusSynthesizer(ConsensusConfig()).synthesize_batch(batch_of(rows)).reasoning
    assert ["VaR nan%" in reasons[0], "VaR n/a" in reasons[1], "VaR 5.00%" in reasons[2]] == [True, True, True]


def test_batch_results_are_made_once_and_results_with_theories_are_refused():
    rng = random.Random(5)
    rows = [[random_result(rng, theory) for theory in ORDER] for _ in range(30)]
    batch = batch_of(rows)
    assert batch.results is batch.results and batch.results == rows
    assert all(made is original for row, again in zip(rows, batch.results) for made, original in zip(again, row))
    with pytest.raises(ValueError, match="not both"):
        SynthesisBatch(symbol="BTC-USD", granularity="1h", history=batch.history, ends=batch.ends, lookback=50, results=rows, theories=batch.theories)
