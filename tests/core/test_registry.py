"""Plugin discovery: entry points, load errors kept per plugin, duplicate names, the `v7 plugins` listing."""

from __future__ import annotations

import json
import sys

from helpers import make_distribution, run_v7
from v7 import Theory, TheoryFinding, hookimpl
from v7.core.registry import PluginSource, Registry, load_registry

# Every built-in plugin; `test_every_entry_point_is_a_known_builtin` keeps this and pyproject.toml in step.
BUILTINS = {
    ("feed", "replay"), ("feed", "coinbase"), ("feed", "coingecko"), ("formatter", "markdown"),
    ("synthesizer", "consensus"), ("synthesizer", "deepseek"), ("synthesizer", "learned"), ("sink", "sqlite"), ("sink", "jsonl"), ("sink", "notify"),
    ("theory", "hurst_exponent"), ("theory", "shannon_entropy"), ("theory", "markov_regime"),
    ("theory", "kalman_filter"), ("theory", "monte_carlo"),
}


def test_builtins_come_through_the_v7_entry_point_group():
    registry = load_registry()
    assert not registry.errors, registry.errors
    found = {(c.kind, c.name) for c in registry.all()}
    assert BUILTINS <= found
    for component in registry.all():
        if (component.kind, component.name) in BUILTINS:
            assert component.source.distribution == "v7"


def test_every_entry_point_is_a_known_builtin():
    """pyproject.toml's `v7` entry points are exactly the built-ins above, each registering its namesake."""
    import tomllib

    from helpers import REPO

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["v7"]
    assert set(declared) == {name for _, name in BUILTINS}
    registry = load_registry()
    for kind, name in BUILTINS:
        component = registry.get(kind, name)
        assert component is not None, f"{kind} {name!r} is not registered"
        assert component.source.plugin == name
        assert declared[name] == component.cls.__module__ or component.cls.__module__.startswith(declared[name] + ".")


def test_transport_fields_name_real_settings():
    """A misspelt transport field would silently put a setting back into the config hash."""
    registry = load_registry()
    for component in registry.all():
        unknown = component.cls.Config.transport_fields - set(component.cls.Config.model_fields)
        assert not unknown, f"{component.kind} {component.name}: transport_fields not in its Config: {unknown}"


class _Dup(Theory):
    name = "dup"

    def analyze(self, candles):
        return TheoryFinding(confidence=0.1, label="x", interpretation="x")


class _DupPlugin:
    @hookimpl
    def register_theories(self, register):
        register(_Dup)


def test_duplicate_names_are_an_error_naming_both_distributions():
    registry = Registry()
    registry.add_plugin(_DupPlugin(), PluginSource("first", "dist-one", "1.0"))
    registry.add_plugin(_DupPlugin(), PluginSource("second", "dist-two", "2.0"))
    assert registry.get("theory", "dup") is None
    error = registry.error_for("theory", "dup")
    assert error is not None
    assert "dist-one" in error.error and "dist-two" in error.error


class _BadRegister:
    @hookimpl
    def register_theories(self, register):
        register(object)  # not a Theory subclass


def test_registering_a_non_component_is_reported():
    registry = Registry()
    registry.add_plugin(_BadRegister(), PluginSource("bad", "dist-bad", "0.1"))
    assert not registry.all()
    assert "subclass of v7.Theory" in registry.errors[0].error
    assert registry.errors[0].source.distribution == "dist-bad"


BROKEN = {
    "broken_import": "raise RuntimeError('this plugin cannot import')\n",
    "broken_register": """
        from v7 import hookimpl
        @hookimpl
        def register_theories(register):
            raise ValueError('register exploded')
    """,
}


def test_broken_plugins_are_listed_and_the_rest_keeps_working(tmp_path):
    site = make_distribution(
        tmp_path / "site", "v7-broken", "9.9",
        {"broken_import": "broken_import", "broken_register": "broken_register"}, BROKEN,
    )
    result = run_v7("plugins", "--json", cwd=tmp_path, extra_path=site)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    for row in rows:
        assert {"kind", "name", "distribution", "version", "enabled", "position", "error"} <= set(row)
    errors = {r["name"]: r for r in rows if r["error"]}
    assert "this plugin cannot import" in errors["broken_import"]["error"]
    assert errors["broken_import"]["distribution"] == "v7-broken"
    assert errors["broken_import"]["version"] == "9.9"
    assert "register exploded" in errors["broken_register"]["error"]
    working = {(r["kind"], r["name"]) for r in rows if not r["error"]}
    assert BUILTINS <= working

    # Not enabled: `v7 run` with the default config is unaffected.
    (tmp_path / "c.toml").write_text('[engine]\nsymbols = ["BTC-USD"]\nlookback = 300\n[sinks.sqlite]\npath = "s.db"\n')
    ok = run_v7("run", "--config", "c.toml", "--iterations", "1", cwd=tmp_path, extra_path=site)
    assert ok.returncode == 0, ok.stderr
    assert "plugin failed to load" in ok.stderr and "broken_import" in ok.stderr

    # Enabled: startup stops and names it, before any data is fetched.
    (tmp_path / "bad.toml").write_text('[theories]\nenabled = ["hurst_exponent", "broken_import"]\n')
    bad = run_v7("run", "--config", "bad.toml", "--iterations", "1", cwd=tmp_path, extra_path=site)
    assert bad.returncode != 0
    assert "broken_import" in bad.stderr and "this plugin cannot import" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "v7.db").exists()


