"""Known answers of the sizing rule: Kelly's analytic fraction, volatility targeting on GBM, the caps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from v7.core.sizing import SizingConfig, position_for
from v7.core.sizing.rule import annual_volatility, kelly, payoff_ratio

HOURS_PER_YEAR = 365 * 24


def closes_from(log_returns: np.ndarray, start: float = 100.0) -> np.ndarray:
    return start * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))


def test_kelly_is_the_growth_optimal_fraction_of_a_known_bet():
    """A bet won with p paying b per unit lost: the fraction maximising E log(1 + f X) is p − (1 − p)/b."""
    for p, b in ((0.55, 1.0), (0.6, 1.5), (0.4, 2.0), (0.7, 0.8)):
        fractions = np.linspace(0.0, 0.99, 9901)
        growth = p * np.log1p(fractions * b) + (1 - p) * np.log1p(-fractions)
        assert fractions[int(np.argmax(growth))] == pytest.approx(kelly(p, b), abs=2e-4)
    assert kelly(0.5, 1.0) == 0.0 and kelly(0.45, 1.0) < 0


def test_payoff_ratio_from_simulated_bets_converges_to_the_known_payoff():
    """Moves of +u with probability p and −d otherwise: b = (e^u − 1)/(1 − e^−d), so f* is its analytic value;
    moves of random size with E gain / E loss = 2: the estimated b closes in on 2 as the sample grows.
    (Kelly's own convergence, p and b both estimated from simulated bets: tests/sizing/test_kelly.py.)"""
    p, u = 0.55, 0.02
    d = p * u / (1 - p)  # no drift in log price: the path stays in floating-point range
    b_true = math.expm1(u) / -math.expm1(-d)
    moves = np.where(np.random.default_rng(3).random(200_000) < p, u, -d)
    assert kelly(p, payoff_ratio(closes_from(moves), horizon=1)) == pytest.approx(kelly(p, b_true), rel=1e-6)

    def error(n: int, seed: int) -> float:
        rng = np.random.default_rng(seed)
        gains, losses = rng.exponential(0.02, n), rng.exponential(0.01, n)  # E gain / E loss = 2
        simple = np.where(rng.random(n) < 0.34, gains, -losses)  # about no drift in log price
        return abs(payoff_ratio(closes_from(np.log1p(simple)), horizon=1) - 2.0)

    mean_errors = [np.mean([error(n, seed) for seed in range(20)]) for n in (300, 3_000, 30_000)]
    assert mean_errors[0] > mean_errors[1] > mean_errors[2]
    assert error(300_000, 7) < 0.01


def test_payoff_ratio_uses_only_the_window_and_needs_enough_returns():
    close = closes_from(np.random.default_rng(1).normal(0, 0.01, 200))
    assert payoff_ratio(close[:20], horizon=24) is None  # no 24-bar return inside 20 bars
    assert payoff_ratio(close[:40], horizon=24) is None  # 16 returns: too few
    whole = payoff_ratio(close, horizon=24)
    # A short's gains are the long's losses.
    assert payoff_ratio(close, horizon=24, short=True) == pytest.approx(1 / whole)
    assert payoff_ratio(np.full(100, 5.0), horizon=1) is None  # no gains, no losses


def gbm(sigma_annual: float, bars: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sigma = sigma_annual / math.sqrt(HOURS_PER_YEAR)
    return rng.normal(-0.5 * sigma**2, sigma, bars)


@pytest.mark.parametrize("target", [0.2, 0.5])
def test_volatility_targeting_on_gbm_reaches_the_target(target):
    """Hourly GBM whose volatility jumps between 80% and 160% a year: sizing every bar on the bars up to it,
    the position × next return runs at the target annual volatility (within 10%) in both regimes."""
    settings = SizingConfig(target_volatility=target, volatility_bars=168)
    returns = np.concatenate([gbm(0.8, 4000, 1), gbm(1.6, 4000, 2), gbm(0.8, 4000, 3)])
    close = closes_from(returns)
    positions = np.zeros(len(returns))
    for t in range(200, len(returns)):
        sized = position_for("BUY", 0.0, False, close[: t + 1], "1h", None, settings.model_copy(update={"uncalibrated_fraction": 1.0}))
        positions[t] = sized.position
    # The position decided at bar t (its close) earns the return of bar t + 1.
    earned = positions[:-1] * returns[1:]
    for lo, hi in ((400, 4000), (4400, 8000), (8400, 12000)):
        realised = earned[lo:hi].std(ddof=1) * math.sqrt(HOURS_PER_YEAR)
        assert realised == pytest.approx(target, rel=0.10)
    unsized = returns[4400:8000].std(ddof=1) * math.sqrt(HOURS_PER_YEAR)
    assert unsized == pytest.approx(1.6, rel=0.1)


def test_annual_volatility_annualises_with_the_granularity():
    returns = gbm(0.8, 2000, 5) * math.sqrt(24)  # daily bars of the same annual volatility
    assert annual_volatility(closes_from(returns), 2000, "1d") == pytest.approx(0.8, rel=0.1)
    assert annual_volatility(closes_from(returns[:5]), 168, "1d") is None


def test_hold_and_no_signal_are_flat_and_sell_is_flat_without_shorting():
    close = closes_from(gbm(0.6, 500, 9))
    settings = SizingConfig()
    for direction in ("HOLD", None):
        sized = position_for(direction, 0.9, True, close, "1h", 0.01, settings)
        assert sized.position == 0.0
    assert position_for("SELL", 0.9, True, close, "1h", 0.01, settings).position == 0.0
    short = position_for("SELL", 0.9, True, close, "1h", 0.01, settings.model_copy(update={"short_enabled": True}))
    assert short.position < 0
    assert position_for("BUY", 0.9, True, close, "1h", 0.01, settings.model_copy(update={"enabled": False})).position == 0.0


def test_calibrated_position_is_the_documented_product():
    close = closes_from(gbm(1.0, 1000, 11))
    settings = SizingConfig(kelly_fraction=0.5, target_volatility=0.5, loss_budget=1.0)
    sized = position_for("BUY", 0.6, True, close, "1h", 0.02, settings)
    b = payoff_ratio(close, 24)
    vol = annual_volatility(close, 168, "1h")
    expected = 0.5 * kelly(0.6, b) * min(1.0, 0.5 / vol)
    assert sized.position == pytest.approx(expected) and sized.kelly == pytest.approx(0.5 * kelly(0.6, b))
    assert sized.payoff == pytest.approx(b) and sized.volatility_scale == pytest.approx(min(1.0, 0.5 / vol))
    # No edge: f* ≤ 0 sizes nothing.
    assert position_for("BUY", 0.3, True, close, "1h", 0.02, settings).position == 0.0
    # The loss budget binds: |position| × CVaR ≤ loss_budget.
    tight = position_for("BUY", 0.9, True, close, "1h", 0.05, settings.model_copy(update={"loss_budget": 0.001}))
    assert tight.position == pytest.approx(0.001 / 0.05) and tight.loss_limit == pytest.approx(0.02)


def test_the_payoff_of_the_synthesizer_s_past_signals_is_used_when_given_and_the_window_s_otherwise():
    close = closes_from(gbm(1.0, 1000, 13))
    settings = SizingConfig(kelly_fraction=0.5, target_volatility=0.5, loss_budget=1.0)
    window = position_for("BUY", 0.6, True, close, "1h", 0.02, settings)
    b = payoff_ratio(close, 24)
    assert window.payoff == pytest.approx(b) and window.payoff_from == "window" and f"b {b:.2f} from window" in window.rule
    own = position_for("BUY", 0.6, True, close, "1h", 0.02, settings, payoff=1.8)
    assert own.payoff == 1.8 and own.payoff_from == "past signals" and "b 1.80 from past signals" in own.rule
    scale = min(1.0, 0.5 / annual_volatility(close, 168, "1h"))
    assert own.kelly == pytest.approx(0.5 * kelly(0.6, 1.8)) and own.position == pytest.approx(0.5 * kelly(0.6, 1.8) * scale)
    # A SELL's payoff is already the short's (its past SELLs' falls as gains): used as given, not inverted.
    short = position_for("SELL", 0.6, True, close, "1h", 0.02, settings.model_copy(update={"short_enabled": True}), payoff=1.8)
    assert short.position == pytest.approx(-own.position) and short.payoff == 1.8
    # The past signals' b stands when the window is too short for its own (20 closes: no 24-bar return).
    assert position_for("BUY", 0.6, True, close[-20:], "1h", 0.02, settings).position == 0.0
    assert position_for("BUY", 0.6, True, close[-20:], "1h", 0.02, settings, payoff=1.8).position > 0
    # A small b makes the same probability no edge.
    poor = position_for("BUY", 0.6, True, close, "1h", 0.02, settings, payoff=0.5)
    assert poor.position == 0.0 and poor.kelly == 0.0 and "(b from past signals)" in poor.rule
    # An uncalibrated synthesizer's payoff changes nothing: it gets the fixed fraction.
    fixed = position_for("BUY", 0.6, False, close, "1h", 0.02, settings, payoff=1.8)
    assert fixed.payoff is None and fixed.payoff_from is None and fixed.position == pytest.approx(settings.uncalibrated_fraction * scale)


def test_uncalibrated_confidence_never_gets_a_kelly_size():
    close = closes_from(gbm(1.0, 1000, 12))
    settings = SizingConfig(uncalibrated_fraction=0.1, loss_budget=1.0)
    low = position_for("BUY", 0.1, False, close, "1h", 0.02, settings)
    high = position_for("BUY", 0.99, False, close, "1h", 0.02, settings)
    assert low.position == high.position == pytest.approx(0.1 * low.volatility_scale)
    assert low.kelly is None and low.probability is None and "uncalibrated" in low.rule


def test_caps_hold_and_shorting_off_is_never_negative_over_random_inputs():
    rng = np.random.default_rng(2024)
    for _ in range(400):
        settings = SizingConfig(
            kelly_fraction=float(rng.uniform(0.01, 1)), max_position=float(rng.uniform(0.01, 1)),
            horizon=int(rng.integers(1, 48)), target_volatility=float(rng.uniform(0.01, 5)),
            volatility_bars=int(rng.integers(10, 400)), max_volatility_scale=float(rng.uniform(0.1, 10)),
            loss_budget=float(rng.uniform(0.001, 1)), uncalibrated_fraction=float(rng.uniform(0, 1)),
            short_enabled=bool(rng.integers(0, 2)),
        )
        close = closes_from(rng.normal(0, float(rng.uniform(1e-4, 0.1)), int(rng.integers(5, 600))))
        direction = str(rng.choice(["BUY", "SELL", "HOLD"]))
        cvar = None if rng.random() < 0.3 else float(rng.uniform(0, 0.5))
        sized = position_for(direction, float(rng.uniform(0, 1)), bool(rng.integers(0, 2)), close, "1h", cvar, settings)
        assert abs(sized.position) <= settings.max_position + 1e-12
        if cvar:
            assert abs(sized.position) * cvar <= settings.loss_budget + 1e-12
        if not settings.short_enabled or direction != "SELL":
            assert sized.position >= 0
        if direction == "HOLD":
            assert sized.position == 0


def test_no_position_when_the_risk_theory_is_enabled_but_gave_no_loss():
    close = closes_from(gbm(1.0, 500, 3))
    sized = position_for("BUY", 0.9, True, close, "1h", None, SizingConfig(), risk_missing="monte_carlo abstained")
    assert sized.position == 0.0 and "loss budget" in sized.rule


def test_config_errors_name_the_field_and_value():
    from v7.core.config import ConfigError, validate_config
    from v7.core.registry import load_registry

    with pytest.raises(ConfigError) as caught:
        validate_config({"sizing": {"kelly_fraction": 1.5, "max_position": 2, "typo": 1}}, load_registry())
    message = str(caught.value)
    assert "sizing.kelly_fraction: got 1.5" in message and "sizing.max_position: got 2" in message and "sizing.typo: unknown key" in message
