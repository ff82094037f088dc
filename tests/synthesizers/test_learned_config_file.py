"""The shipped learned.toml: it validates, differs from config.toml only where the README says (the synthesizer and
the store's path), and the commands the README and docs/synthesizers.md give for it work: `v7 train` saves a model, a
backtest with that model answers the bars after its training end, and `v7 run` stores learned-or-fallback signals."""

from __future__ import annotations

import shutil
import sqlite3
import tomllib

from helpers import REPO, run_v7
from v7.core.config import load_config
from v7.core.registry import load_registry

START, END, LATER = "2019-05-01", "2019-06-30", "2019-07-10"


def test_learned_toml_validates_and_is_config_toml_with_the_learned_synthesizer():
    config = load_config(REPO / "learned.toml", load_registry())
    assert config.synthesizer == "learned" and config.fallback == "consensus"
    learned = config.plugin_configs[("synthesizer", "learned")]
    assert (learned.horizon, learned.model, learned.model_path, learned.retrain_live) == (24, "lightgbm", "", True)
    shipped, default = (tomllib.loads((REPO / name).read_text()) for name in ("learned.toml", "config.toml"))
    assert shipped["synthesizer"]["learned"]["horizon"] == shipped["sizing"]["horizon"] == 24
    assert shipped["synthesizer"]["learned"]["model"] == "lightgbm" and "model_path" not in shipped["synthesizer"]["learned"]
    # Everything else is config.toml's: the same theories, feeds, sizing and portfolio, so the scores compare.
    assert {k: v for k, v in shipped.items() if k not in ("synthesizer", "sinks")} == {k: v for k, v in default.items() if k not in ("synthesizer", "sinks")}
    assert shipped["sinks"]["enabled"] == default["sinks"]["enabled"] and shipped["sinks"]["sqlite"]["path"] != default["sinks"]["sqlite"]["path"]


def test_the_documented_learned_toml_commands_work(tmp_path):
    shutil.copy(REPO / "learned.toml", tmp_path / "learned.toml")
    trained = run_v7("train", "--config", "learned.toml", "--symbols", "BTC-USD", "--start", START, "--end", END,
                     "--output", "models/learned.npz", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "Saved model to models/learned.npz" in trained.stdout and (tmp_path / "models" / "learned.npz").is_file()
    # The commented model_path line, switched on: a backtest after the training end is answered by the model from its first bar.
    text = (tmp_path / "learned.toml").read_text()
    assert '# model_path = "models/learned.npz"' in text
    (tmp_path / "with_model.toml").write_text(text.replace('# model_path = "models/learned.npz"', 'model_path = "models/learned.npz"'))
    later = run_v7("backtest", "--config", "with_model.toml", "--symbols", "BTC-USD", "--start", END, "--end", LATER, "--workers", "1", cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    assert "BTC-USD: learned out of sample against consensus on the same" in later.stdout.replace("\n", " ")
    assert "loaded model trained past the bar" not in later.stderr
    # Bars before the model's training end: it stands aside, and walk-forward learning answers them instead.
    earlier = run_v7("backtest", "--config", "with_model.toml", "--symbols", "BTC-USD", "--start", START, "--end", END, "--workers", "1", cwd=tmp_path)
    assert earlier.returncode == 0, earlier.stderr
    assert "loaded model trained past the bar" in earlier.stderr
    ran = run_v7("run", "--config", "learned.toml", "--iterations", "2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    rows = sqlite3.connect(tmp_path / "learned.db").execute("SELECT synthesizer, fallback_reason FROM signals").fetchall()
    assert len(rows) == 4
    # A fresh run has no model yet: consensus answers, and says why.
    assert all(name == "consensus" and reason.startswith("learning: ") for name, reason in rows)
