"""`v7 train` writes a model file; `model_path` loads it, so the first bars are answered by `learned`; a file trained
for other settings or theories is refused at start with the reason; a missing or corrupt file is a clear error."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from click.testing import CliRunner

from learned_helpers import LOOKBACK, SYMBOL, ar1, backtest, make_learned_registry
from v7.core.cli import cli
from v7.core.config import validate_config
from v7.core.engine import Pipeline
from v7.core.theory_runner import THREAD_ENV_VARS
from v7.plugins.synthesizers.learned import LearnedConfig, LearnedSynthesizer
from v7.plugins.synthesizers.learned.modelfile import ModelFileError

BARS, TRAIN_END = 1600, 1200
CONFIG = """
[engine]
symbols = ["{symbol}"]
lookback = {lookback}

[feeds]
enabled = ["replay"]
[feeds.replay]
path = "{folder}"

[theories]
enabled = []

[synthesizer]
use = "learned"
fallback = "consensus"
[synthesizer.learned]
model = "logistic"
horizon = 1
min_train = 300
retrain_every = 300

[sinks]
enabled = []

[backtest]
horizon = 1
workers = 1
feature_cache = ""
bootstrap_resamples = 300
"""


def raw_config(folder, **learned):
    return {
        "engine": {"symbols": [SYMBOL], "lookback": LOOKBACK}, "feeds": {"enabled": ["replay"], "replay": {"path": str(folder)}},
        "theories": {"enabled": learned.pop("theories", [])}, "sinks": {"enabled": []},
        "synthesizer": {"use": "learned", "fallback": "consensus", "learned": {"model": "logistic", "horizon": 1, "min_train": 300, **learned}},
        "backtest": {"horizon": 1, "workers": 1, "feature_cache": "", "bootstrap_resamples": 300},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """AR(1) candles as the replay feed's CSV, and `v7 train` on bars up to TRAIN_END."""
    folder = tmp_path_factory.mktemp("learned-train")
    candles = ar1(31, BARS, 0.15)
    rows = ["timestamp,open,high,low,close,volume"] + [
        f"{int(t)},{float(o)!r},{float(h)!r},{float(l)!r},{float(c)!r},{float(v)!r}"
        for t, o, h, l, c, v in zip(candles.timestamp, candles.open, candles.high, candles.low, candles.close, candles.volume)
    ]
    (folder / f"{SYMBOL}.csv").write_text("\n".join(rows) + "\n")
    config = folder / "learned.toml"
    config.write_text(CONFIG.format(symbol=SYMBOL, lookback=LOOKBACK, folder=folder.as_posix()))
    end = datetime.fromtimestamp(int(candles.timestamp[TRAIN_END]), timezone.utc).isoformat()
    with pytest.MonkeyPatch.context() as patch:  # `v7 train` caps the thread pools of this process: undone afterwards
        for name in THREAD_ENV_VARS:
            patch.setenv(name, "1")
        result = CliRunner().invoke(cli, ["train", "--config", str(config), "--end", end, "--output", str(folder / "model.npz")])
    return folder, candles, result


def test_v7_train_writes_a_model_file_with_its_details(trained):
    folder, candles, result = trained
    assert result.exit_code == 0, result.output
    assert "Saved model to" in result.output
    path = folder / "model.npz"
    assert path.is_file()
    details = LearnedSynthesizer(LearnedConfig(model="logistic", horizon=1, model_path=str(path))).model_details()
    assert details["theory_keys"] == {}  # no theory was enabled
    assert details["granularity"] == "1h" and details["lookback"] == LOOKBACK and details["scored_horizon"] == 1
    span = details["symbols"][SYMBOL]
    assert span["first_bar"].startswith(datetime.fromtimestamp(int(candles.timestamp[LOOKBACK - 1]), timezone.utc).isoformat()[:19])
    assert span["last_bar"].startswith(datetime.fromtimestamp(int(candles.timestamp[TRAIN_END]), timezone.utc).isoformat()[:19])
    scores = details["out_of_sample"][SYMBOL]
    assert scores["model_answered"] > 800 and scores["verdict"].startswith("evidence of information")
    assert scores["ic"]["low"] > 0 and scores["brier"] < scores["base_rate_brier"] and scores["baseline"] == "consensus"
    import lightgbm
    import sklearn

    assert details["libraries"]["lightgbm"] == lightgbm.__version__ and details["libraries"]["scikit-learn"] == sklearn.__version__
    assert details["libraries"]["numpy"] == np.__version__
    assert details["config_hash"] and details["trained_at"] and details["v7_version"]


