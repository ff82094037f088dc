"""Helpers shared by the tests: run the real `v7` CLI, and build throwaway plugin distributions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BTC_CSV = REPO / "data" / "candles" / "BTC-USD.csv"


def make_distribution(site: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """A minimal installed distribution (dist-info + modules) that importlib.metadata discovers on sys.path."""
    site.mkdir(parents=True, exist_ok=True)
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[v7]"] + [f"{ep} = {target}" for ep, target in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def run_v7(*args: str, cwd: Path, extra_path: Path | None = None, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `python -m v7.core.cli` the way a user runs `v7` (a real process, real entry points)."""
    environment = dict(os.environ)
    environment.pop("PYTHONPATH", None)
    if extra_path is not None:
        environment["PYTHONPATH"] = str(extra_path)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "v7.core.cli", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout,
    )


def approx_tree(value):
    """`value` with every float wrapped in pytest.approx, at any depth (SQL and Python may sum in another order)."""
    import pytest

    if isinstance(value, dict):
        return {k: approx_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx_tree(v) for v in value]
    return pytest.approx(value) if isinstance(value, float) else value
