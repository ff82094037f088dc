"""`[engine] executor = "dask"`: the same signals as the local executor, sticky routing, a lost worker, startup errors.

One real `LocalCluster` (2 worker processes × 1 thread, on 127.0.0.1) serves the whole module;
every run points at it with `dask_address`. A probe theory, installed as a throwaway distribution
the workers discover like any plugin, reports the process (worker) it ran in and can stall on one symbol so
the test can kill that worker's process mid-iteration.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import sys
import threading
import time

import pytest

distributed = pytest.importorskip("distributed")

from helpers import make_distribution, run_v7  # noqa: E402
from v7.core.backtest.compute import run_backtest  # noqa: E402
from v7.core.components import StartupError  # noqa: E402
from v7.core.config import ConfigError, EngineConfig, validate_config  # noqa: E402
from v7.core.distributed import Cluster, route  # noqa: E402
from v7.core.engine import Pipeline  # noqa: E402
from v7.core.registry import load_registry  # noqa: E402

SYMBOLS = ["BTC-USD", "ETH-USD"]

PROBE = '''
import os
import time
from pathlib import Path

from v7 import Theory, TheoryConfig, TheoryFinding, hookimpl


class ProbeConfig(TheoryConfig):
    stall_symbol: str = ""
    marker: str = ""
    stall_seconds: float = 20.0


class WorkerProbe(Theory):
    """Labels its result with the process (the dask worker) it ran in; stalls once on `stall_symbol` (writing its pid to `marker`)."""

    name = "worker_probe"
    version = "1.0"
    default_min_candles = 5
    Config = ProbeConfig

    def analyze(self, candles):
        marker = Path(self.config.marker) if self.config.marker else None
        if candles.symbol == self.config.stall_symbol and marker is not None and not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(self.config.stall_seconds)
        return TheoryFinding(bias=0.0, confidence=0.5, label=str(os.getpid()), interpretation="the process it ran in", metrics={"pid": float(os.getpid())})


@hookimpl
def register_theories(register):
    register(WorkerProbe)
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The probe distribution on sys.path (and PYTHONPATH) before the cluster's workers are spawned."""
    path = make_distribution(tmp_path_factory.mktemp("site"), "v7-dask-probe", "1.0", {"dask_probe": "v7_dask_probe"}, {"v7_dask_probe": PROBE})
    old = os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(path))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(path), old) if p)
    importlib.invalidate_caches()
    yield path
    sys.path.remove(str(path))
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def cluster(site):
    import dask

    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=40,
        )
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def registry(site):
    return load_registry()


def config_for(registry, tmp_path, name, executor=None, theories=None, probe=None, lookback=300):
    engine = {"symbols": SYMBOLS, "lookback": lookback, "theory_timeout_seconds": 60.0}
    if executor is not None:
        engine.update(executor="dask", dask_address=executor.scheduler_address)
    raw = {
        "engine": engine,
        "sinks": {"enabled": ["jsonl"], "jsonl": {"path": str(tmp_path / f"{name}.jsonl")}},
        "backtest": {"feature_cache": "", "workers": 2},
    }
    if theories is not None:
        raw["theories"] = {"enabled": theories, **({"worker_probe": probe} if probe else {})}
    return validate_config(raw, registry)


def stored(tmp_path, name):
    return [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]


def comparable(signal):
    results = [{k: v for k, v in r.items() if k != "elapsed_ms"} for r in signal["theory_results"]]
    return signal["symbol"], signal["bar_time"], signal["direction"], signal["confidence"], signal["config_hash"], results


def run(config, iterations):
    return Pipeline.build(config, load_registry()).run(iterations=iterations)


def test_run_stores_the_same_signals_as_the_local_executor(registry, cluster, tmp_path):
    local = run(config_for(registry, tmp_path, "local"), 3)
    remote = run(config_for(registry, tmp_path, "dask", executor=cluster), 3)
    assert local.stored == remote.stored == 6 and remote.lost == 0 and remote.exit_code == local.exit_code == 0
    assert sorted(map(comparable, stored(tmp_path, "dask"))) == sorted(map(comparable, stored(tmp_path, "local")))


