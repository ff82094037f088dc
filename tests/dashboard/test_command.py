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


def test_allowed_host_names_include_the_loopback_address_it_is_bound_to():
    from v7.core.commands.dashboard import allowed_hosts

    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "::1", "[::1]"]
    assert "127.0.0.2" in allowed_hosts("127.0.0.2") and "localhost" in allowed_hosts("127.0.0.2")
    assert "[::1]" in allowed_hosts("::1") and allowed_hosts("localhost")[:2] == ["127.0.0.1", "localhost"]
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("192.168.1.5") is None  # off loopback the token guards it


def test_a_server_bound_to_another_loopback_address_answers_there(tmp_path, db):
    """`--host 127.0.0.2` (loopback, so no token): every page answers on that address, and a foreign Host is refused."""
    import os
    import re
    import urllib.error
    import urllib.request

    config = write_config(tmp_path, db)
    process = subprocess.Popen(
        [sys.executable, "-m", "v7.core.cli", "dashboard", "--config", str(config), "--host", "127.0.0.2", "--port", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "V7_DASHBOARD_TOKEN": ""},
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            found = re.search(r"V7 dashboard on (http://127\.0\.0\.2:\d+/)", line)
            if found:
                break
        assert found, "".join(lines)
        url = found.group(1)
        for path in ("", "?window=all", "symbol/BTC-USD", "api/overview", "healthz"):
            with urllib.request.urlopen(url + path, timeout=60) as response:
                assert response.status == 200, path
        head = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(head, timeout=60) as response:
            assert response.status == 200 and response.read() == b""
        foreign = urllib.request.Request(url, headers={"Host": "evil.example"})
        try:
            urllib.request.urlopen(foreign, timeout=60)
            raise AssertionError("a foreign Host header was served")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_command_module_imports_no_web_framework():
    code = ("import sys, v7.core.commands.dashboard; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "dashboard" in CliRunner().invoke(cli, ["--help"]).output
