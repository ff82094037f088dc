"""End-to-end: do the honest scores find information that is there, and only that?

A "peeking" theory is handed the full history out of band (`FUTURE`) and states the sign of the
forward return over 6 bars, wrong 30% of the time (seeded per bar); the consensus synthesizer,
with no regime, entropy or risk theory enabled, follows it alone (weight 1, score = bias). Its
inverse states the opposite; a coin theory guesses. All run through `run_backtest` on synthetic
random walks, then the real CLI on the bundled candles.
"""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest
from pydantic import Field

from backtest_setup import make_config
from helpers import REPO, run_v7
from v7 import CandleSeries, Theory, TheoryConfig, TheoryFinding, hookimpl
from v7.core.backtest import resolve_settings, run_backtest, score

HOUR = 3600
T0 = 1_600_000_000 // HOUR * HOUR
BARS, LOOKBACK, HORIZON = 2000, 50, 6
COST = (10 + 5) / 10_000  # [backtest] fees_bps + slippage_bps defaults

FUTURE: dict[str, CandleSeries] = {}  # symbol → the whole history, set by the `walks` fixture
CALLS: list[tuple[str, str, int]] = []  # (theory, symbol, bar time) of every analyze call (one worker: in-process)


# -- the planted information ---------------------------------------------------------------------


class PlantedConfig(TheoryConfig):
    horizon: int = Field(default=HORIZON, ge=1)
    flip: float = Field(default=0.3, ge=0, le=1, description="probability of stating the wrong sign")
    seed: int = 11


def draw(seed: int, symbol: str, bar_time: int, stream: int) -> float:
    """A uniform number fixed by (seed, symbol, bar, stream), whatever order the bars are computed in."""
    return float(np.random.default_rng([seed, zlib.crc32(symbol.encode()), bar_time, stream]).random())


class PeekingTheory(Theory):
    """Bias = sign of close[t + horizon] / close[t] − 1, read from FUTURE, flipped with probability `flip`."""

    name = "peeking"
    version = "1.0"
    default_min_candles = 5
    Config = PlantedConfig
    sign = 1.0

    def analyze(self, candles):
        bar_time = int(candles.timestamp[-1])
        CALLS.append((self.name, candles.symbol, bar_time))
        history = FUTURE[candles.symbol]
        i = int(np.searchsorted(history.timestamp, bar_time))
        j = i + self.config.horizon
        if j >= len(history):
            return TheoryFinding(bias=0.0, confidence=1.0, label="unknown", interpretation="No future to read.")
        bias = 1.0 if history.close[j] > history.close[i] else -1.0
        if draw(self.config.seed, candles.symbol, bar_time, 0) < self.config.flip:
            bias = -bias
        return TheoryFinding(bias=self.sign * bias, confidence=1.0, label="peeked", interpretation="The future, out of band.")


class InversePeekingTheory(PeekingTheory):
    name = "inverse_peeking"
    sign = -1.0


class CoinTheory(Theory):
    """Bias ±1 by a seeded coin per (symbol, bar): independent of the future."""

    name = "coin"
    version = "1.0"
    default_min_candles = 5
    Config = PlantedConfig

    def analyze(self, candles):
        bar_time = int(candles.timestamp[-1])
        CALLS.append((self.name, candles.symbol, bar_time))
        bias = 1.0 if draw(self.config.seed, candles.symbol, bar_time, 1) < 0.5 else -1.0
        return TheoryFinding(bias=bias, confidence=1.0, label="coin", interpretation="A coin flip.")


class HonestPlugins:
    @hookimpl
    def register_theories(self, register):
        for cls in (PeekingTheory, InversePeekingTheory, CoinTheory):
            register(cls)


def walk(symbol: str, seed: int, n: int = BARS) -> CandleSeries:
    """A Gaussian random walk (1% per bar), opens off the previous close by ~0.2%: valid OHLC, hourly."""
    rng = np.random.default_rng(seed)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    open_ = np.concatenate([[100.0], close[:-1]]) * (1 + rng.normal(0, 0.002, n))
    return CandleSeries(
        symbol=symbol, granularity="1h", timestamp=T0 + HOUR * np.arange(n, dtype=np.int64), open=open_,
        high=np.maximum(open_, close) * 1.001, low=np.minimum(open_, close) * 0.999, close=close, volume=np.ones(n),
    )


@pytest.fixture(scope="module")
def honest_registry():
    from v7.core.registry import PluginSource, load_registry

    return load_registry([(HonestPlugins(), PluginSource("honest-test-plugins", "v7-honest-tests", "1.0"))])


@pytest.fixture(scope="module")
def walks() -> dict[str, CandleSeries]:
    histories = {"AAA-USD": walk("AAA-USD", 1), "BBB-USD": walk("BBB-USD", 2)}
    FUTURE.update(histories)
    return histories


