"""What identifies a stored theory result: the theory's key (what shapes its output) and the window's digest (its input)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
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


def window_digest(window: "CandleSeries") -> str:
    """blake2b (8 bytes, hex) over the bytes of the window's six arrays: an edited candle changes it."""
    import numpy as np

    digest = hashlib.blake2b(digest_size=8)
    for name in WINDOW_ARRAYS:
        array = np.ascontiguousarray(getattr(window, name))
        digest.update(array.dtype.str.encode())
        digest.update(array.shape[0].to_bytes(8, "little"))
        digest.update(array.view(np.uint8))  # the bytes themselves, without copying them
    return digest.hexdigest()
