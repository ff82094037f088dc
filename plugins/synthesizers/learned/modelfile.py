"""The model file `v7 train` writes and `v7 run` loads: NumPy's `.npz`, no pickle.

`meta` is one JSON document (format, the settings the features and labels depend on, the details
core passed: training range, theory keys, out-of-sample scores, library versions; per symbol the
fitted model, LightGBM's booster in its own text format); per symbol `<i>.<array>` hold the
training rows, so a run that keeps learning starts from them. Loading never executes code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .config import LearnedConfig
from .model import Calibration, FittedModel
from .table import FeatureTable

FORMAT = "v7-learned-model"
FORMAT_VERSION = 1
# Settings a saved model's features and labels depend on: a different value makes the model answer another question.
MUST_MATCH = ("horizon", "target", "target_quantile", "model", "lags", "volatility_bars", "volume_bars", "exclude_features")


class ModelFileError(ValueError):
    """The file is missing, unreadable, or was trained for other settings; the message says which."""


def save(path: Path, cfg: LearnedConfig, learners: dict[str, Any], details: dict[str, Any]) -> None:
    import numpy as np

    symbols: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    for i, (symbol, learner) in enumerate(sorted(learners.items())):
        model = learner.model
        entry: dict[str, Any] = {"index": i, "names": learner.table.names, "model": None}
        if model is not None:
            fields = {k: v for k, v in dataclasses.asdict(model).items() if k != "_booster"}
            entry["model"] = fields
        symbols[symbol] = entry
        arrays.update({f"{i}.{name}": value for name, value in learner.table.arrays().items()})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "settings": {k: getattr(cfg, k) for k in MUST_MATCH},
        "details": details, "symbols": symbols,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        np.savez_compressed(handle, meta=np.array(json.dumps(meta, default=str)), **arrays)
    temporary.replace(path)


def load(path: Path, cfg: LearnedConfig) -> tuple[dict[str, Any], dict[str, tuple[FeatureTable, FittedModel | None]]]:
    """The file's details, and per symbol its training rows and model; ModelFileError naming the problem."""
    import numpy as np

    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist (train one with `v7 train --config ...`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ModelFileError(f"{path} is not a V7 learned-model file (format {meta.get('format')!r})")
            if meta.get("format_version") != FORMAT_VERSION:
                raise ModelFileError(f"{path} has format version {meta.get('format_version')}; this V7 reads version {FORMAT_VERSION}")
            settings = meta["settings"]
            for key in MUST_MATCH:
                if settings.get(key) != getattr(cfg, key):
                    raise ModelFileError(
                        f"model file {path} was trained with {key} = {settings.get(key)!r}; [synthesizer.learned] {key} is {getattr(cfg, key)!r}"
                    )
            out = {}
            for symbol, entry in meta["symbols"].items():
                i = entry["index"]
                table = FeatureTable.from_arrays(entry["names"], {name: data[f"{i}.{name}"] for name in ("values", "times", "closes", "forward", "label_times")})
                out[symbol] = (table, _model(entry["model"]))
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"model file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    return meta["details"], out


def _model(fields: dict[str, Any] | None) -> FittedModel | None:
    if fields is None:
        return None
    fields = dict(fields)
    fields["calibration"] = Calibration(**fields["calibration"])
    return FittedModel(**fields)