def backtest(registry, histories, theory, symbols=("AAA-USD",), **settings):
    config = make_config(
        registry, theories=[theory], synthesizer={"use": "consensus", "consensus": {"weights": {theory: 1.0}}},
        engine={"symbols": list(symbols), "lookback": LOOKBACK}, backtest={"horizon": HORIZON, "step": 1, **settings},
    )
    return run_backtest(config, registry, histories={s: histories[s] for s in symbols})


@pytest.fixture(scope="module")
def peeking(honest_registry, walks):
    return backtest(honest_registry, walks, "peeking", symbols=("AAA-USD", "BBB-USD"))


@pytest.fixture(scope="module")
def coin(honest_registry, walks):
    return backtest(honest_registry, walks, "coin")


def essence(signal):
    return (signal.index, signal.direction, signal.confidence, [(o.theory, o.status, o.bias) for o in signal.theories])


# -- 1. planted information is found, its inverse as inverse, a coin as nothing ----------------------


def test_planted_information_is_found_per_symbol_and_pooled(peeking):
    result = peeking.result
    assert [s.symbol for s in result.symbols] == ["AAA-USD", "BBB-USD"]
    for item in result.symbols:
        head = item.scores.horizons[0]
        assert head.horizon == HORIZON and item.scores.verdict == head.verdict
        assert head.verdict.kind == "information" and head.verdict.scope == item.symbol, head.verdict.text
        assert head.verdict.text.startswith("evidence of information (IC +")
        assert head.ic.low > 0 and head.ic.value > 0.2  # 70% right signs: Spearman ≈ 0.33
        buy, sell = head.directions["BUY"], head.directions["SELL"]
        assert buy.edge.low > 0 and sell.edge.low > 0
        assert buy.hit_rate.value == pytest.approx(buy.base_rate + buy.edge.value)
        (theory,) = head.theories
        assert theory.theory == "peeking" and theory.directional and theory.spoke == 1.0 and theory.ic.low > 0
        # Every bar's signal follows the theory: BUY on +1, SELL on −1, HOLD where it knew nothing (the last bars).
        assert head.directions["HOLD"].scored == 0 and item.scores.directions["HOLD"].count == HORIZON
    assert result.pooled[0].verdict.kind == "information"


def test_the_inverse_of_planted_information_is_inverse_information(honest_registry, walks):
    head = backtest(honest_registry, walks, "inverse_peeking").result.symbols[0].scores.horizons[0]
    assert head.verdict.kind == "inverse" and head.verdict.text.startswith("evidence of inverse information"), head.verdict.text
    assert head.ic.high < 0 and head.directions["BUY"].edge.high < 0 and head.theories[0].ic.high < 0


def test_a_coin_on_a_random_walk_carries_no_information(coin):
    head = coin.result.symbols[0].scores.horizons[0]
    assert head.verdict.kind == "none" and head.verdict.text.startswith("no evidence of information"), head.verdict.text
    assert head.ic.covers(0.0) and head.theories[0].ic.covers(0.0)
    assert head.directions["BUY"].edge.covers(0.0) and head.directions["SELL"].edge.covers(0.0)


# -- 2. several horizons from one computation ------------------------------------------------------


def test_several_horizons_are_scored_from_one_computation(honest_registry, walks):
    CALLS.clear()
    run = backtest(honest_registry, walks, "peeking", horizon=24, horizons=[1, 6])
    signals = run.signals["AAA-USD"]
    assert len(CALLS) == len(signals) == BARS - LOOKBACK + 1  # the theory ran once per bar, not once per horizon
    assert len({bar_time for _, _, bar_time in CALLS}) == len(CALLS)
    horizons = run.result.symbols[0].scores.horizons
    assert [h.horizon for h in horizons] == [24, 1, 6]
    assert [h.block for h in horizons] == [96, 4, 24]  # 4 × ceil(h / step), step 1
    assert run.result.symbols[0].scores.verdict == horizons[0].verdict
    assert all(h.verdict.kind in ("information", "inverse", "none") for h in horizons)
    assert horizons[2].verdict.kind == "information"  # what the theory knows: the 6-bar sign
    assert [h.scored for h in horizons] == [len(signals) - 24, len(signals) - 1, len(signals) - 6]
    # A separate run at the 6-bar headline: the same signals, the same 6-bar scores.
    alone = backtest(honest_registry, walks, "peeking")
    assert [essence(s) for s in alone.signals["AAA-USD"]] == [essence(s) for s in signals]
    assert alone.result.symbols[0].scores.horizons[0].model_dump() == horizons[2].model_dump()


# -- 3. pooled over symbols -----------------------------------------------------------------------------


