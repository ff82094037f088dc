"""A cache of the `v7 plugins` listing, so the command answers without importing every plugin.

Importing the plugins costs pydantic and every plugin module (~0.3 s on a small machine). The
listing only changes when an installed distribution, an entry point or a plugin's source files
change, so it is cached under a fingerprint of exactly those: any of them changing is a miss,
and a miss is the full load. `V7_NO_PLUGIN_CACHE=1` turns the cache off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from .hookspecs import PROJECT


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "v7" / "plugins.json"


def fingerprint() -> str | None:
    """A digest of the entry points, their distributions and the files of their packages; None when unsure."""
    import importlib.metadata

    parts: list[Any] = []
    folders: set[str] = set()
    try:
        for ep in importlib.metadata.entry_points(group=PROJECT):
            dist = ep.dist
            parts.append([ep.name, ep.value, getattr(dist, "name", None), getattr(dist, "version", None)])
            spec = importlib.util.find_spec(ep.module)
            if spec is None or not spec.origin:
                return None
            folders.add(os.path.dirname(spec.origin))
        core = importlib.util.find_spec("v7.core")
        if core is None or not core.origin:
            return None
        folders.add(os.path.dirname(core.origin))
        for folder in sorted(folders):
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if entry.name.endswith(".py"):
                    stat = entry.stat()
                    parts.append([entry.path, stat.st_mtime_ns, stat.st_size])
    except Exception:  # a broken plugin package, an unreadable folder: the full load will say what
        return None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def read(key: str | None) -> list[dict[str, Any]] | None:
    if key is None or os.environ.get("V7_NO_PLUGIN_CACHE"):
        return None
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return None
    return data.get("rows") if isinstance(data, dict) and data.get("key") == key else None


def write(key: str | None, rows: list[dict[str, Any]]) -> None:
    if key is None or os.environ.get("V7_NO_PLUGIN_CACHE"):
        return
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"key": key, "rows": rows}))
        os.replace(temporary, path)
    except OSError:  # a read-only home: listing still works, just without the cache
        pass
