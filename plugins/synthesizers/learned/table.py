"""The rows a symbol's model learns from: features per bar shown, and each bar's forward return once it is known.

Columns are added as new feature names appear (a metric or a label seen for the first time); earlier
rows hold NaN there, or 0 in one-hot label columns. Storage grows by doubling, so a row costs one
vector write.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .features import LABEL_MARK

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


class FeatureTable:
    def __init__(self) -> None:
        import numpy as np

        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.rows = 0
        self._values = np.full((256, 16), np.nan)
        self.times = np.zeros(256, dtype=np.int64)
        self.closes = np.zeros(256)
        self.forward = np.full(256, np.nan)  # log return over the horizon; NaN until that bar is shown
        self.label_times = np.zeros(256, dtype=np.int64)  # when the forward return is known (bar time)
        self._unlabelled = 0  # rows before this one all have their forward return

    def add(self, time: int, close: float, features: dict[str, float], label_time: int) -> int:
        """Append a row (bars must come in time order); returns its index."""
        import numpy as np

        if self.rows and time <= self.times[self.rows - 1]:
            raise ValueError(f"bar {time} is not after the last bar shown ({int(self.times[self.rows - 1])})")
        for name in features:
            if name not in self.index:
                self._add_column(name)
        if self.rows == self._values.shape[0]:
            self._grow_rows()
        row = np.full(self._values.shape[1], np.nan)
        for name, value in features.items():
            row[self.index[name]] = value
        self._values[self.rows] = row
        self.times[self.rows], self.closes[self.rows], self.label_times[self.rows] = time, close, label_time
        self.rows += 1
        return self.rows - 1

    def label_until(self, bar_times: "np.ndarray", closes: "np.ndarray") -> None:
        """Fill the forward returns that the candles shown so far (`bar_times`, `closes`: the window) make known."""
        import numpy as np

        while self._unlabelled < self.rows and self.label_times[self._unlabelled] <= bar_times[-1]:
            i = self._unlabelled
            at = int(np.searchsorted(bar_times, self.label_times[i]))  # the first bar at or after the label time
            if at < len(bar_times) and closes[at] > 0:
                self.forward[i] = math.log(closes[at] / self.closes[i])
            self._unlabelled += 1

    def matrix(self, rows: "np.ndarray | slice", names: list[str] | None = None) -> "np.ndarray":
        """The feature values of `rows` over `names` (default: every column); one-hot columns hold 0, not NaN."""
        import numpy as np

        names = self.names if names is None else names
        columns = [self.index.get(n, -1) for n in names]
        picked = self._values[rows][:, [c if c >= 0 else 0 for c in columns]]
        for position, (name, column) in enumerate(zip(names, columns)):
            if column < 0:
                picked[:, position] = np.nan
            if LABEL_MARK in name:
                picked[:, position] = np.nan_to_num(picked[:, position], nan=0.0)
        return picked

    def vector(self, features: dict[str, float], names: list[str]) -> "np.ndarray":
        """One bar's features over a model's `names` (what it was trained on), as `matrix` would give them."""
        import numpy as np

        return np.array([features.get(n, 0.0 if LABEL_MARK in n else math.nan) for n in names], dtype=np.float64)

    def _add_column(self, name: str) -> None:
        import numpy as np

        self.index[name] = len(self.names)
        self.names.append(name)
        if len(self.names) > self._values.shape[1]:
            wider = np.full((self._values.shape[0], self._values.shape[1] * 2), np.nan)
            wider[:, : self._values.shape[1]] = self._values
            self._values = wider

    def _grow_rows(self) -> None:
        import numpy as np

        n = self._values.shape[0] * 2
        self._values = np.concatenate([self._values, np.full_like(self._values, np.nan)])
        for name, fill in (("times", 0), ("closes", 0.0), ("forward", np.nan), ("label_times", 0)):
            old = getattr(self, name)
            grown = np.full(n, fill, dtype=old.dtype)
            grown[: old.shape[0]] = old
            setattr(self, name, grown)

    # -- saving -------------------------------------------------------------------------------

    def arrays(self) -> dict[str, "np.ndarray"]:
        n = self.rows
        return {
            "values": self._values[:n, : len(self.names)].copy(), "times": self.times[:n].copy(), "closes": self.closes[:n].copy(),
            "forward": self.forward[:n].copy(), "label_times": self.label_times[:n].copy(),
        }

    @classmethod
    def from_arrays(cls, names: list[str], arrays: dict[str, "np.ndarray"]) -> "FeatureTable":
        import numpy as np

        table = cls()
        n = int(arrays["times"].shape[0])
        capacity = max(256, 1 << max(n, 1).bit_length())
        table.names = list(names)
        table.index = {name: i for i, name in enumerate(names)}
        table._values = np.full((capacity, max(16, len(names))), np.nan)
        table._values[:n, : len(names)] = arrays["values"]
        for name, dtype in (("times", np.int64), ("closes", np.float64), ("forward", np.float64), ("label_times", np.int64)):
            grown = np.full(capacity, np.nan if dtype is np.float64 and name == "forward" else 0, dtype=dtype)
            grown[:n] = arrays[name]
            setattr(table, name, grown)
        table.rows = n
        # Label times grow with the bar times: the rows whose label was due by the last bar shown were all labelled.
        table._unlabelled = int(np.searchsorted(table.label_times[:n], table.times[n - 1], side="right")) if n else 0
        return table