def test_pooled_scores_cover_every_symbol_and_only_with_several(peeking, coin):
    pooled = peeking.result.pooled
    assert [p.horizon for p in pooled] == [HORIZON]
    assert pooled[0].verdict.scope == "pooled" and pooled[0].block == 4 * HORIZON
    assert pooled[0].scored == sum(s.scores.horizons[0].scored for s in peeking.result.symbols)
    assert pooled[0].theories[0].theory == "peeking" and pooled[0].theories[0].ic.low > 0
    assert coin.result.pooled == []  # a single symbol: its own scores say it all


# -- 4. the fair null -------------------------------------------------------------------------------------


def test_circular_shift_null_rejects_planted_information_and_not_a_coin(peeking, coin):
    for item in peeking.result.symbols:
        null = item.scores.null
        assert null.p_value < 0.05 and null.sharpe > null.null_p95, null
    null = coin.result.symbols[0].scores.null
    assert null.p_value > 0.05, null


# -- 5. reproducible ------------------------------------------------------------------------------------------


def test_same_seed_same_intervals_another_seed_other_bounds_same_estimates(honest_registry, walks, peeking):
    again = backtest(honest_registry, walks, "peeking", symbols=("AAA-USD", "BBB-USD"))
    for a, b in zip(peeking.result.symbols, again.result.symbols):
        assert [h.model_dump() for h in a.scores.horizons] == [h.model_dump() for h in b.scores.horizons]
        assert a.scores.null == b.scores.null
    assert [p.model_dump() for p in peeking.result.pooled] == [p.model_dump() for p in again.result.pooled]

    history, signals, last = peeking.histories["AAA-USD"], peeking.signals["AAA-USD"], peeking.lasts["AAA-USD"]
    base = peeking.result.symbols[0].scores.horizons[0]
    other = score(history, signals, last, resolve_settings(peeking.config, seed=8), ["peeking"], {"peeking": True}).horizons[0]
    for mine, theirs in [(base.ic, other.ic), (base.directions["BUY"].edge, other.directions["BUY"].edge),
                         (base.directions["SELL"].hit_rate, other.directions["SELL"].hit_rate), (base.theories[0].ic, other.theories[0].ic)]:
        assert mine.value == theirs.value
        assert (mine.low, mine.high) != (theirs.low, theirs.high)
        assert "seed 7" in mine.method and "seed 8" in theirs.method


# -- 6. the execution model --------------------------------------------------------------------------------


def test_execution_model_changes_strategy_returns_and_buy_and_hold_pays_its_entry(coin):
    history, signals, last = coin.histories["AAA-USD"], coin.signals["AAA-USD"], coin.lasts["AAA-USD"]
    first = signals[0].index
    assert not np.allclose(history.open[1:], history.close[:-1])
    next_open = coin.result.symbols[0].scores
    close = score(history, signals, last, resolve_settings(coin.config, execution="close"), evidence="none")
    assert coin.settings.execution == "next_open"
    assert next_open.strategy.trades > 100 and close.strategy.trades == next_open.strategy.trades
    assert next_open.strategy.total_return != pytest.approx(close.strategy.total_return, abs=1e-6)
    # Buy-and-hold: one trade, the entry cost paid on the gross return from its fill to the last close.
    gross_at_open = history.close[last] / history.open[first + 1]
    gross_at_close = history.close[last] / history.close[first]
    assert next_open.buy_and_hold.trades == 1 and close.buy_and_hold.trades == 1
    assert next_open.buy_and_hold.total_return == pytest.approx((1 - COST) * gross_at_open - 1, rel=1e-9)
    assert close.buy_and_hold.total_return == pytest.approx((1 - COST) * gross_at_close - 1, rel=1e-9)
    assert close.buy_and_hold.total_return < gross_at_close - 1


# -- 8. what confidence means ------------------------------------------------------------------------------


def test_confidence_meaning_says_hold_is_on_another_scale(peeking):
    meaning = peeking.result.confidence_meaning
    assert "HOLD" in meaning and "different scale" in meaning


# -- 7. the CLI ------------------------------------------------------------------------------------------------


