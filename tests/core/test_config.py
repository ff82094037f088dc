"""Config validation: every problem at startup, each naming file, key path, bad value and expectation."""

from __future__ import annotations

import json

import pytest

from helpers import REPO, run_v7
from plugin_samples import SamplePlugin
from v7.core.config import ConfigError, load_config, redact, validate_config
from v7.core.registry import PluginSource, load_registry


@pytest.fixture(scope="module")
def registry():
    registry = load_registry()
    registry.add_plugin(SamplePlugin(), PluginSource("samples", "v7-test-samples", "1.0"))
    return registry


def problems_of(raw, registry) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw, registry, where="cfg.toml")
    return info.value.problems


def test_repository_config_is_valid(registry):
    config = load_config(REPO / "config.toml", registry)
    assert config.enabled["theory"] == ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"]
    assert config.candle_feed == "replay"
    assert config.synthesizer == "consensus"
    assert config.engine.symbols == ["BTC-USD", "ETH-USD"]


def test_bad_engine_value_names_key_value_and_expectation(registry):
    (problem,) = problems_of({"engine": {"lookback": -5}}, registry)
    assert problem.startswith("cfg.toml: engine.lookback: got -5")
    assert "greater than or equal to 10" in problem


def test_every_problem_is_reported_at_once(registry):
    raw = {
        "engine": {"granularity": "2h", "symbols": ["btcusd"], "colour": "red"},
        "theories": {"enabled": ["hurts_exponent"], "kalman_filter": {"nope": 1}},
        "sinks": {"sqlite": {"path": 3}},
    }
    problems = problems_of(raw, registry)
    text = "\n".join(problems)
    assert "engine.granularity: got '2h'" in text
    assert "engine.symbols: got ['btcusd']" in text and "BASE-QUOTE" in text
    assert "engine.colour: unknown key" in text
    assert "theories.enabled[0]: got 'hurts_exponent'; expected an installed theory plugin: " in text
    assert "hurst_exponent" in text.split("hurts_exponent")[-1]  # the installed ones are listed
    assert "theories.kalman_filter.nope: unknown key" in text
    assert "sinks.sqlite.path: got 3" in text
    assert len(problems) >= 6


def test_plugin_tables_are_validated_by_the_plugins_model(registry):
    (problem,) = problems_of({"theories": {"enabled": ["constant"], "constant": {"bias": 7}}}, registry)
    assert problem.startswith("cfg.toml: theories.constant.bias: got 7")
    config = validate_config({"theories": {"enabled": ["constant"], "constant": {"bias": -0.25}}}, registry)
    assert config.plugin_config("theory", "constant").bias == -0.25


def test_unknown_section_and_wrong_types(registry):
    problems = problems_of({"theory": {}, "theories": {"enabled": "hurst_exponent"}, "synthesizer": {"use": "oracle"}}, registry)
    text = "\n".join(problems)
    assert "theory: unknown section" in text
    assert "theories.enabled: got 'hurst_exponent'; expected a list of plugin names" in text
    assert "synthesizer.use: got 'oracle'; expected an installed synthesizer plugin: consensus" in text


def test_feed_roles_must_name_enabled_feeds(registry):
    (problem,) = problems_of({"feeds": {"enabled": ["replay"], "candles": "coinbase_pro"}}, registry)
    assert "feeds.candles: got 'coinbase_pro'" in problem


