"""Small numeric helpers with one home, public in `v7`."""

from __future__ import annotations

import math
from typing import Sequence


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default) of already sorted values; None when empty."""
    if not len(sorted_values):
        return None
    position = q * (len(sorted_values) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)
