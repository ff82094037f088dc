"""End to end: the example plugin installed into a fresh virtual environment, as a user would.

Offline and fast: the new environment reuses this interpreter's installed packages through a
`.pth` file (which also runs their `.pth` files, so an editable V7 install works there too), and
the example is built with `pip install --no-deps --no-build-isolation --no-index`. V7 is run as
a real process, `<venv>/bin/python -m v7.core.cli`, so discovery goes through real entry points.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "v7-example-theory"
BUILT_IN_THEORIES = ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
BUILD_LEFTOVERS = ("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".venv", "*.db", "*.db-*")


@dataclass(frozen=True)
class Venv:
    root: Path
    python: Path
    example: Path  # the copy of the example that was installed (builds write into the source tree)

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}}
        env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
        return subprocess.run(
            [str(self.python), *args], cwd=cwd or self.root, env=env, capture_output=True, text=True, timeout=timeout
        )

    def check(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        done = self.run(*args, cwd=cwd, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done

    def v7(self, *args: str) -> subprocess.CompletedProcess:
        return self.check("-m", "v7.core.cli", *args)


def parent_site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return dirs


def v7_entry_points(venv: Venv) -> list[str] | None:
    """Names in the `v7` entry-point group as the new environment sees them; None if v7 is not importable."""
    done = venv.run("-c", "import json, importlib.metadata as m, v7.core.registry; "
                          "print(json.dumps(sorted(e.name for e in m.entry_points(group='v7'))))")
    return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail("building the example offline needs setuptools in the test environment: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("example-plugin")
    # Without pip of its own when this interpreter has one (seen through the .pth): saves seconds.
    with_pip = importlib.util.find_spec("pip") is None
    subprocess.run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(root / "venv")], check=True)
    python = root / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # `import` lines in a .pth run at startup; addsitedir also processes that directory's .pth files.
    lines = [f"import site; site.addsitedir({d!r})" for d in parent_site_dirs()]
    Path(purelib, "_v7_test_parent_site.pth").write_text("\n".join(lines) + "\n")
    venv = Venv(root, python, root / "v7-example-theory")

    entry_points = v7_entry_points(venv)
    if entry_points is None or "replay" not in entry_points:
        # V7 or its entry points are not visible this way: install V7 itself from a copy of the repository.
        source = root / "v7-source"
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "tests", "examples", "benchmarks", *BUILD_LEFTOVERS))
        venv.check("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", str(source), timeout=300)
        entry_points = v7_entry_points(venv)
    assert entry_points is not None and "replay" in entry_points, "v7 is not importable in the new environment"
    if "rsi" in entry_points:
        pytest.fail("v7-example-theory is already installed in the test environment: pip uninstall v7-example-theory")

    shutil.copytree(EXAMPLE, venv.example, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    venv.check("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", str(venv.example), timeout=300)
    return venv


def write_config(path: Path, theories: list[str], database: Path) -> Path:
    enabled = ", ".join(f'"{name}"' for name in theories)
    path.write_text(
        f"""
[engine]
symbols = ["BTC-USD", "ETH-USD"]
granularity = "1h"
lookback = 1000

[logging]
level = "warning"

[feeds]
enabled = ["replay"]

[theories]
enabled = [{enabled}]

[theories.rsi]
period = 21

[formatters]
enabled = ["markdown"]

[synthesizer]
use = "consensus"

[sinks]
enabled = ["sqlite"]

[sinks.sqlite]
path = {json.dumps(str(database))}
""",
        encoding="utf-8",
    )
    return path


def stored(database: Path, query: str) -> list[sqlite3.Row]:
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def test_the_example_is_installed_in_the_new_environment_only(venv):
    done = venv.check("-c", "import v7_example_theory.rsi as m; print(m.__file__)")
    assert Path(done.stdout.strip()).resolve().is_relative_to((venv.root / "venv").resolve())


def test_v7_plugins_lists_the_example(venv):
    rows = json.loads(venv.v7("plugins", "--json").stdout)
    (rsi,) = [row for row in rows if row["name"] == "rsi"]
    assert rsi["kind"] == "theory"
    assert rsi["plugin"] == "rsi"
    assert rsi["distribution"] == "v7-example-theory"
    assert rsi["version"] == "0.1.0"
    assert rsi["error"] is None


def test_enabling_the_example_adds_its_result_to_the_signals(venv, tmp_path):
    database = tmp_path / "with-rsi.db"
    config = write_config(tmp_path / "config.toml", [*BUILT_IN_THEORIES, "rsi"], database)

    rows = json.loads(venv.v7("plugins", "--json", "--config", str(config)).stdout)
    (rsi,) = [row for row in rows if row["name"] == "rsi"]
    assert rsi["enabled"] is True and rsi["position"] == len(BUILT_IN_THEORIES) + 1

    done = venv.v7("run", "--config", str(config), "--iterations", "1")
    assert "2 signal(s) produced" in done.stderr

    results = stored(database, """
        SELECT s.symbol, s.prompt, t.position, t.status, t.version, t.label, t.metrics, t.message
        FROM theory_results AS t JOIN signals AS s ON s.id = t.signal_id
        WHERE t.theory = 'rsi' ORDER BY s.symbol""")
    assert [r["symbol"] for r in results] == ["BTC-USD", "ETH-USD"]
    for row in results:
        assert row["status"] == "ok", row["message"]
        assert row["version"] == "0.1.0"
        assert row["position"] == len(BUILT_IN_THEORIES)  # after the built-ins: config order
        assert row["label"] in {"overbought", "oversold", "neutral"}
        metrics = json.loads(row["metrics"])
        assert 0 <= metrics["rsi"] <= 100 and metrics["period"] == 21  # [theories.rsi] reached the plugin
        assert "### rsi (Wilder's RSI, period 21)" in row["prompt"]  # its prompt_section was used
    theories = stored(database, "SELECT DISTINCT theory FROM theory_results ORDER BY position")
    assert [r["theory"] for r in theories] == [*BUILT_IN_THEORIES, "rsi"]


def test_removing_the_example_from_enabled_removes_its_results(venv, tmp_path):
    database = tmp_path / "without-rsi.db"
    config = write_config(tmp_path / "config.toml", BUILT_IN_THEORIES, database)

    rows = json.loads(venv.v7("plugins", "--json", "--config", str(config)).stdout)
    (rsi,) = [row for row in rows if row["name"] == "rsi"]
    assert rsi["enabled"] is False and rsi["error"] is None  # installed, just not enabled

    venv.v7("run", "--config", str(config), "--iterations", "1")
    assert len(stored(database, "SELECT id FROM signals")) == 2
    assert stored(database, "SELECT id FROM theory_results WHERE theory = 'rsi'") == []
    theories = stored(database, "SELECT DISTINCT theory FROM theory_results ORDER BY position")
    assert [r["theory"] for r in theories] == BUILT_IN_THEORIES


def test_the_examples_own_tests_pass_against_the_installed_plugin(venv):
    done = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=venv.example, timeout=180)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert " passed" in summary and "skipped" not in summary, summary
