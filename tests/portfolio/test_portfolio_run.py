"""`v7 run` with `[portfolio] enabled`: an iteration's positions adjusted together before the sinks; off, as without it."""

from __future__ import annotations

import numpy as np
import pytest

from portfolio_plugins import FIRST_STORED, WRITTEN, make_registry
from v7.core.candles import read_candles_csv
from v7.core.config import validate_config
from v7.core.engine import Pipeline
from v7.core.portfolio import PortfolioConfig, aligned_returns, allocate
from helpers import REPO

SYMBOLS = ["BTC-USD", "ETH-USD"]
LOOKBACK = 300
PORTFOLIO = {"enabled": True, "method": "min_variance", "covariance_bars": 200, "max_symbol": 0.9, "max_gross": 1.2}


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def run(registry, tmp_path, iterations=3, **sections):
    raw = {
        "engine": {"symbols": SYMBOLS, "lookback": LOOKBACK},
        "theories": {"enabled": ["hurst_exponent", "shannon_entropy"]},
        "synthesizer": {"use": "always_buy"},
        # Sized at a full position for each symbol on its own: no loss budget theory, a volatility target never binding.
        "sizing": {"uncalibrated_fraction": 1.0, "target_volatility": 10.0},
        "sinks": {"enabled": ["keeping"]},
        **sections,
    }
    pipeline = Pipeline.build(validate_config(raw, registry), registry)
    WRITTEN.clear()
    outcome = pipeline.run(iterations=iterations)
    assert outcome.stored == len(SYMBOLS) * iterations  # nothing held back, nothing lost
    return list(WRITTEN)


def by_bar(signals):
    out: dict = {}
    for s in signals:
        out.setdefault(s.bar_time, {})[s.symbol] = s
    return out


def test_the_step_adjusts_each_iteration_together_within_the_caps(registry, tmp_path):
    alone = by_bar(run(registry, tmp_path))
    together = by_bar(run(registry, tmp_path, portfolio=PORTFOLIO))
    assert alone.keys() == together.keys() and len(together) == 3
    config = PortfolioConfig(**PORTFOLIO)
    closes = {s: read_candles_csv(REPO / "data" / "candles" / f"{s}.csv", s) for s in SYMBOLS}
    for bar_time, signals in together.items():
        proposed = [alone[bar_time][s].position for s in SYMBOLS]
        assert proposed == pytest.approx([1.0, 1.0])
        positions = np.array([signals[s].position for s in SYMBOLS])
        assert np.abs(positions).sum() <= config.max_gross + 1e-12 and np.all(np.abs(positions) <= config.max_symbol + 1e-12)
        # What the allocation says for the closes the theories saw: the lookback window up to this bar, no later one.
        windows = [c.slice(0, int(np.searchsorted(c.timestamp, bar_time.timestamp(), side="right"))).tail(LOOKBACK) for c in closes.values()]
        returns = aligned_returns([w.timestamp for w in windows], [w.close for w in windows], config.covariance_bars)
        expected = allocate(proposed, returns, config).positions
        assert positions == pytest.approx(expected, abs=1e-9)
        assert not np.allclose(positions, proposed)  # the allocation moved them
        assert positions[0] > positions[1]  # BTC's returns were calmer: the larger share
        assert "; portfolio min_variance: weight" in signals["BTC-USD"].sizing


def test_the_step_keeps_each_position_within_its_own_loss_limit(registry, tmp_path):
    """With monte_carlo's CVaR and a loss budget that binds, each symbol is sized at its loss limit; the
    weights would lift BTC past it (weight × 2 > 1), the step stops at it: |position| × CVaR ≤ loss_budget."""
    budget = 0.004
    sections = dict(theories={"enabled": ["hurst_exponent", "monte_carlo"]},
                    sizing={"uncalibrated_fraction": 1.0, "target_volatility": 10.0, "loss_budget": budget})
    alone = by_bar(run(registry, tmp_path, iterations=2, **sections))
    together = by_bar(run(registry, tmp_path, iterations=2, portfolio={**PORTFOLIO, "max_gross": 2.0}, **sections))
    for bar_time, signals in together.items():
        cvar = {s: next(r.metrics["cvar"] for r in signals[s].theory_results if r.theory == "monte_carlo") for s in SYMBOLS}
        limits = [min(1.0, budget / cvar[s]) for s in SYMBOLS]
        proposed = [alone[bar_time][s].position for s in SYMBOLS]
        assert proposed == pytest.approx(limits) and max(limits) < 0.9  # sized at the loss limit, below the caps
        positions = [signals[s].position for s in SYMBOLS]
        assert all(abs(positions[i]) * cvar[s] <= budget + 1e-12 for i, s in enumerate(SYMBOLS))
        assert positions[0] == pytest.approx(limits[0])  # BTC's weight would double it: held at its limit
        assert sum(map(abs, positions)) <= sum(map(abs, proposed)) + 1e-12


