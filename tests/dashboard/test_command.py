"""`v7 dashboard`: refuses unsafe or impossible starts with a clear message, and keeps `v7 --help` fast."""

from __future__ import annotations

import socket
import subprocess
import sys

from click.testing import CliRunner

from dash_setup import write_config
from v7.core.cli import cli


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["dashboard", *args], env={"V7_DASHBOARD_TOKEN": "", **(env or {})})


def test_another_interface_needs_a_token(tmp_path, db):
    config = str(write_config(tmp_path, db))
    result = invoke("--config", config, "--host", "0.0.0.0")
    assert result.exit_code == 2 and "--host 0.0.0.0 is not a loopback address" in result.output
    assert "V7_DASHBOARD_TOKEN" in result.output and "Traceback" not in result.output
    short = invoke("--config", config, "--host", "0.0.0.0", env={"V7_DASHBOARD_TOKEN": "abc"})
    assert short.exit_code == 2 and "V7_DASHBOARD_TOKEN is 3 characters long" in short.output


def test_a_missing_store_is_named(tmp_path):
    config = str(write_config(tmp_path, tmp_path / "nothing-here.db"))
    result = invoke("--config", config)
    assert result.exit_code == 2 and "no database at" in result.output and "nothing-here.db" in result.output


def test_a_port_in_use_is_named(tmp_path, db):
    config = str(write_config(tmp_path, db))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = invoke("--config", config, "--port", str(port))
    finally:
        taken.close()
    assert result.exit_code == 2 and f"cannot serve on 127.0.0.1:{port}" in result.output


def test_the_command_module_imports_no_web_framework():
    code = ("import sys, v7.core.commands.dashboard; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "dashboard" in CliRunner().invoke(cli, ["--help"]).output
