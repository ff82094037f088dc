"""The theory contract (issue #3), checked for every built-in theory through the core's `run_theory`."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from pydantic import ValidationError

import synthetic
from v7 import Theory, TheoryFinding
from v7.core.engine import run_theory
from v7.plugins.theories.hurst_exponent import HurstExponent, random_walk_null
from v7.plugins.theories.kalman_filter import KalmanFilter
from v7.plugins.theories.markov_regime import MarkovRegime
from v7.plugins.theories.monte_carlo import MonteCarlo
from v7.plugins.theories.shannon_entropy import ShannonEntropy, iid_null

THEORIES: list[type[Theory]] = [HurstExponent, ShannonEntropy, MarkovRegime, KalmanFilter, MonteCarlo]
HEAVY = ("numpy", "scipy", "pandas", "hurst", "hmmlearn", "pykalman", "EntropyHub", "sklearn")
ABSTAIN = ("insufficient_data", "error")
ids = [t.name for t in THEORIES]


def random_walk_candles(n: int = 1000, seed: int = 11, start: float = 100.0):
    return synthetic.series(synthetic.prices_from_log_returns(synthetic.white_noise(n - 1, seed), start))


def keep_stamps(candles, close, stamps=None):
    """`synthetic.with_closes` with the candles' own (real, hourly) timestamps, or `stamps`.

    `with_closes` restamps bars from synthetic.START_TIME, which is off the hour: markov_regime's refit
    schedule anchors on timestamps, so a causality check must change the closes and nothing else.
    """
    other = synthetic.with_closes(candles, close)
    return dataclasses.replace(other, timestamp=np.asarray(candles.timestamp if stamps is None else stamps, dtype=np.int64).copy())


def extended_back(recent, older_close):
    """`recent` with `older_close` prepended as the hourly bars before it."""
    m = len(older_close)
    stamps = np.concatenate([recent.timestamp[0] - 3600 * np.arange(m, 0, -1), recent.timestamp])
    return keep_stamps(recent, np.concatenate([older_close, recent.close]), stamps)


@pytest.fixture(scope="module")
def walk():
    return random_walk_candles()


def assert_abstains(theory: Theory, candles, why: str) -> None:
    result = run_theory(theory, candles, timeout=30)
    assert result.status in ABSTAIN, f"{theory.name} answered on {why}: {result}"
    assert result.message, f"{theory.name} abstained on {why} without saying why"
    assert result.bias is None and result.metrics == {}


# -- the plugin surface -------------------------------------------------------------------------

# Theories whose findings never carry a bias (documented in docs/theories.md).
NOT_DIRECTIONAL = {"shannon_entropy", "monte_carlo"}


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_plugin_surface(cls):
    module = sys.modules[cls.__module__]
    assert cls.name == cls.__module__.rsplit(".", 1)[1]
    assert cls.version == "1.0"
    assert cls.default_min_candles >= 2
    registered = []
    module.register_theories(registered.append)
    assert registered == [cls]
    for field_name, field in cls.Config.model_fields.items():
        assert field.description, f"{cls.name}.{field_name} has no description"
        assert not field.is_required(), f"{cls.name}.{field_name} has no default"
    with pytest.raises(ValidationError):
        cls.Config(no_such_option=1)
    assert cls().min_candles == cls.default_min_candles
    assert cls(cls.Config(min_candles=300)).min_candles == 300


def test_registry_finds_all_five_by_entry_point():
    from v7.core.registry import load_registry

    registry = load_registry()
    for cls in THEORIES:
        assert registry.get("theory", cls.name).cls is cls


def test_importing_the_plugins_loads_no_heavy_library():
    code = (
        "import sys, json, v7\n"
        "before = set(sys.modules)\n"
        + "".join(f"import v7.plugins.theories.{cls.name}\n" for cls in THEORIES)
        + f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules and m not in before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("cls", [HurstExponent, KalmanFilter, MonteCarlo, ShannonEntropy], ids=lambda c: c.name)
def test_config_cross_field_checks(cls):
    bad = {
        "hurst_exponent": {"min_lag": 5, "max_lag": 5},
        "kalman_filter": {"up_z": 2.0, "strong_z": 1.0},
        "monte_carlo": {"moderate_var": 0.03, "high_var": 0.02},
        "shannon_entropy": {"weak_z": 5.0, "predictable_z": 4.0},
    }[cls.name]
    with pytest.raises(ValidationError):
        cls.Config(**bad)


# -- answers and abstentions --------------------------------------------------------------------


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_answers_on_a_random_walk(cls, walk):
    result = run_theory(cls(), walk, timeout=30)
    assert result.status == "ok", result.message
    assert result.theory == cls.name and result.version == "1.0"
    assert 0.0 <= result.confidence <= 1.0
    assert result.label and result.interpretation
    assert all(np.isfinite(v) for v in result.metrics.values())
    if result.bias is not None:
        assert -1.0 <= result.bias <= 1.0
    if cls.name in NOT_DIRECTIONAL:
        assert result.bias is None
    elif cls is not MarkovRegime:  # the regime model gives a bias only for significantly different state means
        assert result.bias is not None


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_too_few_candles(cls, walk):
    short = walk.tail(cls.default_min_candles - 1)
    result = run_theory(cls(), short, timeout=30)
    assert result.status == "insufficient_data" and result.message
    # Below the theory's own floor even when the configured minimum lets it through.
    assert_abstains(cls(cls.Config(min_candles=2)), walk.tail(5), "5 candles")


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_flat_series(cls):
    assert_abstains(cls(), synthetic.series(np.full(1000, 42.0)), "a flat series")


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_stale_series(cls, walk):
    close = walk.close.copy()
    close[-30:] = close[-31]
    assert_abstains(cls(), synthetic.with_closes(walk, close), "a stale series")


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_mostly_unchanged_series(cls, walk):
    close = np.repeat(walk.close[::4], 4)[:1000]  # the close moves on one bar in four
    assert_abstains(cls(), synthetic.with_closes(walk, close), "a mostly unchanged series")


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_constant_ratio_ramp(cls):
    assert_abstains(cls(), synthetic.series(100.0 * 1.001 ** np.arange(1000)), "a noiseless ramp")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 0.0, -5.0], ids=["nan", "inf", "-inf", "zero", "negative"])
@pytest.mark.parametrize("where", [-1, -50], ids=["last", "inside"])
@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_broken_closes(cls, walk, bad, where):
    close = walk.close.copy()
    close[where] = bad
    assert_abstains(cls(), synthetic.with_closes(walk, close), f"close {bad} at {where}")


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_real_data(cls, btc_candles):
    result = run_theory(cls(), btc_candles, timeout=30)
    assert result.status == "ok", result.message
    if result.bias is not None:
        assert -1.0 <= result.bias <= 1.0
    section = cls().prompt_section(result)
    assert section and 1 <= len(section.splitlines()) <= 3 and len(section) < 400


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_no_prompt_section_for_an_abstention(cls):
    result = run_theory(cls(), synthetic.series(np.full(1000, 42.0)), timeout=30)
    assert cls().prompt_section(result) is None


def test_v7_analyze_on_bundled_data(btc_frame):
    import v7

    assert len(btc_frame) == 1000
    results = v7.analyze(btc_frame, symbol="BTC-USD")
    assert [r.theory for r in results] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
    assert all(r.status == "ok" for r in results), [r.message for r in results]


# -- causal, from the end, deterministic, no global state -------------------------------------


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_causal(cls, btc_full):
    candles = btc_full.tail(1600)
    theory = cls()
    for t in (1099, 1399):
        changed = candles.close.copy()
        rng = np.random.default_rng(t)
        changed[t + 1:] *= np.exp(np.cumsum(rng.normal(0.0, 0.05, changed.shape[0] - t - 1)))  # a different future
        other = keep_stamps(candles, changed)
        assert np.array_equal(other.close[: t + 1], candles.close[: t + 1])
        assert np.array_equal(other.timestamp, candles.timestamp)
        before = theory.analyze(candles.slice(0, t + 1))
        after = theory.analyze(other.slice(0, t + 1))
        assert before == after


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_window_is_the_end_of_the_series(cls, btc_full):
    """Different old history before the last 1,000 bars changes nothing (every window is <= 1,000; markov_regime
    reaches back at most window + refit_every_bars - 1 = 523 bars, see the next test)."""
    theory = cls()
    recent = btc_full.tail(1000)
    a = extended_back(recent, btc_full.close[:300])
    b = extended_back(recent, btc_full.close[5000:5300] * 3.0)
    assert theory.analyze(a) == theory.analyze(b) == theory.analyze(recent)


@pytest.mark.parametrize("every", [24, 0, 6])
def test_markov_regime_reaches_back_window_plus_refit_bars(btc_full, every):
    """With the refit schedule the answer at bar t depends on the `window` bars ending at the last anchor too
    (up to `refit_every_bars` - 1 bars before t): history more than window + refit_every_bars bars back
    changes nothing, while a bar between the current window and the anchor window's start may. With
    `refit_every_bars = 0` the old property holds exactly: nothing before the window matters."""
    theory = MarkovRegime(MarkovRegime.Config(refit_every_bars=every))
    window = theory.config.window
    reach = window + every
    for hour in (every - 1, 0) if every else (13,):  # the farthest anchor, and the anchor bar itself
        end = len(btc_full) - 1 - 24 * 50
        end += (hour - int(btc_full.timestamp[end] % 86400) // 3600) % 24
        recent = btc_full.slice(end + 1 - 1000, end + 1)
        ago = theory.anchor_bars_ago(recent.timestamp)
        assert ago == (hour if every else None)
        expected = theory.analyze(recent)
        rng = np.random.default_rng(hour)
        older = recent.close.copy()
        older[: 1000 - reach] *= np.exp(rng.normal(0.0, 0.05, 1000 - reach))  # a different past beyond the reach
        assert theory.analyze(keep_stamps(recent, older)) == expected
        assert theory.analyze(recent.tail(reach)) == expected  # no history at all beyond the reach
        assert theory.analyze(extended_back(recent, btc_full.close[:300] * 2.0)) == expected
        if ago:  # a bar inside the anchor window, before the current window, does matter
            inside = recent.close.copy()
            inside[1000 - window - 1] *= 1.05
            changed = theory.analyze(keep_stamps(recent, inside))
            assert changed != expected
            assert changed.label.split("_")[0] == expected.label.split("_")[0]  # ...only a little


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_deterministic(cls, btc_candles):
    first = cls().analyze(btc_candles)
    random_walk_null.cache_clear()
    iid_null.cache_clear()
    again = cls().analyze(btc_candles)
    same_instance = cls().analyze(btc_candles)
    assert first == again == same_instance
    assert first.model_dump_json() == again.model_dump_json()
    if cls is MarkovRegime:  # its anchor fits are cached on the instance: a hit, a miss and a cleared cache agree
        theory = MarkovRegime()
        miss, hit = theory.analyze(btc_candles), theory.analyze(btc_candles)
        theory.clear_cache()
        assert miss == hit == theory.analyze(btc_candles) == first


@pytest.mark.parametrize("cls", THEORIES, ids=ids)
def test_no_global_state_change_and_no_warnings(cls, btc_candles, walk):
    hmm_loggers = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
                   for name in ("hmmlearn", "hmmlearn.base", "hmmlearn.hmm")}
    inputs = [btc_candles, walk, synthetic.series(np.full(400, 3.0))]
    close = walk.close.copy()
    close[-3] = np.nan
    inputs.append(synthetic.with_closes(walk, close))
    err, filters, state = np.geterr(), list(warnings.filters), np.random.get_state()
    for candles in inputs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cls().analyze(candles)
            except Exception as exc:  # only the abstention is allowed
                from v7 import InsufficientData

                assert isinstance(exc, InsufficientData), exc
        assert caught == [], [str(w.message) for w in caught]
        assert np.geterr() == err
        assert warnings.filters == filters
        after = np.random.get_state()
        assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    for name, (level, handlers) in hmm_loggers.items():
        assert logging.getLogger(name).level == level and logging.getLogger(name).handlers == handlers


def test_theories_agree_across_threads(btc_candles):
    """Theories run in worker threads, several symbols at once: shared caches must not mix answers up."""
    random_walk_null.cache_clear()
    iid_null.cache_clear()
    inputs = [btc_candles, random_walk_candles(seed=3), random_walk_candles(seed=4, start=0.01)]
    expected = {(cls.name, i): cls().analyze(c) for cls in THEORIES for i, c in enumerate(inputs)}
    random_walk_null.cache_clear()
    iid_null.cache_clear()
    got: dict[tuple[str, int], TheoryFinding] = {}
    lock = threading.Lock()

    def work(cls, i, candles):
        finding = cls().analyze(candles)
        with lock:
            got[(cls.name, i)] = finding

    threads = [
        threading.Thread(target=work, args=(cls, i, c)) for cls in THEORIES for i, c in enumerate(inputs) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert got == expected


def test_config_tables_load_through_the_core(tmp_path):
    from v7.core.config import ConfigError, load_config
    from v7.core.registry import load_registry

    registry = load_registry()
    path = tmp_path / "config.toml"
    path.write_text("[theories.hurst_exponent]\nwindow = 300\n\n[theories.monte_carlo]\nconfidence_level = 0.99\nhorizon = 24\n")
    config = load_config(path, registry)
    assert config.plugin_config("theory", "hurst_exponent").window == 300
    assert config.plugin_config("theory", "monte_carlo").horizon == 24
    assert config.plugin_config("theory", "markov_regime") == MarkovRegime.Config()
    path.write_text("[theories.kalman_filter]\nwindw = 300\n")
    with pytest.raises(ConfigError, match="windw"):
        load_config(path, registry)