def test_off_keeps_todays_signals(registry, tmp_path):
    plain = run(registry, tmp_path, iterations=2)
    off = run(registry, tmp_path, iterations=2, portfolio={**PORTFOLIO, "enabled": False})
    keep = lambda s: s.model_dump(exclude={"created_at", "run_id", "timings_ms", "theory_results"})  # noqa: E731
    order = lambda signals: sorted(signals, key=lambda s: (s.bar_time, s.symbol))  # noqa: E731 - symbols finish in any order
    assert [keep(s) for s in order(plain)] == [keep(s) for s in order(off)]


def late_run(registry, **sections):
    """Two iterations, ETH's first fetch finishing only after BTC's signal was stored (past the deadline)."""
    FIRST_STORED.clear()
    raw = {
        "engine": {"symbols": SYMBOLS, "lookback": LOOKBACK, "iteration_timeout_seconds": 0.2},
        "feeds": {"enabled": ["late_replay"]},
        "theories": {"enabled": ["hurst_exponent"]},
        "synthesizer": {"use": "always_buy"},
        "sizing": {"uncalibrated_fraction": 1.0, "target_volatility": 10.0},
        "sinks": {"enabled": ["keeping"]},
        "portfolio": PORTFOLIO,
        **sections,
    }
    pipeline = Pipeline.build(validate_config(raw, registry), registry)
    WRITTEN.clear()
    outcome = pipeline.run(iterations=2)
    assert outcome.stored == len(WRITTEN) and outcome.lost == 0
    return list(WRITTEN)


def test_a_symbol_late_for_its_iteration_still_gets_the_caps_in_the_room_its_book_left(registry, tmp_path):
    written = late_run(registry)
    first_btc = next(s for s in written if s.symbol == "BTC-USD")
    first_eth = next(s for s in written if s.symbol == "ETH-USD")
    assert written.index(first_btc) < written.index(first_eth)  # ETH was still fetching at the deadline
    assert first_eth.bar_time == first_btc.bar_time  # the same iteration's bar
    assert first_btc.position == pytest.approx(PORTFOLIO["max_symbol"])  # alone in its book: weight 1, then the cap
    # Sized 1.0 for itself; max_symbol 0.9, but BTC took 0.9 of the 1.2 gross: 0.3 left.
    assert first_eth.position == pytest.approx(PORTFOLIO["max_gross"] - PORTFOLIO["max_symbol"])
    assert abs(first_btc.position) + abs(first_eth.position) <= PORTFOLIO["max_gross"] + 1e-12
    assert "; portfolio caps only (late for its iteration's book): max 0.9 per symbol, gross room 0.300 of 1.2, +1.000 → +0.300" in first_eth.sizing


def test_a_late_symbol_within_a_roomier_book_gets_max_symbol(registry, tmp_path):
    written = late_run(registry, portfolio={**PORTFOLIO, "max_symbol": 0.6, "max_gross": 2.0})
    first_eth = next(s for s in written if s.symbol == "ETH-USD")
    assert first_eth.position == pytest.approx(0.6)  # room 2.0 − 0.6: the symbol cap binds


def test_a_failed_step_still_stores_every_signal_within_the_caps(registry, tmp_path, monkeypatch):
    from v7.core.portfolio import step

    def broken(*args, **kwargs):
        raise RuntimeError("covariance exploded")

    monkeypatch.setattr(step, "adjust", broken)
    signals = run(registry, tmp_path, iterations=2, portfolio=PORTFOLIO)
    for bar_time, book in by_bar(signals).items():
        positions = [book[s].position for s in SYMBOLS]
        # Each sized 1.0 alone: clipped to 0.9, then 1.8 gross scaled into the 1.2 allowed.
        assert positions == pytest.approx([0.6, 0.6])
        assert all("; portfolio caps only (the portfolio step failed): max 0.9 per symbol, gross room 1.200 of 1.2" in book[s].sizing for s in SYMBOLS)


def test_the_signal_log_line_has_the_stored_position(registry, tmp_path):
    import structlog

    with structlog.testing.capture_logs() as events:
        signals = run(registry, tmp_path, iterations=2, portfolio=PORTFOLIO)
    logged = [e for e in events if e["event"] == "signal"]
    assert len(logged) == len(signals) == 4
    stored = sorted((s.bar_time.isoformat(), s.symbol, round(s.position, 6)) for s in signals)
    assert sorted((e["bar_time"], e["symbol"], e["position"]) for e in logged) == stored  # the book's, after the step
    assert all(0 <= e["position"] <= PORTFOLIO["max_symbol"] for e in logged) and any(e["position"] > 0 for e in logged)  # not the 1.0 sized alone
