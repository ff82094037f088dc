"""Markov regime: the causal filter, the known-answer regime test, the fitting safeguards and the refit schedule."""

from __future__ import annotations

import dataclasses
import pickle
import threading

import numpy as np
import pytest

import synthetic
from v7 import InsufficientData
from v7.plugins.theories import markov_regime
from v7.plugins.theories.markov_regime import (
    ANCHOR_CACHE_SIZE, HmmParams, MarkovRegime, fit_em, forward_filter, standardise, starting_points,
)
from v7 import window_closes

SIGMAS = (0.01, 0.03)
HOUR, DAY = 3600, 86_400
MIDNIGHT = 19_676 * DAY  # 2023-11-15 00:00 UTC


def hourly(candles, last_hour: int = 13, day: int = MIDNIGHT):
    """The same candles on real hourly timestamps (multiples of 3600 s), the last one at `last_hour`:00 UTC of `day`.

    `synthetic.series` stamps bars START_TIME + 3600·i with START_TIME = 1,600,000,000, which is not an
    hour boundary: no bar would ever be an anchor there, and the refit schedule would not be exercised.
    """
    n = len(candles)
    return dataclasses.replace(candles, timestamp=day + HOUR * (last_hour - (n - 1) + np.arange(n, dtype=np.int64)))


def prices(returns: np.ndarray, start: float = 100.0, last_hour: int = 13):
    return hourly(synthetic.series(synthetic.prices_from_log_returns(returns, start)), last_hour)


def recording(theory: MarkovRegime) -> list[str]:
    """Make `theory` record how each bar was fitted ("full", "anchor", "warm", "warm_failed")."""
    hows: list[str] = []
    original = theory.regime_fit

    def spy(*args):
        fit = original(*args)
        hows.append(fit.how)
        return fit

    theory.regime_fit = spy
    return hows


def true_params(p_stay: float) -> HmmParams:
    return HmmParams(
        np.array([0.5, 0.5]), np.array([[p_stay, 1 - p_stay], [1 - p_stay, p_stay]]), np.zeros(2), np.square(SIGMAS)
    )


def regime_accuracy(p_stay: float, seeds: range) -> tuple[float, float, float]:
    """(fitted accuracy, accuracy of the filter given the TRUE parameters, share with state_volatility within 25%)."""
    theory = MarkovRegime()
    hows = recording(theory)
    window = theory.config.window
    fitted = oracle = volatility = 0
    for seed in seeds:
        returns, states = synthetic.two_state_regime(1000, seed, SIGMAS, p_stay)
        # Default settings, hourly stamps: the last bar is 0..23 bars after the 00:00 anchor, so almost
        # every seed is answered by a warm start from the anchor's fit.
        finding = theory.analyze(prices(returns, last_hour=seed % 24))
        truth = "stressed" if states[-1] == 1 else "calm"
        fitted += finding.label.split("_")[0] == truth
        volatility += abs(finding.metrics["state_volatility"] / SIGMAS[states[-1]] - 1) <= 0.25
        p_calm, p_stressed, _ = forward_filter(returns[-window:], true_params(p_stay))
        oracle += (p_stressed > p_calm) == (states[-1] == 1)
    assert hows.count("warm") >= 0.85 * len(seeds), hows
    return fitted / len(seeds), oracle / len(seeds), volatility / len(seeds)


def test_known_answer_sticky_chain():
    """Calm 1% / stressed 3%, p_stay = 0.99 (regimes last ~100 bars): the current regime is right >= 90%."""
    fitted, oracle, volatility = regime_accuracy(0.99, range(200))
    assert fitted >= 0.90, fitted
    assert volatility >= 0.90, volatility
    # As good as the optimal filter that knows the true parameters, up to a few seeds.
    assert fitted >= oracle - 0.03, (fitted, oracle)


def test_less_sticky_chain_stays_near_the_bayes_limit():
    """At p_stay = 0.98 even the true-parameter filter misses switches in the last bars (~93% at best)."""
    fitted, oracle, _ = regime_accuracy(0.98, range(100))
    assert fitted >= oracle - 0.04, (fitted, oracle)
    assert fitted >= 0.85


