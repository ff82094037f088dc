"""Walk-forward learning for one symbol: the rows shown so far, and the model that answers now.

The model answering at bar t was trained on rows whose forward return was known `embargo` bars
before t (purged: no training label reaches past t − embargo), on every row so far or the last
`window`, and retrained every `retrain_every` bars shown. Nothing here reads a bar after t: labels
come from the candles of later requests, as they arrive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import LearnedConfig
from .model import FittedModel, TrainingError, fit
from .table import FeatureTable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


class SymbolLearner:
    def __init__(self, cfg: LearnedConfig, bar_seconds: int, threads: int, table: FeatureTable | None = None,
                 model: FittedModel | None = None, learn: bool = True) -> None:
        self.cfg = cfg
        self.bar_seconds = bar_seconds
        self.threads = threads
        self.table = table or FeatureTable()
        self.model = model
        self.learn = learn
        self.shown_since_training = 0 if model is not None else None  # None: no model trained here yet
        self.last_problem: str | None = None  # why the latest training failed, for the fallback's reason
        self.trainings = 0
        self.loaded = model is not None  # the model (and rows) came from a file: checked against the first bar shown
        self.set_aside: str | None = None  # why a loaded model does not answer these bars, for the fallback's reason

    def answers_from(self) -> int | None:
        """The first bar time the current model may answer: its last training label's end plus the embargo."""
        return None if self.model is None else self.model.last_label_time + self.cfg.gap * self.bar_seconds

    def check_loaded(self, time: int, symbol: str) -> None:
        """Before the first bar a loaded model sees: if it learned from outcomes not known an embargo before
        `time`, it cannot answer. Learning (`retrain_live`), the symbol then starts walk-forward from
        scratch on the bars shown, as without a file (its rows reach past `time` too); otherwise the
        fallback answers until the bars reach the model's end."""
        start = self.answers_from()
        if not self.loaded or start is None:
            return
        if start <= time:
            self.loaded, self.set_aside = False, None
            return
        from v7 import format_utc, get_logger

        assert self.model is not None
        first = self.set_aside is None
        self.set_aside = (
            f"the model file's model learned from outcomes up to {format_utc(self.model.last_label_time)} and may answer from "
            f"{format_utc(start)} (embargo {self.cfg.gap} bars): not bar {format_utc(time)}"
        )
        if first:
            get_logger(symbol=symbol, plugin="learned").warning(
                "loaded model trained past the bar", bar_time=format_utc(time), answers_from=format_utc(start), walk_forward=self.learn,
            )
        if self.learn:
            self.table, self.model, self.shown_since_training, self.loaded = FeatureTable(), None, None, False
            self.set_aside += "; learning walk-forward from the bars shown instead"

    @property
    def warming_up(self) -> bool:
        """Still collecting the rows of its first model (no training has failed)."""
        return self.model is None and self.trainings == 0 and (self.last_problem or "").startswith("learning:")

    def show(self, time: int, close: float, features: dict[str, float] | None, bar_times: "np.ndarray", closes: "np.ndarray") -> None:
        """Take bar t: label the rows whose horizon it completes, add its row, retrain when due."""
        table = self.table
        if table.rows and time <= int(table.times[table.rows - 1]):
            return  # the same bar again (a live run between two closes): nothing new to learn
        table.label_until(bar_times, closes)
        if features is not None:
            table.add(time, close, features, time + self.cfg.horizon * self.bar_seconds)
        if not self.learn:
            return
        if self.shown_since_training is not None:
            self.shown_since_training += 1
        due = self.shown_since_training is None or self.shown_since_training >= self.cfg.retrain_every
        if due:
            self._train(time)

    def _train(self, now: int) -> None:
        import numpy as np

        table, cfg = self.table, self.cfg
        n = table.rows
        known = np.nonzero(~np.isnan(table.forward[:n]) & (table.label_times[:n] + cfg.gap * self.bar_seconds <= now))[0]
        if self.shown_since_training is None and known.shape[0] < cfg.min_train:
            self.last_problem = f"learning: {known.shape[0]} labelled rows, the first model needs {cfg.min_train} (min_train)"
            return
        if cfg.window:
            known = known[-cfg.window:]
        try:
            self.model = fit(
                table.matrix(known), table.forward[known], table.times[known], table.label_times[known], list(table.names), cfg, self.threads,
            )
            self.last_problem = None
            self.trainings += 1
        except TrainingError as exc:
            self.last_problem = f"training failed: {exc}"
        self.shown_since_training = 0
