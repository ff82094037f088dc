"""Plugins add CLI commands through `register_commands(cli)`, and any plugin can be blocked by name before import."""

from __future__ import annotations

import json

from helpers import make_distribution, run_v7

COMMAND_PLUGIN = """
    import click
    from v7 import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command()
        @click.argument("name")
        def hello(name):
            '''Say hello from a plugin.'''
            click.echo(f"hello {name} from a plugin")

        @cli.command()
        def run():
            '''Tries to replace a built-in command.'''
            click.echo("hijacked")
"""

EXPLODING_PLUGIN = """
    raise RuntimeError("this module must never be imported")
"""


def test_a_plugin_adds_a_command(tmp_path):
    site = make_distribution(tmp_path / "site", "v7-hello", "1.0", {"hello": "v7_hello"}, {"v7_hello": COMMAND_PLUGIN})
    done = run_v7("hello", "world", cwd=tmp_path, extra_path=site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello world from a plugin"
    listing = run_v7("--help", cwd=tmp_path, extra_path=site)
    assert "hello" in listing.stdout and "Say hello from a plugin." in listing.stdout


def test_a_plugin_cannot_replace_a_builtin_command(tmp_path):
    site = make_distribution(tmp_path / "site", "v7-hello", "1.0", {"hello": "v7_hello"}, {"v7_hello": COMMAND_PLUGIN})
    done = run_v7("run", "--help", cwd=tmp_path, extra_path=site)
    assert done.returncode == 0
    assert "Run the pipeline" in done.stdout
    assert "tried to add command 'run', which already exists; ignored" in done.stderr


def test_a_blocked_plugin_is_never_imported_and_listed_as_blocked(tmp_path):
    site = make_distribution(tmp_path / "site", "v7-bomb", "1.0", {"bomb": "v7_bomb"}, {"v7_bomb": EXPLODING_PLUGIN})
    unblocked = run_v7("plugins", "--json", cwd=tmp_path, extra_path=site)
    rows = {r["name"]: r for r in json.loads(unblocked.stdout)}
    assert "must never be imported" in rows["bomb"]["error"]

    blocked = run_v7("plugins", "--json", cwd=tmp_path, extra_path=site, env={"V7_BLOCK_PLUGINS": "bomb"})
    assert blocked.returncode == 0, blocked.stderr
    rows = {r["name"]: r for r in json.loads(blocked.stdout)}
    assert rows["bomb"]["error"].startswith("blocked (not imported)")
    assert "must never be imported" not in blocked.stdout + blocked.stderr
    assert rows["replay"]["error"] is None  # everything else still loads

    text = run_v7("plugins", cwd=tmp_path, extra_path=site, env={"V7_BLOCK_PLUGINS": "bomb"})
    assert "blocked (not imported)" in text.stdout


def test_the_config_can_block_a_plugin(tmp_path):
    site = make_distribution(tmp_path / "site", "v7-bomb", "1.0", {"bomb": "v7_bomb"}, {"v7_bomb": EXPLODING_PLUGIN})
    config = tmp_path / "config.toml"
    config.write_text('[plugins]\nblocked = ["bomb"]\n\n[sinks.sqlite]\npath = "v7.db"\n')
    done = run_v7("config", "check", "--config", str(config), cwd=tmp_path, extra_path=site)
    assert done.returncode == 0, done.stderr
    assert "must never be imported" not in done.stderr
    rows = {r["name"]: r for r in json.loads(run_v7("plugins", "--json", "--config", str(config), cwd=tmp_path, extra_path=site).stdout)}
    assert rows["bomb"]["error"].startswith("blocked")


def test_a_plugin_blocked_in_the_config_adds_no_command_and_is_not_imported(tmp_path):
    source = COMMAND_PLUGIN + "\n    import pathlib\n    pathlib.Path('imported.flag').write_text('yes')\n"
    site = make_distribution(tmp_path / "site", "v7-hello", "1.0", {"hello": "v7_hello"}, {"v7_hello": source})
    (tmp_path / "config.toml").write_text('[plugins]\nblocked = ["hello"]\n')
    done = run_v7("config", "check", "--config", "config.toml", cwd=tmp_path, extra_path=site)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "imported.flag").exists()
    listing = run_v7("--help", cwd=tmp_path, extra_path=site)
    assert "hello" in listing.stdout and (tmp_path / "imported.flag").exists()  # unblocked without that config
