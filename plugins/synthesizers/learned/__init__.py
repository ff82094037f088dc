"""`learned`: a synthesizer that learns, walk-forward, how the theories' readings relate to what followed.

Per symbol it keeps a row of features for every bar it is shown (`features.py`: each theory's
status, bias, confidence, metrics and label, plus causal price and volume features), labels a row
once its `horizon` has passed (the sign of the forward return), and retrains every
`retrain_every` bars on the rows whose label was known `embargo` bars before (`learner.py`):
LightGBM by default, a logistic regression as the baseline, calibrated on the newest slice of
each training window (`model.py`). It answers with the calibrated P(up): BUY at or above
`threshold`, SELL at or below 1 − `threshold`, HOLD between, and names the features that moved the
decision. Before its first model, or when a feature is missing, it raises `SynthesisFailed` and
the configured fallback answers with that reason. `v7 train` saves what it learned
(`modelfile.py`); `model_path` loads it, and a loaded model answers only bars after its last
training label + `embargo` (before them the symbol learns walk-forward, or with `retrain_live =
false` the fallback answers). docs/synthesizers.md has the details.
"""

from __future__ import annotations

from v7 import hookimpl

from .config import LearnedConfig
from .synthesizer import LearnedSynthesizer


@hookimpl
def register_synthesizers(register):
    register(LearnedSynthesizer)


__all__ = ["LearnedConfig", "LearnedSynthesizer"]