def test_plugins_json_reports_enabled_and_position(tmp_path):
    (tmp_path / "c.toml").write_text('[theories]\nenabled = ["kalman_filter", "hurst_exponent"]\n')
    rows = json.loads(run_v7("plugins", "--config", "c.toml", "--json", cwd=tmp_path).stdout)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    assert by_name[("theory", "kalman_filter")]["position"] == 1
    assert by_name[("theory", "hurst_exponent")]["position"] == 2
    assert by_name[("theory", "monte_carlo")]["enabled"] is False
    assert by_name[("sink", "sqlite")]["enabled"] is True


def test_listing_plugins_does_not_import_heavy_libraries():
    """`v7 --help` and `v7 plugins` stay fast because nothing heavy loads (timed in benchmarks/startup.py)."""
    import subprocess

    code = (
        "import sys; from v7.core.registry import load_registry; r = load_registry(); "
        "import v7.core.cli; "
        "heavy = [m for m in ('numpy', 'pandas', 'scipy', 'hmmlearn', 'pykalman', 'EntropyHub', 'openai', 'httpx', 'websockets', 'sklearn', 'rich') if m in sys.modules]; "
        "print(len(r.all()), heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, heavy = out.strip().split(" ", 1)
    assert int(count) >= len(BUILTINS)
    assert heavy == "[]", heavy


def test_two_distributions_with_the_same_entry_point_name_are_both_named(tmp_path):
    module = """
        from v7 import hookimpl, Theory, TheoryFinding
        class T(Theory):
            name = "twin"
            def analyze(self, candles):
                return TheoryFinding(confidence=0.1, label="x", interpretation="x")
        @hookimpl
        def register_theories(register):
            register(T)
    """
    make_distribution(tmp_path / "site", "v7-twin-a", "1.0", {"twin": "twin_a"}, {"twin_a": module})
    make_distribution(tmp_path / "site", "v7-twin-b", "2.0", {"twin": "twin_b"}, {"twin_b": module})
    rows = json.loads(run_v7("plugins", "--json", cwd=tmp_path, extra_path=tmp_path / "site").stdout)
    errors = " ".join(r["error"] for r in rows if r["error"])
    assert "v7-twin-a" in errors and "v7-twin-b" in errors
    assert not [r for r in rows if r["name"] == "twin" and not r["error"]]  # neither silently wins
    (tmp_path / "c.toml").write_text('[theories]\nenabled = ["twin"]\n')
    result = run_v7("config", "check", "--config", "c.toml", cwd=tmp_path, extra_path=tmp_path / "site")
    assert result.returncode == 2 and "v7-twin-a" in result.stderr and "v7-twin-b" in result.stderr


def test_the_plugins_listing_cache_follows_what_is_installed(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = run_v7("plugins", "--json", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "cache" / "v7" / "plugins.json").exists()
    again = run_v7("plugins", "--json", cwd=tmp_path, env=env)
    assert json.loads(again.stdout) == json.loads(first.stdout)  # served from the cache, same answer
    uncached = run_v7("plugins", "--json", cwd=tmp_path, env={**env, "V7_NO_PLUGIN_CACHE": "1"})
    assert json.loads(uncached.stdout) == json.loads(first.stdout)

    # A newly installed plugin is a different fingerprint: listed at once.
    module = """
        from v7 import hookimpl, Theory, TheoryFinding
        class Fresh(Theory):
            name = "fresh"
            def analyze(self, candles):
                return TheoryFinding(confidence=0.1, label="x", interpretation="x")
        @hookimpl
        def register_theories(register):
            register(Fresh)
    """
    site = make_distribution(tmp_path / "site", "v7-fresh", "0.1", {"fresh": "v7_fresh"}, {"v7_fresh": module})
    rows = json.loads(run_v7("plugins", "--json", cwd=tmp_path, env=env, extra_path=site).stdout)
    assert ("theory", "fresh", "v7-fresh") in {(r["kind"], r["name"], r["distribution"]) for r in rows}

    # Editing a plugin's source is a miss too: here it now fails to import, and the listing says so.
    (site / "v7_fresh.py").write_text("raise ImportError('edited and broken')\n")
    rows = json.loads(run_v7("plugins", "--json", cwd=tmp_path, env=env, extra_path=site).stdout)
    assert any(r["name"] == "fresh" and "edited and broken" in (r["error"] or "") for r in rows)
