"""`[portfolio]` in config.toml: off by default (same config hash as without it), errors naming the key."""

from __future__ import annotations

import pytest

from v7.core.config import ConfigError, validate_config
from v7.core.registry import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_off_by_default_and_the_hash_is_as_without_the_section(registry):
    plain = validate_config({}, registry)
    off = validate_config({"portfolio": {"enabled": False, "max_symbol": 0.3}}, registry)
    assert plain.portfolio.enabled is False
    assert off.config_hash() == plain.config_hash()
    on = validate_config({"portfolio": {"enabled": True, "method": "inverse_vol", "covariance_bars": 168}}, registry)
    assert on.portfolio.method == "inverse_vol" and on.portfolio.covariance_bars == 168
    assert on.config_hash() != plain.config_hash()  # positions differ: so do the signals


def test_the_effective_config_round_trips(registry):
    on = validate_config({"portfolio": {"enabled": True, "max_gross": 1.5}}, registry)
    again = validate_config(on.effective(), registry)
    assert again.portfolio == on.portfolio and again.config_hash() == on.config_hash()


def test_bad_values_name_the_key(registry):
    with pytest.raises(ConfigError) as info:
        validate_config({"portfolio": {"method": "kelly", "max_symbol": 2}}, registry, where="cfg.toml")
    text = "\n".join(info.value.problems)
    assert "cfg.toml: portfolio.method: got 'kelly'" in text
    assert "cfg.toml: portfolio.max_symbol: got 2" in text
