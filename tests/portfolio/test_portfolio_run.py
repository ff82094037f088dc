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


def test_off_keeps_todays_signals(registry, tmp_path):
    plain = run(registry, tmp_path, iterations=2)
    off = run(registry, tmp_path, iterations=2, portfolio={**PORTFOLIO, "enabled": False})
    keep = lambda s: s.model_dump(exclude={"created_at", "run_id", "timings_ms", "theory_results"})  # noqa: E731
    order = lambda signals: sorted(signals, key=lambda s: (s.bar_time, s.symbol))  # noqa: E731 - symbols finish in any order
    assert [keep(s) for s in order(plain)] == [keep(s) for s in order(off)]


def test_a_symbol_late_for_its_iteration_goes_out_alone_sized_for_itself(registry, tmp_path):
    FIRST_STORED.clear()
    raw = {
        "engine": {"symbols": SYMBOLS, "lookback": LOOKBACK, "iteration_timeout_seconds": 0.2},
        "feeds": {"enabled": ["late_replay"]},
        "theories": {"enabled": ["hurst_exponent"]},
        "synthesizer": {"use": "always_buy"},
        "sizing": {"uncalibrated_fraction": 1.0, "target_volatility": 10.0},
        "sinks": {"enabled": ["keeping"]},
        "portfolio": PORTFOLIO,
    }
    pipeline = Pipeline.build(validate_config(raw, registry), registry)
    WRITTEN.clear()
    outcome = pipeline.run(iterations=2)
    assert outcome.stored == len(WRITTEN) and outcome.lost == 0
    first_btc = next(s for s in WRITTEN if s.symbol == "BTC-USD")
    first_eth = next(s for s in WRITTEN if s.symbol == "ETH-USD")
    assert WRITTEN.index(first_btc) < WRITTEN.index(first_eth)  # ETH was still fetching at the deadline
    assert first_btc.position == pytest.approx(PORTFOLIO["max_symbol"])  # alone in its book: weight 1, then the cap
    assert first_eth.position == pytest.approx(1.0)  # late: stored alone, as sized for itself