def test_backtest_matches_the_forked_pool(registry, cluster, tmp_path):
    local = run_backtest(config_for(registry, tmp_path, "bt-local"), registry, bars=150)
    remote = run_backtest(config_for(registry, tmp_path, "bt-dask", executor=cluster), registry, bars=150)
    assert remote.result.workers == 2

    def bars(run):  # everything but the timings
        return {s: [dataclasses.replace(b, theories=tuple(t._replace(elapsed_ms=0.0) for t in b.theories)) for b in v]
                for s, v in run.signals.items()}

    assert sum(len(v) for v in remote.signals.values()) == 300
    assert bars(remote) == bars(local)
    assert remote.result.symbols == local.result.symbols


def test_a_symbol_stays_on_its_worker(registry, cluster, tmp_path):
    run(config_for(registry, tmp_path, "sticky", executor=cluster, theories=["worker_probe"]), 4)
    where: dict[str, set[str]] = {}
    for signal in stored(tmp_path, "sticky"):
        where.setdefault(signal["symbol"], set()).add(signal["theory_results"][0]["label"])
    with distributed.Client(cluster.scheduler_address) as client:
        pids = {address: str(pid) for address, pid in client.run(os.getpid).items()}
    assert where == {symbol: {pids[route(symbol, sorted(pids))]} for symbol in SYMBOLS}


def test_a_killed_worker_loses_no_symbol_and_stores_none_twice(registry, cluster, tmp_path):
    marker = tmp_path / "stalled.pid"
    config = config_for(registry, tmp_path, "killed", executor=cluster, theories=["worker_probe", "kalman_filter"],
                        probe={"stall_symbol": "BTC-USD", "marker": str(marker)})
    with distributed.Client(cluster.scheduler_address) as client:
        pids = set(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_the_stalled_worker():
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_stalled_worker, daemon=True)
    killer.start()
    outcome = run(config, 2)
    killer.join(5)
    assert killed and killed[0] in pids  # a worker process of the cluster died mid-iteration
    signals = stored(tmp_path, "killed")
    keys = [(s["symbol"], s["bar_time"]) for s in signals]
    assert len(keys) == len(set(keys)) == 4  # every symbol, every iteration, once
    assert {s for s, _ in keys} == set(SYMBOLS)
    assert outcome.stored == 4 and outcome.lost == 0 and outcome.exit_code == 0
    btc = [s for s in signals if s["symbol"] == "BTC-USD"]
    assert all(s["theory_results"][0]["status"] == "ok" for s in btc)  # recomputed elsewhere, not timed out


def test_an_unreachable_scheduler_is_a_startup_error(tmp_path):
    config = tmp_path / "v7.toml"
    config.write_text('[engine]\nexecutor = "dask"\ndask_address = "tcp://127.0.0.1:9"\n'
                      f'[sinks]\nenabled = ["jsonl"]\njsonl = {{ path = "{tmp_path / "x.jsonl"}" }}\n')
    result = run_v7("run", "--config", str(config), "--iterations", "1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "dask_address = 'tcp://127.0.0.1:9'" in result.stderr and "no Dask scheduler answered" in result.stderr


def test_missing_distributed_is_a_startup_error(monkeypatch):
    import v7.core.distributed as module

    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StartupError, match=r'executor = "dask" needs Dask distributed.*v7\[dask\]'):
        Cluster(EngineConfig(executor="dask"))


@pytest.mark.parametrize("engine, message", [
    ({"dask_address": "tcp://h:8786"}, 'need executor = "dask"'),
    ({"executor": "ray"}, "executor"),
    ({"executor": "dask", "dask_address": "h:8786"}, "dask_address"),
    ({"executor": "dask", "dask_workers": 0}, "dask_workers"),
])
def test_dask_settings_are_validated(registry, engine, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"engine": engine}, registry)
