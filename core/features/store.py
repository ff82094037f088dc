"""Theory results per bar, as Parquet: one file per (symbol, granularity, theory, theory key).

`<root>/<granularity>/<symbol>/<theory>-<key>.parquet` holds one row per bar time, with the digest
of the window the theory saw. Metrics are float64 columns `metric.<name>` (null where a row has no
such metric) with each row's names in order in `metric_names` and their `metrics_digest`: reading
them is a few numpy gathers, not a JSON parse per row (files of the first format, with the
metrics as JSON text, are still read). Writers merge with what is there under an `fcntl.flock`
lock and replace the file atomically (a temporary file in the same folder, then `os.replace`), so
readers, which take no lock, see the old file or the new one, never half of one. Files are
owner-only. A file that cannot be read is logged and treated as empty: the results are computed again.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..files import create_private
from ..logs import get_logger
from ..models import TheoryResult
from ..theory_columns import TheoryColumns
from .keys import metrics_digests

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd
    import pyarrow as pa

# The columns every file has (both formats); the current one adds `metric_names`, `metrics_digest` and a column per metric.
FIXED = ("bar_time", "digest", "status", "bias", "confidence", "label", "interpretation", "message", "elapsed_ms", "theory_version")
COLUMNS = (*FIXED, "metric_names", "metrics_digest")
METRIC = "metric."  # prefix of a metric's column
LEGACY_METRICS = "metrics"  # the first format's column: each row's metrics as JSON text
_TYPES = {"bar_time": "int64", "bias": "float64", "confidence": "float64", "elapsed_ms": "float64"}  # the rest: string


def _table(rows: "Sequence[tuple[int, str, TheoryResult]]") -> "pa.Table":
    """Rows (in bar-time order) as a table of the current format."""
    import pyarrow as pa

    results = [r for _, _, r in rows]
    metrics = [r.metrics for r in results]
    orders: dict[tuple[str, ...], str] = {}  # each order of metric names met, as its JSON list
    for m in metrics:
        key = tuple(m)
        if key not in orders:
            orders[key] = json.dumps(list(key), separators=(",", ":"))
    names = dict.fromkeys(name for key in orders for name in key)  # every metric name, in order of first appearance
    data: dict[str, Any] = {
        "bar_time": [int(t) for t, _, _ in rows], "digest": [d for _, d, _ in rows],
        "status": [r.status for r in results], "bias": [r.bias for r in results], "confidence": [float(r.confidence) for r in results],
        "label": [r.label for r in results], "interpretation": [r.interpretation for r in results], "message": [r.message for r in results],
        "elapsed_ms": [float(r.elapsed_ms) for r in results], "theory_version": [r.version for r in results],
        "metric_names": [orders[tuple(m)] for m in metrics],
        "metrics_digest": metrics_digests(metrics),
    }
    fields = [(name, pa.int64() if _TYPES.get(name) == "int64" else pa.float64() if name in _TYPES else pa.string()) for name in COLUMNS]
    for name in names:
        data[METRIC + name] = [m.get(name) for m in metrics]  # floats already (TheoryResult); None = not in that row
        fields.append((METRIC + name, pa.float64()))
    return pa.table(data, schema=pa.schema(fields))


REQUIRED = ("status", "confidence", "label", "interpretation", "elapsed_ms", "theory_version")  # never null in a row


def _columns(table: "pa.Table", theory: str) -> TheoryColumns:
    """Every row of the table as checked columns (a tampered file raises: a cache miss, never a bad
    input to the synthesizer). Metrics come from the metric columns, or the first format's JSON."""
    import numpy as np

    for name in FIXED:
        kind = str(table.schema.field(name).type)
        expected = {"int64": "int64", "float64": "double"}.get(_TYPES.get(name, ""), "string")
        if kind != expected and not (kind == "null" and name in ("bias", "message")):
            raise ValueError(f"column {name} is {kind}, not {expected}")
    nulls = [name for name in REQUIRED if table.column(name).null_count]
    if nulls:
        raise ValueError(f"column {nulls[0]} has empty rows")

    def floats(name: str) -> "np.ndarray":
        column = table.column(name)
        if str(column.type) == "null":  # every row empty (None), as an older writer could leave it
            return np.full(len(column), np.nan)
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)

    bias = floats("bias")
    if int(np.isnan(bias).sum()) != table.column("bias").null_count:
        raise ValueError("column bias holds NaN")
    metrics: dict[str, np.ndarray] = {}
    if "metric_names" in table.column_names:
        orders = table.column("metric_names").to_pylist()
        parsed = {order: tuple(json.loads(order)) for order in set(orders)}  # TypeError on a null order: a damaged file
        names = [parsed[order] for order in orders]
        for name in dict.fromkeys(name for key in parsed.values() for name in key):
            metrics[name] = floats(METRIC + name)  # KeyError: a damaged file
            column = table.column(METRIC + name)
            if column.null_count:  # empty where no row names it; a row naming it with no value is damaged
                named = np.fromiter((name in key for key in names), dtype=bool, count=len(names))
                if (named & np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)).any():
                    raise ValueError(f"column {METRIC + name} is empty in a row that names it")
        digests = table.column("metrics_digest").to_pylist() if "metrics_digest" in table.column_names else None
    else:
        rows = json.loads("[" + ",".join(table.column(LEGACY_METRICS).to_pylist()) + "]")
        if any(value is None for row in rows for value in row.values()):
            raise ValueError(f"column {LEGACY_METRICS} holds an empty metric")
        names = [tuple(row) for row in rows]
        for name in dict.fromkeys(name for key in set(names) for name in key):
            metrics[name] = np.array([row.get(name, np.nan) for row in rows], dtype=np.float64)
        digests = None
    if digests is not None and any(d is None for d in digests):
        raise ValueError("column metrics_digest has empty rows")
    return TheoryColumns(
        theory, version=table.column("theory_version").to_pylist(), status=table.column("status").to_pylist(), bias=bias,
        confidence=floats("confidence"), label=table.column("label").to_pylist(), interpretation=table.column("interpretation").to_pylist(),
        message=table.column("message").to_pylist(), elapsed_ms=floats("elapsed_ms"),
        metric_names=names, metrics=metrics, digests=digests,
    )


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

    def _read_table(self, path: Path) -> "pa.Table | None":
        """The file as a table, None when there is none or it cannot be read (logged)."""
        import pyarrow.parquet as pq

        try:
            # One file, one thread, no dataset layer: `read_table` imports pyarrow.dataset and starts a thread
            # pool on first use (0.2 s, more than reading every file of a backtest).
            table = pq.ParquetFile(path).read(use_threads=False)
            missing = [c for c in FIXED if c not in table.column_names]
            if "metric_names" not in table.column_names and LEGACY_METRICS not in table.column_names:
                missing.append("metric_names")
            if missing:
                raise ValueError(f"columns missing: {', '.join(missing)}")
            return table
        except FileNotFoundError:
            return None
        except Exception as exc:  # a truncated, foreign or corrupt file is only a cache miss
            self._unreadable(path, exc)
            return None

    @staticmethod
    def _unreadable(path: Path, exc: Exception) -> None:
        get_logger(path=str(path)).warning("feature store unreadable", path=str(path), error=f"{type(exc).__name__}: {exc}")

    def read_columns(
        self, symbol: str, granularity: str, theory: str, key: str, bar_times: "np.ndarray | Sequence[int]", digests: Sequence[str],
    ) -> tuple[list[int], TheoryColumns] | None:
        """The stored results of the given bars whose window digest matches, as columns in the file's
        bar-time order, with those bar times (unix seconds); None when none is stored."""
        path = self.path(symbol, granularity, theory, key)
        table = self._read_table(path)
        if table is None:
            return None
        wanted = {int(t): d for t, d in zip(bar_times, digests)}
        try:
            times, windows = table.column("bar_time").to_pylist(), table.column("digest").to_pylist()
            rows = [i for i, bar_time in enumerate(times) if wanted.get(bar_time) == windows[i]]
            if not rows:
                return None
            if len(rows) < len(times):
                table = table.take(rows)
            return [times[i] for i in rows], _columns(table, theory)
        except Exception as exc:
            self._unreadable(path, exc)
            return None

    def read(
        self, symbol: str, granularity: str, theory: str, key: str, bar_times: "np.ndarray | Sequence[int]", digests: Sequence[str],
    ) -> dict[int, TheoryResult]:
        """Stored results of the given bars whose window digest matches, by bar time (unix seconds)."""
        found = self.read_columns(symbol, granularity, theory, key, bar_times, digests)
        return {} if found is None else dict(zip(found[0], found[1].results()))

    def frame(self, symbol: str, granularity: str, theory: str, key: str) -> "pd.DataFrame | None":
        """Every stored row of one file, metrics parsed into a dict column; None when there is none."""
        import pandas as pd

        path = self.path(symbol, granularity, theory, key)
        table = self._read_table(path)
        if table is None:
            return None
        try:
            columns = _columns(table, theory)
            frame = pd.DataFrame({name: table.column(name).to_pylist() for name in FIXED})
            frame["metrics"] = [columns.metrics(i) for i in range(len(columns))]
        except Exception as exc:
            self._unreadable(path, exc)
            return None
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

        Results with status "error" are not stored: a time-out or a crash may not happen again. A
        file of the first format is rewritten in the current one; one that cannot be read is replaced.
        """
        import pyarrow.parquet as pq

        fresh = [(int(t), d, r) for t, d, r in rows if r.status != "error"]
        if not fresh:
            return 0
        path = self.path(symbol, granularity, theory, key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked(path):
            merged: dict[int, tuple[int, str, TheoryResult]] = {}
            existing = self._read_table(path)
            if existing is not None:
                try:
                    times, windows = existing.column("bar_time").to_pylist(), existing.column("digest").to_pylist()
                    merged = {t: (t, w, result) for t, w, result in zip(times, windows, _columns(existing, theory).results())}
                except Exception as exc:
                    self._unreadable(path, exc)
            merged.update((row[0], row) for row in fresh)
            table = _table([merged[t] for t in sorted(merged)])
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            create_private(temporary)
            try:
                pq.write_table(table, temporary)
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        return len(fresh)
