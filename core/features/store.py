"""Theory results per bar, as Parquet: one file per (symbol, granularity, theory, theory key).

`<root>/<granularity>/<symbol>/<theory>-<key>.parquet` holds one row per bar time, with the digest
of the window the theory saw. Writers merge with what is there under an `fcntl.flock` lock and
replace the file atomically (a temporary file in the same folder, then `os.replace`), so readers,
which take no lock, see the old file or the new one, never half of one. Files are owner-only.
A file that cannot be read is logged and treated as empty: the results are computed again.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from itertools import repeat
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..files import create_private
from ..logs import get_logger
from ..models import TheoryResult

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd
    import pyarrow as pa

COLUMNS = (
    "bar_time", "digest", "status", "bias", "confidence", "label", "interpretation", "message", "metrics", "elapsed_ms", "theory_version",
)


def _schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([
        ("bar_time", pa.int64()), ("digest", pa.string()), ("status", pa.string()), ("bias", pa.float64()),
        ("confidence", pa.float64()), ("label", pa.string()), ("interpretation", pa.string()), ("message", pa.string()),
        ("metrics", pa.string()), ("elapsed_ms", pa.float64()), ("theory_version", pa.string()),
    ])


def dump_metrics(metrics: dict[str, float]) -> str:
    """JSON text of the metrics; floats as `repr` (exact), NaN and ±inf as JSON's NaN/Infinity tokens."""
    return json.dumps({k: float(v) for k, v in metrics.items()}, allow_nan=True, separators=(",", ":"))


def load_metrics(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in json.loads(text).items()}


def _row(bar_time: int, digest: str, result: TheoryResult) -> tuple[Any, ...]:
    return (
        int(bar_time), digest, result.status, result.bias, float(result.confidence), result.label, result.interpretation,
        result.message, dump_metrics(result.metrics), float(result.elapsed_ms), result.version,
    )


_RESULTS_ADAPTER: Any = None


def results_at(theory: str, columns: dict[str, list[Any]], rows: list[int], metrics: list[dict[str, Any]]) -> list[TheoryResult]:
    """The TheoryResults of the given rows of a file's columns, validated as every result is (a tampered
    file is a cache miss, never a bad input to the synthesizer), in one pydantic call: a validator
    call per row costs several times more. `metrics` = each row's, already parsed."""
    global _RESULTS_ADAPTER
    if _RESULTS_ADAPTER is None:
        from pydantic import TypeAdapter

        _RESULTS_ADAPTER = TypeAdapter(list[TheoryResult])
    fields = ("version", "status", "bias", "confidence", "label", "interpretation", "elapsed_ms", "message")
    picked = [[column[i] for i in rows] for column in (columns[FIELD_COLUMNS.get(name, name)] for name in fields)]
    names = ("theory", *fields, "metrics")
    return _RESULTS_ADAPTER.validate_python([dict(zip(names, values)) for values in zip(repeat(theory), *picked, metrics)])


FIELD_COLUMNS = {"version": "theory_version"}  # TheoryResult field -> column, where they differ


class FeatureStore:
    """Stored theory results under `root`; see the module docstring for the layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, symbol: str, granularity: str, theory: str, key: str) -> Path:
        return self.root / granularity / symbol / f"{theory}-{key}.parquet"

    def symbols(self, granularity: str) -> list[str]:
        """Symbols with at least one stored file at this granularity."""
        folder = self.root / granularity
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.parquet")))

    # -- reading ------------------------------------------------------------------------------

    def columns(self, symbol: str, granularity: str, theory: str, key: str) -> dict[str, list[Any]] | None:
        """The file's columns as lists, None when there is no file or it cannot be read (logged)."""
        path = self.path(symbol, granularity, theory, key)
        return self._columns(path)

    def _columns(self, path: Path) -> dict[str, list[Any]] | None:
        import pyarrow.parquet as pq

        try:
            # One file, one thread, no dataset layer: `read_table` imports pyarrow.dataset and starts a thread
            # pool on first use (0.2 s, more than reading every file of a backtest).
            table = pq.ParquetFile(path).read(use_threads=False)
            missing = [c for c in COLUMNS if c not in table.column_names]
            if missing:
                raise ValueError(f"columns missing: {', '.join(missing)}")
            return {name: table.column(name).to_pylist() for name in COLUMNS}
        except FileNotFoundError:
            return None
        except Exception as exc:  # a truncated, foreign or corrupt file is only a cache miss
            get_logger(path=str(path)).warning("feature store unreadable", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return None

    def read(
        self, symbol: str, granularity: str, theory: str, key: str, bar_times: "np.ndarray | Sequence[int]", digests: Sequence[str],
    ) -> dict[int, TheoryResult]:
        """Stored results of the given bars whose window digest matches, by bar time (unix seconds)."""
        path = self.path(symbol, granularity, theory, key)
        columns = self._columns(path)
        if not columns:
            return {}
        wanted = {int(t): d for t, d in zip(bar_times, digests)}
        out: dict[int, TheoryResult] = {}
        try:
            rows = [i for i, bar_time in enumerate(columns["bar_time"]) if wanted.get(bar_time) == columns["digest"][i]]
            # One JSON document for all the rows' metrics: a decoder call per row costs more than the parsing.
            metrics = json.loads("[" + ",".join(columns["metrics"][i] for i in rows) + "]")
            out = {columns["bar_time"][i]: result for i, result in zip(rows, results_at(theory, columns, rows, metrics))}
        except Exception as exc:
            get_logger(path=str(path)).warning("feature store unreadable", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return {}
        return out

    def frame(self, symbol: str, granularity: str, theory: str, key: str) -> "pd.DataFrame | None":
        """Every stored row of one file, metrics parsed into a dict column; None when there is none."""
        import pandas as pd

        columns = self.columns(symbol, granularity, theory, key)
        if not columns:
            return None
        frame = pd.DataFrame(columns)
        frame["metrics"] = [load_metrics(text) for text in frame["metrics"]]
        return frame

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def write(self, symbol: str, granularity: str, theory: str, key: str, rows: Sequence[tuple[int, str, TheoryResult]]) -> int:
        """Merge `(bar_time, digest, result)` rows into the file (a new row replaces the one of its bar); returns rows written.

        Results with status "error" are not stored: a time-out or a crash may not happen again.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        fresh = [_row(t, d, r) for t, d, r in rows if r.status != "error"]
        if not fresh:
            return 0
        path = self.path(symbol, granularity, theory, key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked(path):
            merged: dict[int, tuple[Any, ...]] = {}
            existing = self._columns(path)
            if existing:
                for i, bar_time in enumerate(existing["bar_time"]):
                    merged[bar_time] = tuple(existing[name][i] for name in COLUMNS)
            merged.update((row[0], row) for row in fresh)
            ordered = [merged[t] for t in sorted(merged)]
            table = pa.table({name: [row[i] for row in ordered] for i, name in enumerate(COLUMNS)}, schema=_schema())
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            create_private(temporary)
            try:
                pq.write_table(table, temporary)
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        return len(fresh)

