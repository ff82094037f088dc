"""What identifies a stored theory result: the theory's key (what shapes its output) and the window's digest (its input)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..config import V7Config
    from ..models import CandleSeries

WINDOW_ARRAYS = ("timestamp", "open", "high", "low", "close", "volume")


def theory_key(config: "V7Config", theory_name: str, theory_version: str) -> str:
    """16 hex digits of sha256 over the theory's name, version, validated config, the lookback and the granularity.

    Two runs with the same key hand the theory the same kind of input and settings: a result stored
    under it is the one the theory would compute again on the same window.
    """
    plugin_config = config.plugin_config("theory", theory_name)
    data = {
        "theory": theory_name,
        "version": str(theory_version),
        "config": plugin_config.model_dump(mode="json", by_alias=True) if plugin_config is not None else {},
        "lookback": config.engine.lookback,
        "granularity": config.engine.granularity,
    }
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


MASK = (1 << 64) - 1
BASE = 0x100000001B3  # the polynomial's base (FNV's prime), odd: every power is invertible mod 2**64
BASE_INVERSE = pow(BASE, -1, 1 << 64)
COLUMN_FACTORS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93, 0xA0761D6478BD642F, 0xE7037ED1A0B428DB)


def row_hashes(series: "CandleSeries") -> "np.ndarray":
    """A 64-bit hash of each candle's six values (their exact bits): one pass over the whole history."""
    import numpy as np

    with np.errstate(over="ignore"):
        mixed = np.zeros(len(series), dtype=np.uint64)
        for name, factor in zip(WINDOW_ARRAYS, COLUMN_FACTORS):
            column = np.ascontiguousarray(getattr(series, name))
            bits = column.astype(np.int64).view(np.uint64) if column.dtype.kind in "iu" else column.astype(np.float64).view(np.uint64)
            mixed = (mixed ^ bits) * np.uint64(factor)
            mixed ^= mixed >> np.uint64(29)
    return mixed


def window_digests(history: "CandleSeries", indices: "list[int]", lookback: int) -> dict[int, str]:
    """The digest of the window at each bar t (the last `lookback` candles up to t), all at once.

    A polynomial hash over the row hashes, Σ h_i · BASE^(end−1−i) mod 2**64, read from prefix sums
    in O(1) per window: the same value `window_digest` gives for that window on its own. The prefix
    sums are numpy's wrapping uint64 arithmetic: P[k] = BASE^(k−1) · Σ_{i<k} h_i · BASE^(−i), BASE
    being odd and so invertible modulo 2**64.
    """
    import numpy as np

    if not len(indices):
        return {}
    hashes = row_hashes(history)[: max(indices) + 1]
    n = hashes.shape[0]
    with np.errstate(over="ignore"):
        steps = np.full(n + 1, BASE, dtype=np.uint64)
        steps[0] = 1
        powers = np.cumprod(steps, dtype=np.uint64)  # BASE^k
        steps[1:] = BASE_INVERSE
        inverse = np.cumprod(steps, dtype=np.uint64)  # BASE^-k
        sums = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(hashes * inverse[:n], dtype=np.uint64, out=sums[1:])
        prefix = np.zeros(n + 1, dtype=np.uint64)
        prefix[1:] = powers[:n] * sums[1:]  # P[k] = BASE^(k-1) · S[k]
        ends = np.asarray(indices, dtype=np.int64) + 1
        firsts = np.maximum(0, ends - lookback)
        values = prefix[ends] - prefix[firsts] * powers[ends - firsts]
    return {t: _finish(int(v), int(e - f)) for t, v, e, f in zip(indices, values.tolist(), ends.tolist(), firsts.tolist())}


def window_digest(window: "CandleSeries") -> str:
    """16 hex digits identifying a window's candles (every bit of every value, and how many): an
    edited candle changes it. Equal to `window_digests` of the same window inside a longer history."""
    value = 0
    for h in row_hashes(window):
        value = (value * BASE + int(h)) & MASK
    return _finish(value, len(window))


def _finish(value: int, length: int) -> str:
    """Fold the length in and mix, so windows of different sizes never share a digest by accident."""
    digest = hashlib.blake2b((value ^ (length * 0x9E3779B97F4A7C15 & MASK)).to_bytes(8, "little"), digest_size=8)
    return digest.hexdigest()


MANTISSA_BITS = 34  # 2**-34 ≈ 5.8e-11: about ten significant digits


def metrics_digests(many: "list[dict[str, float]]") -> list[str]:
    """`metrics_digest` of each dict, rounded and hashed a whole column at a time (a backtest's thousands of bars)."""
    import numpy as np

    out: list[str] = [""] * len(many)
    groups: dict[tuple[str, ...], list[int]] = {}
    for position, metrics in enumerate(many):
        groups.setdefault(tuple(sorted(metrics)), []).append(position)
    for names, positions in groups.items():
        prefix = ";".join(names).encode() + b"|"
        values = np.array([[many[p][name] for name in names] for p in positions], dtype=np.float64).reshape(len(positions), len(names))
        with np.errstate(invalid="ignore", over="ignore"):
            mantissa, exponent = np.frexp(values)
            rounded = np.ldexp(np.round(mantissa * 2.0**MANTISSA_BITS) / 2.0**MANTISSA_BITS, exponent) + 0.0  # + 0.0: -0.0 becomes 0.0
        rounded[np.isnan(values)] = np.nan  # one bit pattern for every NaN
        for p, row in zip(positions, rounded):
            out[p] = hashlib.blake2b(prefix + row.tobytes(), digest_size=8).hexdigest()
    return out


def metrics_digest(metrics: dict[str, float]) -> str:
    """Metric names and values rounded to about ten significant digits (34 mantissa bits), hashed:
    equal digests mean the same numbers for any purpose, whichever path computed them."""
    return metrics_digests([metrics])[0]
