"""A backtest's synthesizer step through the batch path: the bar-by-bar signals, and a failing batch costs only speed."""

from __future__ import annotations

import dataclasses

import structlog

from backtest_setup import make_config
from v7.core.backtest import resolve_settings, run_backtest, synthesis
from v7.plugins.synthesizers.consensus import ConsensusSynthesizer

BARS = 400


def signals(registry, tmp_path):
    """The signals of a 400-bar backtest, the theories' timings left out (they differ from run to run)."""
    config = make_config(registry, tmp_path, backtest={"step": 1})
    run = run_backtest(config, registry, settings=resolve_settings(config, workers=1), bars=BARS)
    return [dataclasses.replace(s, theories=tuple(t._replace(elapsed_ms=0.0) for t in s.theories)) for s in run.signals["BTC-USD"]]


def test_a_backtest_through_the_batch_gives_the_bar_by_bar_signals(registry, tmp_path, monkeypatch):
    calls = []
    real = ConsensusSynthesizer.synthesize_batch
    monkeypatch.setattr(ConsensusSynthesizer, "synthesize_batch", lambda self, batch: calls.append(len(batch)) or real(self, batch))
    batched = signals(registry, tmp_path)
    assert sum(calls) == BARS  # every bar answered by the batch path
    monkeypatch.setattr(synthesis, "batches", lambda pipeline: False)
    by_bar = signals(registry, tmp_path)
    assert batched == by_bar
    assert {s.direction for s in batched} == {"BUY", "SELL", "HOLD"} and any(s.position != 0 for s in batched)


def test_a_failing_batch_costs_speed_never_signals(registry, tmp_path, monkeypatch):
    expected = signals(registry, tmp_path)

    def broken(self, batch):
        raise RuntimeError("a bug in the batch path")

    monkeypatch.setattr(ConsensusSynthesizer, "synthesize_batch", broken)
    with structlog.testing.capture_logs() as logs:
        assert signals(registry, tmp_path) == expected
    failed = [e for e in logs if e["event"] == "synthesizer batch failed; synthesizing bar by bar"]
    assert failed and failed[0]["plugin"] == "consensus" and "a bug in the batch path" in failed[0]["error"]


def test_a_batch_answering_too_few_bars_is_not_used(registry, tmp_path, monkeypatch):
    expected = signals(registry, tmp_path)
    real = ConsensusSynthesizer.synthesize_batch

    def short(self, batch):
        columns = real(self, batch)
        return columns.model_copy(update={name: getattr(columns, name)[:-1] for name in ("direction", "confidence", "decided_by")})

    monkeypatch.setattr(ConsensusSynthesizer, "synthesize_batch", short)
    with structlog.testing.capture_logs() as logs:
        assert signals(registry, tmp_path) == expected
    assert any("answers for" in e.get("error", "") for e in logs if e["event"] == "synthesizer batch failed; synthesizing bar by bar")


def test_a_payoff_stated_by_the_batch_sizes_as_the_bar_by_bar_one(registry, tmp_path, monkeypatch):
    """A calibrated synthesizer's `payoff` (b of its past signals) reaches the sizing from the batch path too."""
    synthesize, batch = ConsensusSynthesizer.synthesize, ConsensusSynthesizer.synthesize_batch
    monkeypatch.setattr(ConsensusSynthesizer, "calibrated", True)
    monkeypatch.setattr(ConsensusSynthesizer, "synthesize", lambda self, request: synthesize(self, request).model_copy(update={"payoff": 20.0}))
    monkeypatch.setattr(ConsensusSynthesizer, "synthesize_batch", lambda self, b: batch(self, b).model_copy(update={"payoff": [20.0] * len(b)}))
    batched = signals(registry, tmp_path)
    monkeypatch.setattr(synthesis, "batches", lambda pipeline: False)
    assert batched == signals(registry, tmp_path)
    assert any(s.position != 0 for s in batched)
