"""The core/plugin boundary, held both ways, and the package layout setuptools installs.

Core knows plugin kinds, never plugin modules or names; plugins, built-in or not, use only the
public API (`v7`, `v7.http`, `v7.testing`), never `v7.core`.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from helpers import REPO

CORE = REPO / "core"
PLUGINS = REPO / "plugins"
MAX_LINES = 500


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Absolute module names a file imports (relative imports resolved against its installed package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    relative_to = path.relative_to(REPO).with_suffix("").parts
    package = ["v7", *relative_to[:-1]] if relative_to[0] in ("core", "plugins") else ["v7"]
    if path.name == "__init__.py":
        package = ["v7", *relative_to[:-1]]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


@pytest.mark.parametrize("path", python_files(CORE), ids=lambda p: str(p.relative_to(REPO)))
def test_core_never_imports_a_plugin(path):
    bad = [f"line {line}: {module}" for line, module in imported_modules(path) if module == "v7.plugins" or module.startswith("v7.plugins.")]
    assert not bad, f"{path.relative_to(REPO)} imports plugins: {bad}"


@pytest.mark.parametrize("path", python_files(PLUGINS), ids=lambda p: str(p.relative_to(REPO)))
def test_plugins_use_only_the_public_api(path):
    bad = [f"line {line}: {module}" for line, module in imported_modules(path) if module == "v7.core" or module.startswith("v7.core.")]
    assert not bad, f"{path.relative_to(REPO)} imports v7.core: {bad}"


def test_the_example_plugin_uses_only_the_public_api():
    for path in python_files(REPO / "examples"):
        text = path.read_text(encoding="utf-8")
        assert "v7.core" not in text and "v7.plugins" not in text, path


def builtin_names() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["v7"])


@pytest.mark.parametrize("path", python_files(CORE), ids=lambda p: str(p.relative_to(REPO)))
def test_core_names_no_builtin_plugin(path):
    """Built-in names appear in core only in the config's defaults (`DEFAULT_ENABLED`), their one home
    (and in `EXPORT_FORMATS`, where `jsonl` is a file format, not the sink)."""
    names = builtin_names()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id in ("DEFAULT_ENABLED", "EXPORT_FORMATS") for t in targets):
                allowed.update(id(n) for n in ast.walk(node))
    bad = [
        f"line {node.lineno}: {node.value!r}" for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names and id(node) not in allowed
    ]
    assert not bad, f"{path.relative_to(REPO)} names built-in plugins: {bad}"


@pytest.mark.parametrize("path", python_files(CORE) + python_files(PLUGINS), ids=lambda p: str(p.relative_to(REPO)))
def test_one_job_per_file(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it by job (limit {MAX_LINES})"


def test_every_package_folder_is_installed():
    """A package folder missing from the setuptools mapping would be left out of the wheel."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    packages = set(setuptools["packages"])
    assert set(mapping) == packages, f"package-dir and packages differ: {set(mapping) ^ packages}"
    for name, folder in mapping.items():
        assert (REPO / folder).is_dir(), f"{name} maps to {folder}, which does not exist"
        if name != "v7.data":
            assert (REPO / folder / "__init__.py").is_file(), f"{folder} has no __init__.py"
    mapped = {(REPO / folder).resolve() for folder in mapping.values()}
    for root in (CORE, PLUGINS, REPO / "src" / "v7"):
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            assert init.parent.resolve() in mapped, f"{init.parent.relative_to(REPO)} is a package but not in [tool.setuptools] package-dir"
