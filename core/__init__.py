"""V7's core: models, hookspecs, registry, config, engine and CLI."""

from functools import lru_cache
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _installed_version()
    raise AttributeError(name)


@lru_cache(maxsize=1)
def _installed_version() -> str:
    """The installed distribution's version, read once: reading the metadata costs milliseconds (every backtest asks)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("v7")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"
