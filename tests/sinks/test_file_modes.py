"""Files holding prompts, reasoning and LLM answers are created readable by their owner only (#11.9)."""

from __future__ import annotations

import shutil
import stat

from helpers import REPO, run_v7


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_export_and_report_are_owner_only(tmp_path):
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    assert run_v7("run", "--config", "config.toml", "--iterations", "1", cwd=tmp_path).returncode == 0
    assert mode(tmp_path / "v7.db") == 0o600
    for companion in ("v7.db-wal", "v7.db-shm"):
        if (tmp_path / companion).exists():
            assert mode(tmp_path / companion) == 0o600, companion
    assert run_v7("export", "--config", "config.toml", "--out", "signals.csv", cwd=tmp_path).returncode == 0
    assert mode(tmp_path / "signals.csv") == 0o600
    done = run_v7("backtest", "--config", "config.toml", "--bars", "30", "--workers", "1", "--report", "report", "--no-store", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for path in (tmp_path / "report").iterdir():
        if path.suffix in (".json", ".csv"):
            assert mode(path) == 0o600, path


def test_jsonl_file_and_spool_are_owner_only(tmp_path):
    from v7 import RunInfo
    from v7.plugins.sinks.jsonl import JsonlConfig, JsonlSink
    from v7.plugins.sinks.sqlite import Spool

    from factory import make_signal

    sink = JsonlSink(JsonlConfig(path=str(tmp_path / "signals.jsonl")))
    import structlog

    sink.open(RunInfo(run_id="r", config_hash="h", v7_version="0"), structlog.get_logger())
    sink.write(make_signal())
    sink.close()
    assert mode(tmp_path / "signals.jsonl") == 0o600
    spool = Spool(tmp_path / "v7.db.spool.jsonl")
    spool.append(make_signal())
    assert mode(spool.path) == 0o600
    spool.reject(b"{}")
    assert mode(spool.rejected_path) == 0o600