def test_a_run_with_model_path_is_answered_by_the_model_from_its_first_bar(trained):
    folder, candles, result = trained
    assert result.exit_code == 0, result.output
    registry = make_learned_registry()
    config = validate_config(raw_config(folder, model_path=str(folder / "model.npz")), registry)
    pipeline = Pipeline.build(config, registry)
    try:
        assert pipeline.synthesizer.model_details()["theory_keys"] == {}
    finally:
        pipeline.close()
    later = datetime.fromtimestamp(int(candles.timestamp[TRAIN_END + 50]), timezone.utc)
    run = backtest(config, registry, candles, start=later)
    signals = run.signals[SYMBOL]
    assert signals[0].index == TRAIN_END + 50
    assert all(s.synthesizer == "learned" and s.fallback_reason is None for s in signals)
    # Without the file the same bars start with the fallback: the first model needs min_train rows.
    fresh = backtest(validate_config(raw_config(folder), registry), registry, candles, start=later)
    assert fresh.signals[SYMBOL][0].synthesizer == "consensus"
    assert fresh.signals[SYMBOL][0].fallback_reason.startswith("learning: ")


@pytest.mark.parametrize("change, reason", [
    ({"horizon": 2}, "was trained with horizon = 1; [synthesizer.learned] horizon is 2"),
    ({"model": "lightgbm"}, "was trained with model = 'logistic'; [synthesizer.learned] model is 'lightgbm'"),
    ({"lags": [1, 12]}, "was trained with lags = [1, 6, 24]; [synthesizer.learned] lags is [1, 12]"),
])
def test_a_model_trained_with_other_settings_is_a_startup_error_naming_the_setting(trained, change, reason):
    folder, _, result = trained
    assert result.exit_code == 0, result.output
    registry = make_learned_registry()
    config = validate_config(raw_config(folder, model_path=str(folder / "model.npz"), **change), registry)
    with pytest.raises(Exception) as caught:
        Pipeline.build(config, registry)
    assert reason in str(caught.value)


def test_a_model_trained_on_other_theories_is_a_startup_error_naming_them(trained):
    folder, _, result = trained
    assert result.exit_code == 0, result.output
    registry = make_learned_registry()
    config = validate_config(raw_config(folder, model_path=str(folder / "model.npz"), theories=["constant"]), registry)
    with pytest.raises(Exception) as caught:
        Pipeline.build(config, registry)
    text = str(caught.value)
    assert "its model was trained on other theory features" in text and "constant is enabled but the model never saw it" in text


def test_a_missing_or_corrupt_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        LearnedSynthesizer(LearnedConfig(model_path=str(tmp_path / "none.npz")))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match=r"corrupt.npz cannot be read"):
        LearnedSynthesizer(LearnedConfig(model_path=str(corrupt)))
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.array('{"format": "something-else"}'))
    with pytest.raises(ModelFileError, match="is not a V7 learned-model file"):
        LearnedSynthesizer(LearnedConfig(model_path=str(other)))


def test_v7_train_refuses_a_synthesizer_that_does_not_learn(tmp_path):
    config = tmp_path / "consensus.toml"
    config.write_text(CONFIG.format(symbol=SYMBOL, lookback=LOOKBACK, folder=tmp_path.as_posix()).replace('use = "learned"', 'use = "consensus"'))
    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--output", str(tmp_path / "m.npz")])
    assert result.exit_code != 0
    assert "does not learn from history" in result.output
    assert not (tmp_path / "m.npz").exists()