def test_forward_filter_matches_hmmlearn_and_is_causal():
    returns, _ = synthetic.two_state_regime(600, 3, SIGMAS, 0.98)
    x = (returns - returns.mean()) / returns.std()
    params = fit_em(x, starting_points(x, 1, 7)[0], 200, 1e-2).params
    model = synthetic.hmmlearn_model(params)
    X = x.reshape(-1, 1)
    p0, p1, log_likelihood = forward_filter(x, params)
    assert log_likelihood == pytest.approx(model.score(X), rel=1e-10)
    # The last bar has no future: there filtered == smoothed.
    assert [p0, p1] == pytest.approx(model.predict_proba(X)[-1].tolist(), abs=1e-9)
    smoothed = model.predict_proba(X)
    differs = 0
    for t in (100, 250, 400, 550):
        q0, q1, _ = forward_filter(x[: t + 1], params)
        assert [q0, q1] == pytest.approx(model.predict_proba(X[: t + 1])[-1].tolist(), abs=1e-9)
        differs += abs(q1 - smoothed[t, 1]) > 1e-6  # predict_proba over the whole window used later bars
    assert differs >= 1


def test_converged_means_iter_below_n_iter(monkeypatch):
    """EM that runs out of iterations reports n_iter (as hmmlearn's `monitor_.iter`); the theory checks `iter < n_iter`."""
    returns, _ = synthetic.two_state_regime(600, 1, SIGMAS, 0.99)
    x = (returns - returns.mean()) / returns.std()
    run = fit_em(x, starting_points(x, 1, 7)[0], 2, 0.0)
    assert run.iterations == 2 and len(run.history) == 2

    real = markov_regime.fit_em
    # EM that never meets its tolerance: every fit runs to n_iter and must be rejected.
    monkeypatch.setattr(markov_regime, "fit_em", lambda x, start, n_iter, tol: real(x, start, n_iter, -np.inf))
    with pytest.raises(InsufficientData, match="did not converge"):
        MarkovRegime().analyze(prices(returns))
    with pytest.raises(InsufficientData, match="did not converge"):
        MarkovRegime(MarkovRegime.Config(screen_iterations=0)).analyze(prices(returns))


def test_screened_starts_agree_with_full_restarts(btc_full):
    """Short-run screening (default) finds the optimum that running every start to convergence finds.

    Where the likelihood is flat (an ambiguous last bar), EM stopping at tol = 0.01 leaves the filtered
    probability uncertain by a few hundredths: the two methods then stop at slightly different points.
    """
    quick = MarkovRegime()
    full = MarkovRegime(MarkovRegime.Config(restarts=6, screen_iterations=0))
    cases = [prices(synthetic.two_state_regime(1000, s, SIGMAS, 0.99)[0]) for s in range(5)]
    cases += [btc_full.slice(end - 500, end) for end in range(2000, 20000, 4000)]
    for candles in cases:
        a, b = quick.analyze(candles), full.analyze(candles)
        assert a.label == b.label
        assert a.metrics["log_likelihood"] == pytest.approx(b.metrics["log_likelihood"], abs=0.05)
        assert a.metrics["regime_probability"] == pytest.approx(b.metrics["regime_probability"], abs=0.05)
        assert a.metrics["state_volatility"] == pytest.approx(b.metrics["state_volatility"], rel=0.05)


def test_states_are_named_by_volatility_and_metrics_are_consistent():
    returns, states = synthetic.two_state_regime(1000, 8, SIGMAS, 0.99)
    f = MarkovRegime().analyze(prices(returns))
    m = f.metrics
    assert m["stressed_volatility"] > m["calm_volatility"]
    assert m["calm_volatility"] == pytest.approx(0.01, rel=0.25) and m["stressed_volatility"] == pytest.approx(0.03, rel=0.25)
    assert 0.5 <= m["regime_probability"] <= 1.0
    assert m["state_volatility"] == (m["stressed_volatility"] if f.label.startswith("stressed") else m["calm_volatility"])
    assert 30 < m["expected_duration"] < 1000  # true 100 bars
    assert f.bias is None  # equal state means: no direction


def test_trend_only_when_state_means_differ_significantly():
    trends = []
    for seed in range(10):
        returns, _ = synthetic.two_state_regime(1000, 50 + seed, SIGMAS, 0.99, means=(0.002, -0.008))
        f = MarkovRegime().analyze(prices(returns))
        if abs(f.metrics["mean_difference_t"]) >= 3.0:
            assert f.label.endswith("trend") and f.bias is not None
            assert np.sign(f.bias) == np.sign(f.metrics["state_mean"])
            trends.append(f.label)
        else:
            assert f.bias is None and not f.label.endswith("trend")
    assert len(trends) >= 5
    quiet = [MarkovRegime().analyze(prices(synthetic.two_state_regime(1000, 70 + s, SIGMAS, 0.99)[0])) for s in range(10)]
    assert sum(f.bias is not None for f in quiet) <= 1


