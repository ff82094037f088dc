"""`v7.analyze` in a loop: built once per process and config, rebuilt when the config file or the installed packages change."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

import v7
from helpers import BTC_CSV
from v7.core import api


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(BTC_CSV).tail(400).reset_index(drop=True)


def count_registry_loads(monkeypatch) -> list[int]:
    from v7.core import registry

    loads: list[int] = []
    original = registry.load_registry
    monkeypatch.setattr(registry, "load_registry", lambda *a, **k: loads.append(1) or original(*a, **k))
    return loads


def test_repeated_calls_reuse_the_registry_config_and_theories(frame, monkeypatch):
    api._PIPELINES.clear()
    loads = count_registry_loads(monkeypatch)
    first = v7.analyze(frame)
    second = v7.analyze(frame)
    assert len(loads) == 1
    assert [r.model_dump(exclude={"elapsed_ms"}) for r in first] == [r.model_dump(exclude={"elapsed_ms"}) for r in second]


def test_an_edited_config_file_is_read_again(frame, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[theories]\nenabled = ["hurst_exponent"]\n')
    assert [r.theory for r in v7.analyze(frame, config=config)] == ["hurst_exponent"]
    time.sleep(0.01)
    config.write_text('[theories]\nenabled = ["kalman_filter", "hurst_exponent"]\n')
    assert [r.theory for r in v7.analyze(frame, config=config)] == ["kalman_filter", "hurst_exponent"]
    assert sum(1 for key in api._PIPELINES if key[0][0] == str(config.resolve())) == 1  # the old one is dropped


def test_installing_a_package_rebuilds_the_registry(frame, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    v7.analyze(frame)
    loads = count_registry_loads(monkeypatch)
    v7.analyze(frame)
    assert loads == []  # nothing changed
    later = time.time_ns() + 10**9
    os.utime(site, ns=(later, later))  # what installing a distribution into that folder does
    v7.analyze(frame)
    assert loads == [1]  # entry points read again