def test_cli_reports_config_errors_without_traceback(tmp_path):
    (tmp_path / "bad.toml").write_text('[engine]\nlookback = "many"\n[theories]\nenabled = ["nope"]\n')
    for command in (["config", "check"], ["run"]):
        result = run_v7(*command, "--config", "bad.toml", cwd=tmp_path)
        assert result.returncode == 2
        assert "bad.toml: engine.lookback: got 'many'" in result.stderr
        assert "bad.toml: theories.enabled[0]: got 'nope'" in result.stderr
        assert "Traceback" not in result.stderr
    missing = run_v7("config", "check", "--config", "missing.toml", cwd=tmp_path)
    assert missing.returncode == 2 and "missing.toml: file not found" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[engine\n")
    result = run_v7("config", "check", "--config", "broken.toml", cwd=tmp_path)
    assert result.returncode == 2 and "not valid TOML" in result.stderr


def test_config_check_accepts_the_repository_config():
    result = run_v7("config", "check", "--config", "config.toml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_redaction_hides_secrets_but_not_env_var_names():
    data = {"synthesizer": {"x": {"api_key": "sk-live-123", "api_key_env": "DEEPSEEK_API_KEY", "token": "t", "model": "m", "max_tokens": 300, "daily_token_budget": 5}}}
    shown = redact(data)["synthesizer"]["x"]
    assert shown == {"api_key": "***", "api_key_env": "DEEPSEEK_API_KEY", "token": "***", "model": "m", "max_tokens": 300, "daily_token_budget": 5}


def test_config_show_prints_effective_config(tmp_path):
    (tmp_path / "c.toml").write_text('[engine]\nsymbols = ["ETH-USD"]\n[theories]\nenabled = ["monte_carlo"]\n')
    result = run_v7("config", "show", "--config", "c.toml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["engine"]["symbols"] == ["ETH-USD"]
    assert data["engine"]["lookback"] == 1000  # defaults filled in
    assert data["theories"]["enabled"] == ["monte_carlo"]
    assert "monte_carlo" in data["theories"]  # the plugin's own defaults
    toml_text = run_v7("config", "show", "--config", "c.toml", cwd=tmp_path).stdout
    import tomllib

    assert tomllib.loads(toml_text)["engine"]["symbols"] == ["ETH-USD"]


def test_config_hash_ignores_symbols_but_not_theory_settings(registry):
    a = validate_config({"engine": {"symbols": ["BTC-USD"]}}, registry)
    b = validate_config({"engine": {"symbols": ["ETH-USD"]}}, registry)
    c = validate_config({"theories": {"enabled": ["kalman_filter", "hurst_exponent"]}}, registry)
    d = validate_config({"engine": {"symbols": ["BTC-USD"]}, "sinks": {"enabled": ["sqlite", "jsonl"], "sqlite": {"path": "elsewhere.db"}}}, registry)
    assert a.config_hash() == b.config_hash() == d.config_hash() != c.config_hash()


def test_a_key_pasted_where_its_variable_name_belongs_is_never_echoed(registry, tmp_path):
    secret = "sk-live-abcdef0123456789"
    problems = problems_of({"synthesizer": {"use": "deepseek", "deepseek": {"api_key_env": secret, "api_key": secret}}}, registry)
    text = "\n".join(problems)
    assert "synthesizer.deepseek.api_key_env" in text and "synthesizer.deepseek.api_key: unknown key" in text
    assert secret not in text
    assert redact({"feeds": {"coingecko": {"api_key_env": secret}}})["feeds"]["coingecko"]["api_key_env"] == "***"
    assert redact({"feeds": {"coingecko": {"api_key_env": "COINGECKO_API_KEY"}}})["feeds"]["coingecko"]["api_key_env"] == "COINGECKO_API_KEY"


def test_a_config_without_a_candle_feed_is_refused(registry):
    (problem,) = problems_of({"feeds": {"enabled": []}}, registry)
    assert "feeds.enabled: got []; expected at least one feed that provides candles" in problem


def test_transport_settings_do_not_change_the_config_hash(registry):
    base = {"feeds": {"enabled": ["coinbase"], "coinbase": {"live": False}}, "synthesizer": {"use": "deepseek"}}
    tuned = {
        "feeds": {"enabled": ["coinbase"], "coinbase": {"live": False, "requests_per_second": 3, "read_timeout_seconds": 60}},
        "synthesizer": {"use": "deepseek", "deepseek": {"timeout_seconds": 5, "max_attempts": 5, "cache_path": "x.db"}},
    }
    other_model = {"feeds": base["feeds"], "synthesizer": {"use": "deepseek", "deepseek": {"model": "deepseek-reasoner"}}}
    a, b, c = (validate_config(raw, registry).config_hash() for raw in (base, tuned, other_model))
    assert a == b != c


def test_no_sink_or_no_theory_is_a_warning_from_check_and_run(tmp_path):
    from helpers import run_v7

    (tmp_path / "config.toml").write_text('[engine]\nsymbols = ["BTC-USD"]\n[theories]\nenabled = []\n[sinks]\nenabled = []\n')
    for command in (["config", "check", "--config", "config.toml"], ["run", "--config", "config.toml", "--iterations", "1"]):
        done = run_v7(*command, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Warning: config.toml: sinks.enabled is empty: signals are computed and logged, but stored nowhere" in done.stderr
        assert "Warning: config.toml: theories.enabled is empty" in done.stderr