@pytest.mark.parametrize("factor", [60000.0, 1e-4])
def test_scale_invariant(factor):
    returns, _ = synthetic.two_state_regime(1000, 12, SIGMAS, 0.99)
    a = MarkovRegime().analyze(prices(returns))
    b = MarkovRegime().analyze(prices(returns, start=factor))
    assert a.label == b.label
    for key in ("regime_probability", "state_volatility", "expected_duration"):
        assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-6)


# -- the refit schedule: full fit at anchor bars, warm starts in between ----------------------------

LOOKBACK = 1000  # candles the backtest hands the theory at every bar (config.toml)


def bar_at(btc_full, hour: int, days_back: int = 100) -> int:
    """Index of a BTC bar at `hour`:00 UTC about `days_back` days before the end of the bundled history."""
    t = len(btc_full) - 1 - 24 * days_back
    return t + (hour - int(btc_full.timestamp[t] % DAY) // HOUR) % 24


def window_at(btc_full, t: int, lookback: int = LOOKBACK):
    return btc_full.slice(t + 1 - lookback, t + 1)


def fit_of(theory: MarkovRegime, candles):
    _, x, centre, scale = standardise(window_closes(candles, theory.config.window, 50, theory.config))
    return theory.regime_fit(candles, x, centre, scale)


def stamps(last: int, step: int = HOUR, count: int = 600) -> np.ndarray:
    return last - step * np.arange(count - 1, -1, -1, dtype=np.int64)


def test_anchor_rule():
    """The anchor is the last bar among the last `refit_every_bars` whose timestamp is a multiple of
    `refit_every_bars` × the bar length (the median step of the window's timestamps)."""
    theory = MarkovRegime()  # refit_every_bars = 24: hourly bars → 00:00 UTC
    assert theory.config.refit_every_bars == 24
    assert theory.anchor_bars_ago(stamps(MIDNIGHT)) == 0
    assert theory.anchor_bars_ago(stamps(MIDNIGHT + HOUR)) == 1
    assert theory.anchor_bars_ago(stamps(MIDNIGHT + 23 * HOUR)) == 23
    assert theory.anchor_bars_ago(stamps(MIDNIGHT + DAY)) == 0
    # A missing bar after midnight: the step stays one hour (median) and the anchor is still 00:00.
    hourly_stamps = stamps(MIDNIGHT + 5 * HOUR)
    assert theory.anchor_bars_ago(np.delete(hourly_stamps, np.flatnonzero(hourly_stamps == MIDNIGHT + 2 * HOUR))) == 4
    # The 00:00 bar itself missing: no anchor among the last 24 bars → full fit at every bar of that day.
    assert theory.anchor_bars_ago(np.delete(hourly_stamps, np.flatnonzero(hourly_stamps == MIDNIGHT))) is None
    # Stamps off the hour (synthetic.START_TIME is 1600 s past an hour): never an anchor.
    assert theory.anchor_bars_ago(stamps(MIDNIGHT + 13 * HOUR + 1600)) is None
    assert theory.anchor_bars_ago(synthetic.series(np.linspace(100.0, 110.0, 600)).timestamp) is None
    # Other bar lengths: 15-minute bars with 24 → every 6 hours; 4-hour bars with 6 → daily; daily bars with 7 → weekly (epoch Thursdays).
    assert theory.anchor_bars_ago(stamps(MIDNIGHT + 7 * HOUR + 1800, step=900)) == 6
    assert MarkovRegime(MarkovRegime.Config(refit_every_bars=6)).anchor_bars_ago(stamps(MIDNIGHT + 16 * HOUR, step=4 * HOUR)) == 4
    assert MarkovRegime(MarkovRegime.Config(refit_every_bars=7)).anchor_bars_ago(stamps(MIDNIGHT, step=DAY)) == (MIDNIGHT // DAY) % 7
    # Only the window's stamps set the bar length: older 4-hour bars before 600 hourly ones change nothing.
    mixed = np.concatenate([stamps(MIDNIGHT + 9 * HOUR - 600 * HOUR, step=4 * HOUR, count=2000), stamps(MIDNIGHT + 9 * HOUR)])
    assert theory.anchor_bars_ago(mixed) == 9
    assert MarkovRegime(MarkovRegime.Config(refit_every_bars=0)).anchor_bars_ago(stamps(MIDNIGHT + HOUR)) is None


def test_the_anchor_is_fitted_on_the_window_ending_at_the_anchor(btc_full):
    theory, full = MarkovRegime(), MarkovRegime(MarkovRegime.Config(refit_every_bars=0))
    t = bar_at(btc_full, 13)
    fit = fit_of(theory, window_at(btc_full, t))
    assert (fit.how, fit.anchor_bars_ago) == ("warm", 13)
    assert fit.iterations < 20  # a warm start needs a few EM steps, the full fit ~20 (screening included)
    (key, anchor), = theory._anchor_fits.items()
    assert key[0] == btc_full.timestamp[t - 13] and key[0] % DAY == 0 and key[1] == theory.config.window
    # Exactly the full multi-start fit of the 500 bars ending at the anchor (bar t - 13).
    at_anchor = window_at(btc_full, t - 13)
    reference = fit_of(full, at_anchor)
    assert reference.how == "full"
    for got, want in zip(anchor.params, reference.params):
        assert np.array_equal(got, want)
    assert anchor.iterations == reference.iterations
    # At the anchor bar itself the answer is the full fit's, bit for bit (cache hit or not).
    assert theory.analyze(at_anchor) == full.analyze(at_anchor) == MarkovRegime().analyze(at_anchor)
    assert fit_of(theory, at_anchor).how == "anchor"


def test_warm_start_agrees_with_the_full_fit_on_real_data(btc_full):
    """300 consecutive hourly BTC bars (the bundled history's last), lookback 1,000 as in the backtest:
    the regime label of the warm-started fit vs. the full multi-start fit at every bar."""
    warm, full = MarkovRegime(), MarkovRegime(MarkovRegime.Config(refit_every_bars=0))
    hows = recording(warm)
    n = len(btc_full)
    agree, differences = 0, []
    for t in range(n - 300, n):
        candles = window_at(btc_full, t)
        a, b = warm.analyze(candles), full.analyze(candles)
        agree += a.label.split("_")[0] == b.label.split("_")[0]
        differences.append(abs(a.metrics["stressed_probability"] - b.metrics["stressed_probability"]))
        if a.label.split("_")[0] != b.label.split("_")[0]:  # only where the regime is a coin flip
            assert max(a.metrics["regime_probability"], b.metrics["regime_probability"]) < 0.75
    print(f"\nwarm start vs. full fit on 300 BTC bars: regime label agrees on {agree / 3:.1f}%; "
          f"|Δ stressed_probability| median {np.median(differences):.4f}, max {max(differences):.3f}; fits: "
          + ", ".join(f"{h} {hows.count(h)}" for h in ("anchor", "warm", "warm_failed", "full")))
    assert agree >= 0.95 * 300
    assert hows.count("warm") >= 270 and hows.count("anchor") >= 12
    assert np.median(differences) < 0.01


def test_cache_hit_and_miss_give_identical_answers(btc_full):
    """A pure function of the candles: sequential bars on one instance (cache hits) equal fresh instances
    (misses), in any order, and equal the same instance after its cache is cleared."""
    t0 = bar_at(btc_full, 22)
    bars = list(range(t0, t0 + 28))  # 22:00 … 01:00 the day after next: two anchors, k = 0, 1, …, 23
    sequential = MarkovRegime()
    hits = [sequential.analyze(window_at(btc_full, t)) for t in bars]
    assert sequential.cached_anchors == 3
    fresh = [MarkovRegime().analyze(window_at(btc_full, t)) for t in bars]
    backwards = MarkovRegime()
    reverse = [backwards.analyze(window_at(btc_full, t)) for t in reversed(bars)][::-1]
    sequential.clear_cache()
    assert sequential.cached_anchors == 0
    cleared = [sequential.analyze(window_at(btc_full, t)) for t in bars[::5]]
    assert hits == fresh == reverse
    assert cleared == hits[::5]
    assert [f.model_dump_json() for f in hits] == [f.model_dump_json() for f in fresh]
    again = [sequential.analyze(window_at(btc_full, t)) for t in bars]  # all hits now, the anchor bars too
    assert again == hits


def test_anchor_cache_is_bounded(btc_full, monkeypatch):
    theory = MarkovRegime()
    for i in range(ANCHOR_CACHE_SIZE + 40):  # the bound itself, with cheap dummy entries
        theory._remember(("dummy", i), None)
    assert ANCHOR_CACHE_SIZE == 256 and theory.cached_anchors == ANCHOR_CACHE_SIZE
    assert ("dummy", 39) not in theory._anchor_fits and ("dummy", 40) in theory._anchor_fits
    # Least recently USED goes first, and answers do not depend on what was dropped.
    monkeypatch.setattr(markov_regime, "ANCHOR_CACHE_SIZE", 3)
    theory = MarkovRegime()
    days = [bar_at(btc_full, 1, days_back=d) for d in (10, 11, 12, 13)]
    first = theory.analyze(window_at(btc_full, days[0]))
    for t in days[1:3]:
        theory.analyze(window_at(btc_full, t))
    assert theory.analyze(window_at(btc_full, days[0])) == first  # a hit: day 0 is now the most recent
    theory.analyze(window_at(btc_full, days[3]))  # drops days[1]
    assert theory.cached_anchors == 3
    anchors = {key[0] for key in theory._anchor_fits}
    assert anchors == {int(btc_full.timestamp[t - 1]) for t in (days[0], days[2], days[3])}
    assert theory.analyze(window_at(btc_full, days[1])) == MarkovRegime().analyze(window_at(btc_full, days[1]))


def test_short_history_falls_back_to_the_full_fit(btc_full):
    """Fewer than window + (bars since the anchor) candles: the anchor window is not in the candles given,
    so the current window gets the full fit and the answer equals the refit_every_bars = 0 answer."""
    theory, full = MarkovRegime(), MarkovRegime(MarkovRegime.Config(refit_every_bars=0))
    window = theory.config.window
    t = bar_at(btc_full, 13)
    enough = window_at(btc_full, t, window + 13)
    assert fit_of(MarkovRegime(), enough).how == "warm"
    assert MarkovRegime().analyze(enough) == theory.analyze(window_at(btc_full, t))  # the older bars do not matter
    for lookback in (window + 12, window, 300):
        short = window_at(btc_full, t, lookback)
        assert fit_of(theory, short).how == "full"
        assert theory.analyze(short) == full.analyze(short)


def test_refit_every_bars_zero_is_the_full_fit_at_every_bar(btc_full):
    theory = MarkovRegime(MarkovRegime.Config(refit_every_bars=0))
    hows = recording(theory)
    t = bar_at(btc_full, 0)
    for k in range(3):
        theory.analyze(window_at(btc_full, t + k))
    assert hows == ["full"] * 3 and theory.cached_anchors == 0


def test_failed_warm_start_falls_back_to_the_full_fit(btc_full, monkeypatch):
    candles = window_at(btc_full, bar_at(btc_full, 7))
    expected = MarkovRegime(MarkovRegime.Config(refit_every_bars=0)).analyze(candles)
    n_iter = MarkovRegime().config.n_iter

    # EM that breaks down from the anchor's states (hmmlearn rejects the start).
    bad = HmmParams(np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.1, 0.9]]), np.zeros(2), np.array([-1.0, -1.0]))
    monkeypatch.setattr(markov_regime, "warm_start", lambda anchor, centre, scale: bad)
    theory = MarkovRegime()
    assert fit_of(theory, candles).how == "warm_failed"
    assert theory.analyze(candles) == expected
    monkeypatch.undo()

    # EM from the anchor's states that does not converge within n_iter.
    marked = []
    real_start, real_em = markov_regime.warm_start, markov_regime.fit_em

    def start(*args):
        marked.append(real_start(*args))
        return marked[-1]

    monkeypatch.setattr(markov_regime, "warm_start", start)
    monkeypatch.setattr(markov_regime, "fit_em", lambda x, s, n, tol: real_em(x, s, n, -np.inf if any(s is m for m in marked) else tol))
    theory = MarkovRegime()
    fit = fit_of(theory, candles)
    assert fit.how == "warm_failed" and fit.iterations == n_iter + expected.metrics["em_iterations"]
    got = theory.analyze(candles)
    assert got.metrics.pop("em_iterations") == n_iter + expected.metrics.pop("em_iterations")
    assert got == expected


def test_one_instance_shared_by_threads(btc_full):
    """The engine calls one theory instance from several threads: the locked cache must not mix answers."""
    t0 = bar_at(btc_full, 20)
    bars = list(range(t0, t0 + 12))
    expected = {t: MarkovRegime().analyze(window_at(btc_full, t)) for t in bars}
    shared = MarkovRegime()
    got: dict[int, object] = {}
    lock = threading.Lock()

    def work(mine):
        for t in mine:
            finding = shared.analyze(window_at(btc_full, t))
            with lock:
                assert got.setdefault(t, finding) == finding

    threads = [threading.Thread(target=work, args=(bars[i::2] + bars[::-1],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert got == expected


def test_picklable_with_an_empty_cache(btc_candles):
    theory = MarkovRegime()
    first = theory.analyze(btc_candles)
    copy = pickle.loads(pickle.dumps(theory))
    assert copy.cached_anchors == 0 and theory.cached_anchors == 1
    assert copy.analyze(btc_candles) == first
