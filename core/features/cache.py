"""The feature store as a backtest uses it: the stored results of the planned bars, and the new ones written back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..collector import gc_paused
from ..logs import get_logger
from ..models import TheoryResult
from ..theory_columns import TheoryColumns
from .keys import theory_key
from .store import FeatureStore

if TYPE_CHECKING:  # pragma: no cover
    from ..components import Theory
    from ..config import V7Config


class FeatureCache:
    """Stored results looked up per symbol and theory; new results collected, then written in one go per file."""

    def __init__(self, store: FeatureStore, granularity: str, keys: dict[str, str]) -> None:
        self.store = store
        self.granularity = granularity
        self.keys = keys  # theory name -> theory key, in config order
        self._pending: dict[tuple[str, str], list[tuple[int, str, TheoryResult]]] = {}

    @classmethod
    def open(cls, config: "V7Config", theories: Sequence["Theory"], root: str | None = None) -> "FeatureCache | None":
        """The cache of `root` (default `[backtest] feature_cache`, relative to the working directory); None when it is ""."""
        root = config.backtest.feature_cache if root is None else root
        if not root:
            return None
        keys = {t.name: theory_key(config, t.name, str(t.version)) for t in theories}
        return cls(FeatureStore(Path(root).resolve()), config.engine.granularity, keys)

    def lookup(self, symbol: str, bar_times: Sequence[int], digests: Sequence[str]) -> dict[str, tuple[list[int], TheoryColumns]]:
        """Per theory that has any, its stored results for exactly those windows: the bar times and the columns, in step.

        The cyclic garbage collector is paused meanwhile: the columns' many small objects hold no
        cycles, and full collections triggered by them would cost as much as the reading."""
        found: dict[str, tuple[list[int], TheoryColumns]] = {}
        with gc_paused():
            for theory, key in self.keys.items():
                stored = self.store.read_columns(symbol, self.granularity, theory, key, bar_times, digests)
                if stored is not None:
                    found[theory] = stored
        return found

    def add(self, symbol: str, bar_time: int, digest: str, result: TheoryResult) -> None:
        if result.status != "error" and result.theory in self.keys:
            self._pending.setdefault((symbol, result.theory), []).append((int(bar_time), digest, result))

    def flush(self) -> int:
        """Write what was added; a file that cannot be written is logged (the backtest goes on). Returns rows written."""
        written = 0
        pending, self._pending = self._pending, {}
        for (symbol, theory), rows in pending.items():
            try:
                written += self.store.write(symbol, self.granularity, theory, self.keys[theory], rows)
            except Exception as exc:
                get_logger(symbol=symbol, plugin=theory).warning(
                    "feature store not written", path=str(self.store.path(symbol, self.granularity, theory, self.keys[theory])),
                    rows=len(rows), error=f"{type(exc).__name__}: {exc}",
                )
        return written