EVIDENCE = re.compile(r"(no evidence of information|evidence of information|evidence of inverse information) \(IC [+-]\d")


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """The repo's config.toml with two cheap theories and a 300-bar lookback; three backtests stored in results.db."""
    folder = tmp_path_factory.mktemp("honest-cli")
    text = (REPO / "config.toml").read_text()
    theories = 'enabled = ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]'
    assert theories in text and "lookback = 1000" in text
    text = text.replace(theories, 'enabled = ["hurst_exponent", "kalman_filter"]').replace("lookback = 1000", "lookback = 300")
    (folder / "c.toml").write_text(text)
    common = ("backtest", "--config", "c.toml", "--bars", "300", "--db", "results.db")
    # Horizon 6: with 24 (the default) 300 signals make fewer than the bootstrap's minimum of blocks ("insufficient data").
    runs = [
        run_v7(*common, "--horizon", "6", cwd=folder),
        run_v7(*common, "--horizon", "1,6,24", "--json", cwd=folder),
        run_v7(*common, "--execution", "close", "--delay-bars", "2", "--json", cwd=folder),
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    return folder, runs


def test_cli_prints_the_verdict_first_in_evidence_wording(cli):
    _, (text, _, _) = cli
    lines = text.stdout.splitlines()
    assert lines[0].startswith("Verdict"), lines[:3]
    assert "6-bar forward return" in lines[0] and "blocks of 24 signals" in lines[0]
    for line, scope in zip(lines[1:4], ("BTC-USD", "ETH-USD", "pooled")):
        assert line.split()[0] == scope and EVIDENCE.search(line), line
    assert "Stored as backtest 1 in " in text.stderr


def test_cli_hold_confidence_stays_out_of_the_buy_sell_column(cli):
    _, (text, as_json, _) = cli
    rows = {}
    for line in text.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 11 and cells[1] in ("BUY", "SELL", "HOLD"):
            rows.setdefault(cells[1], cells)  # the first symbol's signals table
    assert rows["HOLD"][4] == "-" and rows["HOLD"][5] == "-"  # no mean confidence, no hit rate for HOLD
    assert float(rows["BUY"][4]) > 0 and float(rows["SELL"][4]) > 0
    ic_lines = [line for line in text.stdout.splitlines() if line.startswith("IC (direction × confidence")]
    assert len(ic_lines) == 2 and all("HOLD confidence, on its own scale: mean 0." in line for line in ic_lines)
    # The HOLD confidence is kept, on its own: the JSON has it.
    hold = json.loads(as_json.stdout)["symbols"][0]["scores"]["horizons"][0]["directions"]["HOLD"]
    assert 0 < hold["mean_confidence"] <= 1
    assert "different scale" in json.loads(as_json.stdout)["confidence_meaning"]


def test_cli_several_horizons_and_bad_horizons(cli):
    folder, (_, as_json, _) = cli
    data = json.loads(as_json.stdout)
    assert data["settings"]["horizon"] == 1 and data["settings"]["horizons"] == [6, 24]
    for item in data["symbols"]:
        assert [h["horizon"] for h in item["scores"]["horizons"]] == [1, 6, 24]
        assert [h["block"] for h in item["scores"]["horizons"]] == [4, 24, 96]
    assert [p["horizon"] for p in data["pooled"]] == [1, 6, 24]
    for bad in ("0", "a,b"):
        run = run_v7("backtest", "--config", "c.toml", "--horizon", bad, "--no-store", cwd=folder)
        assert run.returncode == 2 and "--horizon" in run.stderr, (bad, run.stderr)


def test_cli_execution_settings_are_in_the_result(cli):
    _, (_, at_open, at_close) = cli
    close, opened = json.loads(at_close.stdout), json.loads(at_open.stdout)
    assert close["settings"]["execution"] == "close" and close["settings"]["delay_bars"] == 2
    assert opened["settings"]["execution"] == "next_open" and opened["settings"]["delay_bars"] == 0
    returns = [[s["scores"]["strategy"]["total_return"] for s in d["symbols"]] for d in (opened, close)]
    assert returns[0] != returns[1]  # the same signals, filled differently


def test_cli_compare_deflates_sharpe_over_three_runs_and_keeps_the_verdict(cli):
    folder, (text, _, _) = cli
    three = run_v7("backtest", "compare", "1", "2", "3", "--db", "results.db", cwd=folder)
    assert three.returncode == 0, three.stderr
    deflated = [line for line in three.stdout.splitlines() if "deflated Sharpe (3 trials)" in line]
    assert [line.split()[0] for line in deflated] == ["BTC-USD", "ETH-USD"]
    two = run_v7("backtest", "compare", "1", "2", "--db", "results.db", cwd=folder)
    assert two.returncode == 0 and "deflated Sharpe" not in two.stdout
    one = run_v7("backtest", "compare", "1", "--db", "results.db", cwd=folder)
    assert one.returncode == 2 and "at least two" in one.stderr
    # The stored result carries the verdicts the terminal printed.
    stored = json.loads(run_v7("backtest", "compare", "1", "2", "--db", "results.db", "--json", cwd=folder).stdout)["a"]
    printed = {line.split()[0]: line.split(None, 1)[1] for line in text.stdout.splitlines()[1:4]}
    for item in stored["symbols"]:
        assert item["scores"]["horizons"][0]["verdict"]["text"] == printed[item["symbol"]]
    assert stored["pooled"][0]["verdict"]["text"] == printed["pooled"]
    assert any(line.startswith("BTC-USD verdict") and printed["BTC-USD"] in line for line in three.stdout.splitlines())
