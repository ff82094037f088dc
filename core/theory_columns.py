"""One theory's results at many bars, as columns: what batch paths read instead of a TheoryResult per bar.

A backtest that reads 10,000 stored results would otherwise make (and validate) 10,000 pydantic
objects to hand a batch synthesizer numbers it then puts back into arrays. The columns are checked
once, a whole column at a time, against the rules `TheoryResult` enforces on each field, so a bar's
`result(i)` is made without validating it again; `TheoryColumns.of` wraps results already made and
hands them back as they are.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence, get_args

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .models import TheoryResult


class TheoryColumns:
    """One theory's results at consecutive bars of a batch, field by field; read-only.

    `bias` is NaN where a result has no bias (None; a stored bias is never NaN); `metric(name)`
    is NaN where a bar's result has no such metric, `has_metric(name)` says which bars have it.
    """

    __slots__ = ("theory", "version", "status", "bias", "confidence", "label", "interpretation", "message", "elapsed_ms",
                 "metric_names", "_metrics", "_digests", "_results", "_ok")

    def __init__(
        self, theory: str, *, version: Sequence[str], status: Sequence[str], bias: "np.ndarray", confidence: "np.ndarray",
        label: Sequence[str], interpretation: Sequence[str], message: Sequence[str | None], elapsed_ms: "np.ndarray",
        metric_names: Sequence[tuple[str, ...]], metrics: "dict[str, np.ndarray]", digests: Sequence[str] | None = None,
        results: "Sequence[TheoryResult] | None" = None,
    ) -> None:
        """Checks every column (raises ValueError naming the theory, the column and the first bad bar)."""
        import numpy as np

        self.theory = theory
        self.version, self.status, self.label = tuple(version), tuple(status), tuple(label)
        self.interpretation, self.message, self.metric_names = tuple(interpretation), tuple(message), tuple(metric_names)
        self.bias, self.confidence, self.elapsed_ms = _frozen(bias, True), _frozen(confidence, True), _frozen(elapsed_ms, True)
        self._metrics = {name: _frozen(values, True) for name, values in metrics.items()}
        self._digests = None if digests is None else tuple(digests)
        self._results = None if results is None else tuple(results)
        self._check()
        self._ok = _frozen(np.fromiter((s == "ok" for s in self.status), dtype=bool, count=len(self.status)))

    def _check(self) -> None:
        import numpy as np

        from .models import TheoryStatus

        n = len(self.status)
        sized: dict[str, Any] = {
            "version": self.version, "label": self.label, "interpretation": self.interpretation, "message": self.message,
            "bias": self.bias, "confidence": self.confidence, "elapsed_ms": self.elapsed_ms, "metric_names": self.metric_names,
            **{f"metric {name!r}": values for name, values in self._metrics.items()},
        }
        if self._digests is not None:
            sized["digests"] = self._digests
        if self._results is not None:
            sized["results"] = self._results
        for column, values in sized.items():
            if getattr(values, "ndim", 1) != 1:
                raise ValueError(f"theory {self.theory!r}: column {column} is {values.ndim}-dimensional, not a value per bar")
            if len(values) != n:
                raise ValueError(f"theory {self.theory!r}: column {column} has {len(values)} bars, status has {n}")

        def bad(column: str, mask: "np.ndarray | list[bool]", why: str) -> None:
            rows = np.flatnonzero(np.asarray(mask, dtype=bool))
            if rows.size:
                raise ValueError(f"theory {self.theory!r}: column {column} at bar {int(rows[0])}: {why}")

        # Each check looks at the set of values (or of their types) first: a pass over C-level maps, not a Python loop per bar.
        allowed = set(get_args(TheoryStatus))
        if not set(self.status) <= allowed:
            bad("status", [s not in allowed for s in self.status], f"must be one of {sorted(allowed)}")
        for column in ("version", "label", "interpretation"):
            values = getattr(self, column)
            if not set(map(type, values)) <= {str}:
                bad(column, [type(v) is not str for v in values], "must be a string")
        if not set(map(type, self.message)) <= {str, type(None)}:
            bad("message", [v is not None and type(v) is not str for v in self.message], "must be a string or None")
        bad("bias", ~np.isnan(self.bias) & ~((self.bias >= -1.0) & (self.bias <= 1.0)), "must lie in [-1, 1] (or be None)")
        bad("confidence", ~((self.confidence >= 0.0) & (self.confidence <= 1.0)), "must lie in [0, 1]")
        if not set(map(type, self.metric_names)) <= {tuple}:
            bad("metric_names", [type(names) is not tuple for names in self.metric_names], "must be a tuple of metric names")
        for names in set(self.metric_names):
            if not all(type(name) is str for name in names):
                raise ValueError(f"theory {self.theory!r}: metric names {names!r} are not a tuple of strings")
            missing = [name for name in names if name not in self._metrics]
            if missing:
                raise ValueError(f"theory {self.theory!r}: metric {missing[0]!r} is named but has no column")

    @classmethod
    def of(cls, theory: str, results: "Sequence[TheoryResult]", digests: Sequence[str | None] | None = None) -> "TheoryColumns":
        """Results already made (and validated), as columns; `result(i)` hands back the very objects.
        `digests` = each result's metrics digest where known (None: computed when first asked for)."""
        import numpy as np

        wrong = next((i for i, r in enumerate(results) if r.theory != theory), None)
        if wrong is not None:
            raise ValueError(f"bar {wrong}'s result is theory {results[wrong].theory!r}, not {theory!r}")
        names = [tuple(r.metrics) for r in results]
        metrics: dict[str, np.ndarray] = {}
        for name in dict.fromkeys(name for key in set(names) for name in key):
            metrics[name] = np.array([r.metrics.get(name, math.nan) for r in results], dtype=np.float64)
        known = None
        if digests is not None:
            known = list(digests)
            if any(d is None for d in known):
                from .features.keys import metrics_digests

                missing = [i for i, d in enumerate(known) if d is None]
                for i, digest in zip(missing, metrics_digests([results[i].metrics for i in missing])):
                    known[i] = digest
        return cls(
            theory, version=[r.version for r in results], status=[r.status for r in results],
            bias=np.array([math.nan if r.bias is None else r.bias for r in results], dtype=np.float64),
            confidence=np.array([r.confidence for r in results], dtype=np.float64),
            label=[r.label for r in results], interpretation=[r.interpretation for r in results], message=[r.message for r in results],
            elapsed_ms=np.array([r.elapsed_ms for r in results], dtype=np.float64), metric_names=names, metrics=metrics,
            digests=known, results=results,
        )

    def __len__(self) -> int:
        return len(self.status)

    @property
    def ok(self) -> "np.ndarray":
        """True at the bars whose result is `ok`."""
        return self._ok

    def metric(self, name: str) -> "np.ndarray":
        """The metric's value at each bar, NaN where the bar's result has none."""
        import numpy as np

        values = self._metrics.get(name)
        return np.full(len(self), np.nan) if values is None else values

    def has_metric(self, name: str) -> "np.ndarray":
        """True at the bars whose result has the metric (its value may still be NaN)."""
        import numpy as np

        present = {names: name in names for names in set(self.metric_names)}
        return np.fromiter((present[names] for names in self.metric_names), dtype=bool, count=len(self))

    def metrics(self, i: int) -> dict[str, float]:
        """Bar i's metrics, in the theory's own order."""
        return {name: float(self._metrics[name][i]) for name in self.metric_names[i]}

    @property
    def metrics_digests(self) -> tuple[str, ...]:
        """Each bar's `metrics_digest` (core/features/keys.py), computed a column at a time when first asked for."""
        if self._digests is None:
            from .features.keys import metrics_digests

            made = self._results
            self._digests = tuple(metrics_digests([r.metrics for r in made] if made is not None else [self.metrics(i) for i in range(len(self))]))
        return self._digests

    def result(self, i: int) -> "TheoryResult":
        """Bar i as a TheoryResult (the columns were checked as a whole: it is not validated again)."""
        if self._results is not None:
            return self._results[i]
        from .models import TheoryResult

        bias = float(self.bias[i])
        return TheoryResult.model_construct(
            theory=self.theory, version=self.version[i], status=self.status[i], bias=None if bias != bias else bias,
            confidence=float(self.confidence[i]), label=self.label[i], interpretation=self.interpretation[i],
            metrics=self.metrics(i), elapsed_ms=float(self.elapsed_ms[i]), message=self.message[i],
        )

    def results(self) -> "tuple[TheoryResult, ...]":
        """Every bar's TheoryResult, in bar order (made once, then kept)."""
        if self._results is None:
            self._results = tuple([self.result(i) for i in range(len(self))])
        return self._results

    def take(self, rows: Sequence[int]) -> "TheoryColumns":
        """The given bars, in that order, as columns of their own."""
        import numpy as np

        index = np.asarray(rows, dtype=np.intp)
        new = object.__new__(TheoryColumns)
        new.theory = self.theory
        for name in ("version", "status", "label", "interpretation", "message", "metric_names"):
            column = getattr(self, name)
            setattr(new, name, tuple([column[i] for i in rows]))
        new.bias, new.confidence, new.elapsed_ms = _frozen(self.bias[index]), _frozen(self.confidence[index]), _frozen(self.elapsed_ms[index])
        new._metrics = {name: _frozen(values[index]) for name, values in self._metrics.items()}
        new._digests = None if self._digests is None else tuple([self._digests[i] for i in rows])
        new._results = None if self._results is None else tuple([self._results[i] for i in rows])
        new._ok = _frozen(self._ok[index])
        return new  # already checked: a subset of checked columns

    def __repr__(self) -> str:
        return f"TheoryColumns({self.theory!r}, {len(self)} bars)"

    def __reduce__(self) -> tuple:
        """Pickled as its columns (forked and Dask workers get the stored results this way)."""
        return (_rebuild, (self.theory, {name: getattr(self, name) for name in self.__slots__ if name != "theory"}))


def _frozen(values: Any, copy: bool = False) -> "np.ndarray":
    """A read-only array (float64 unless boolean), copied when it may be the caller's: a batch path (or
    the caller) writing into a checked column would change what sizing and others read after it."""
    import numpy as np

    dtype = bool if getattr(values, "dtype", None) == bool else np.float64
    array = np.array(values, dtype=dtype) if copy else np.asarray(values, dtype=dtype).view()
    array.flags.writeable = False
    return array


def _rebuild(theory: str, state: dict[str, Any]) -> TheoryColumns:
    new = object.__new__(TheoryColumns)
    new.theory = theory
    for name, value in state.items():
        setattr(new, name, value)
    new.bias, new.confidence, new.elapsed_ms, new._ok = _frozen(new.bias), _frozen(new.confidence), _frozen(new.elapsed_ms), _frozen(new._ok)
    new._metrics = {name: _frozen(values) for name, values in new._metrics.items()}
    return new


def rows_of(columns: Sequence[TheoryColumns], count: int) -> "list[list[TheoryResult]]":
    """Bar by bar: each bar's results, one per column (config order)."""
    made = [c.results() for c in columns]
    return [[column[i] for column in made] for i in range(count)]
