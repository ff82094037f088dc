"""Equity curves kept with a stored backtest: a few thousand points, enough for a chart, never every bar."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

EQUITY_POINTS = 2000  # bars kept per curve: a chart's width in pixels, a few tens of kB of JSON


class EquityCurve(BaseModel):
    """Each book's equity (1.0 at the first signal bar) at up to `EQUITY_POINTS` bars, evenly spaced
    from the first bar to the last (both kept), so the dashboard draws it from the stored result."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    times: list[int] = Field(description="the bars' times, unix seconds")
    books: dict[str, list[float]] = Field(description="each book's equity at those bars (strategy and buy_and_hold, or portfolio, unsized and basket)")

    @classmethod
    def of(cls, times: "np.ndarray", books: "dict[str, np.ndarray]", points: int = EQUITY_POINTS) -> "EquityCurve":
        import numpy as np

        n = len(times)
        picked = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(np.int64)) if n else np.zeros(0, dtype=np.int64)
        return cls(
            times=[int(t) for t in np.asarray(times)[picked]],
            books={name: [float(v) for v in np.asarray(values)[picked]] for name, values in books.items()},
        )
