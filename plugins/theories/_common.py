"""Small numeric helpers the built-in theories share (the abstention checks are public in `v7`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def robust_std(values: "np.ndarray") -> float:
    """Scale estimate that ignores a few outliers: 1.4826·MAD, falling back to the plain std when MAD is 0."""
    import numpy as np

    mad = float(np.median(np.abs(values - np.median(values)))) * 1.482602218505602
    if mad > 0.0:
        return mad
    return float(np.std(values))


def clip(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value
