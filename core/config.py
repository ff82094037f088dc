"""Loading and validating `config.toml`: every problem found at startup, each named precisely.

The file's sections are `[engine]`, `[logging]` and one per plugin kind (`[feeds]`, `[theories]`,
`[formatters]`, `[synthesizer]`, `[sinks]`). A kind's section holds its `enabled` list (the
execution order) and one table per plugin, validated by that plugin's own `Config` model.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .components import ENV_NAME_PATTERN, PluginConfig
from .config_sections import BacktestConfig, EngineConfig, LoggingConfig, PluginsConfig, StatsConfig
from .portfolio.config import PortfolioConfig
from .registry import KIND_SECTION, Registry
from .sizing.config import SizingConfig

# What runs when the config does not say: the one place that names built-in plugins. The synthesizer
# has no name here: by default the offline synthesizer (the one that declares `offline = True`)
# answers, and is the fallback of any other.
DEFAULT_ENABLED: dict[str, list[str]] = {
    "feed": ["replay"],
    "theory": ["hurst_exponent", "shannon_entropy", "markov_regime", "kalman_filter", "monte_carlo"],
    "formatter": ["markdown"],
    "sink": ["sqlite"],
}
DEFAULT_THEORIES = DEFAULT_ENABLED["theory"]
# Whole key names only: `api_key`, `secret`, `auth_token` are secrets; `max_tokens`, `api_key_env` are not.
SECRET_KEY_PATTERN = re.compile(r"(^|_)(key|secret|token|password|passphrase)$", re.IGNORECASE)


# Engine settings that say which symbols run and how fast, not what a signal is: out of the config hash.
ENGINE_TRANSPORT_FIELDS = frozenset({
    "symbols", "symbol_workers", "theory_workers", "fetch_workers", "max_threads", "interval_seconds", "context_timeout_seconds", "iteration_timeout_seconds",
    "executor", "dask_address", "dask_workers",
})


class ConfigError(Exception):
    """One or more problems in a config file; `str()` is the message shown to the user."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class V7Config:
    """The validated config: plugin lists in execution order and each plugin's config model."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    enabled: dict[str, list[str]] = field(default_factory=dict)
    plugin_configs: dict[tuple[str, str], PluginConfig] = field(default_factory=dict)
    synthesizer: str = ""
    fallback: str | None = None
    candle_feed: str | None = None
    context_feeds: list[str] = field(default_factory=list)
    path: Path | None = None

    def plugin_config(self, kind: str, name: str) -> PluginConfig | None:
        return self.plugin_configs.get((kind, name))

    def effective(self, shown: bool = False) -> dict[str, Any]:
        """The config as it will run, defaults filled in, as plain data; `shown` = each plugin's table as it
        prints it (`PluginConfig.shown`, its secrets hidden), for display only."""
        def table(kind: str) -> dict[str, Any]:
            return {
                name: cfg.shown() if shown else cfg.model_dump(mode="json", by_alias=True)
                for (k, name), cfg in self.plugin_configs.items()
                if k == kind
            }

        return {
            "engine": self.engine.model_dump(mode="json"),
            "logging": self.logging.model_dump(mode="json", by_alias=True),
            "feeds": {"enabled": self.enabled["feed"], "candles": self.candle_feed, "context": self.context_feeds, **table("feed")},
            "theories": {"enabled": self.enabled["theory"], **table("theory")},
            "formatters": {"enabled": self.enabled["formatter"], **table("formatter")},
            "synthesizer": {"use": self.synthesizer, "fallback": self.fallback, **table("synthesizer")},
            "sinks": {"enabled": self.enabled["sink"], **table("sink")},
            "backtest": self.backtest.model_dump(mode="json", exclude_none=True),
            "stats": self.stats.model_dump(mode="json"),
            "plugins": self.plugins.model_dump(mode="json"),
            "portfolio": self.portfolio.model_dump(mode="json"),
            "sizing": self.sizing.model_dump(mode="json"),  # in the hash: it shapes a signal's position
        }

    def config_hash(self) -> str:
        """Identifies what shapes a signal: two runs with the same hash make the same signals."""
        data = self.effective()
        for (kind, name), cfg in self.plugin_configs.items():
            leave_out = type(cfg).transport_fields
            table = data[KIND_SECTION[kind]].get(name)
            if leave_out and isinstance(table, dict):
                data[KIND_SECTION[kind]][name] = {k: v for k, v in table.items() if k not in leave_out}
        data.pop("logging", None)
        data.pop("backtest", None)
        data.pop("stats", None)
        data.pop("plugins", None)
        if not self.portfolio.enabled:  # off: the signals, and so the hash, are as without the section
            data.pop("portfolio", None)
        data.pop("sinks", None)  # where a signal is stored does not shape it
        data["engine"] = {k: v for k, v in data["engine"].items() if k not in ENGINE_TRANSPORT_FIELDS}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_warnings(config: V7Config) -> list[str]:
    """Settings that are valid but probably not meant: a run that stores nothing, or decides on nothing."""
    where = str(config.path) if config.path else "<defaults>"
    warnings = []
    if not config.enabled.get("sink"):
        warnings.append(f"{where}: sinks.enabled is empty: signals are computed and logged, but stored nowhere")
    if not config.enabled.get("theory"):
        warnings.append(f"{where}: theories.enabled is empty: every signal is decided without any theory")
    return warnings


def redact(data: Any, parent_key: str = "") -> Any:
    """Hide anything that looks like a secret; names of environment variables stay visible."""
    if isinstance(data, dict):
        return {k: redact(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v, parent_key) for v in data]
    if parent_key and SECRET_KEY_PATTERN.search(parent_key) and data not in (None, ""):
        return "***"
    if parent_key.endswith("_env") and isinstance(data, str) and not ENV_NAME_PATTERN.match(data):
        return "***"  # not a variable name: most likely the secret itself, pasted by mistake
    return data


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _path(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shown_input(loc: list[Any], value: Any) -> str:
    """The bad value for an error message, unless it may be a secret (a key pasted where its variable's name belongs)."""
    key = str(loc[-1]) if loc else ""
    if key.endswith("_env") or SECRET_KEY_PATTERN.search(key):
        return "a value (hidden: it may be a secret)"
    return _describe(value)


def _pydantic_problems(where: str, prefix: list[Any], exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = prefix + [p for p in err["loc"] if p != "__root__"]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            problems.append(f"{where}: {_path(loc)}: unknown key (got {_shown_input(loc, err['input'])})")
        elif err["type"] == "missing":
            problems.append(f"{where}: {_path(loc)}: missing, a value is required")
        else:
            expected = msg[0].lower() + msg[1:] if msg else "a valid value"
            problems.append(f"{where}: {_path(loc)}: got {_shown_input(loc, err['input'])}; expected: {expected}")
    return problems


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load_config(path: str | Path | None, registry: Registry) -> V7Config:
    """Read and validate a config file (None = the built-in defaults) against the installed plugins."""
    if path is None:
        return validate_config({}, registry, where="<defaults>")
    path = Path(path)
    config = validate_config(read_toml(path), registry, where=str(path))
    config.path = path
    return config


def validate_config(raw: dict[str, Any], registry: Registry, where: str = "<config>") -> V7Config:
    problems: list[str] = []
    config = V7Config()
    raw = dict(raw)

    known_sections = {"engine", "logging", "backtest", "stats", "plugins", "sizing", *KIND_SECTION.values()}
    known_sections.add("portfolio")
    for section in raw:
        if section not in known_sections:
            problems.append(f"{where}: {section}: unknown section; expected one of {', '.join(sorted(known_sections))}")

    for key, model in (
        ("engine", EngineConfig), ("logging", LoggingConfig), ("backtest", BacktestConfig), ("stats", StatsConfig), ("plugins", PluginsConfig),
        ("portfolio", PortfolioConfig),
        ("sizing", SizingConfig),
    ):
        value = raw.get(key, {})
        if not isinstance(value, dict):
            problems.append(f"{where}: {key}: got {_describe(value)}; expected a table")
            continue
        try:
            setattr(config, key, model.model_validate(value))
        except ValidationError as exc:
            problems.extend(_pydantic_problems(where, [key], exc))

    defaults = DEFAULT_ENABLED
    for kind in ("feed", "theory", "formatter", "sink"):
        section_name = KIND_SECTION[kind]
        section = raw.get(section_name, {})
        if not isinstance(section, dict):
            problems.append(f"{where}: {section_name}: got {_describe(section)}; expected a table")
            section = {}
        reserved = {"enabled"} | ({"candles", "context"} if kind == "feed" else set())
        enabled = section.get("enabled", defaults[kind])
        config.enabled[kind] = _check_enabled(where, section_name, kind, enabled, registry, problems)
        for name, table in section.items():
            if name not in reserved:
                _validate_plugin_table(where, section_name, kind, name, table, registry, config, problems)
        if kind == "feed":
            _resolve_feed_roles(where, section, config, registry, problems)

    section = raw.get("synthesizer", {})
    if not isinstance(section, dict):
        problems.append(f"{where}: synthesizer: got {_describe(section)}; expected a table")
        section = {}
    # Offline synthesizers, V7's own first: installing another offline one never changes the default silently.
    offline = sorted(
        (name for name in registry.names("synthesizer") if registry.get("synthesizer", name).cls.offline),
        key=lambda name: (registry.get("synthesizer", name).source.distribution != "v7", name),
    )
    config.synthesizer = section.get("use", offline[0] if offline else "")
    if config.synthesizer == "":
        problems.append(f"{where}: synthesizer.use: missing, and no installed synthesizer declares itself offline to be the default")
    default_fallback = config.synthesizer if config.synthesizer in offline else (offline[0] if offline else None)
    config.fallback = section.get("fallback", default_fallback)
    if config.fallback in ("", "none"):
        config.fallback = None
    for key in ("use", "fallback"):
        value = config.synthesizer if key == "use" else config.fallback
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            problems.append(f"{where}: synthesizer.{key}: got {_describe(value)}; expected a plugin name (string)")
            continue
        _check_plugin_name(where, f"synthesizer.{key}", "synthesizer", value, registry, problems)
    config.enabled["synthesizer"] = list(dict.fromkeys(n for n in (config.synthesizer, config.fallback) if n))
    for name, table in section.items():
        if name not in {"use", "fallback"}:
            _validate_plugin_table(where, "synthesizer", "synthesizer", name, table, registry, config, problems)

    # Active plugins without a table of their own still get a validated default config.
    for kind, names in config.enabled.items():
        for name in names:
            component = registry.get(kind, name)
            if component is not None and (kind, name) not in config.plugin_configs:
                try:
                    config.plugin_configs[(kind, name)] = component.cls.Config()
                except ValidationError as exc:
                    problems.extend(_pydantic_problems(where, [KIND_SECTION[kind], name], exc))

    if problems:
        raise ConfigError(problems)
    return config


def _check_plugin_name(where: str, key: str, kind: str, name: str, registry: Registry, problems: list[str]) -> bool:
    if registry.get(kind, name) is not None:
        return True
    error = registry.error_for(kind, name)
    if error is not None:
        problems.append(f"{where}: {key}: {kind} {name!r} cannot be used: {error.describe()}")
    else:
        installed = ", ".join(registry.names(kind)) or "none"
        problems.append(f"{where}: {key}: got {name!r}; expected an installed {kind} plugin: {installed}")
    return False


def _check_enabled(
    where: str, section: str, kind: str, enabled: Any, registry: Registry, problems: list[str]
) -> list[str]:
    if not isinstance(enabled, list) or not all(isinstance(n, str) for n in enabled):
        problems.append(f"{where}: {section}.enabled: got {_describe(enabled)}; expected a list of plugin names")
        return []
    seen: set[str] = set()
    for index, name in enumerate(enabled):
        if name in seen:
            problems.append(f"{where}: {section}.enabled[{index}]: {name!r} is listed twice")
        seen.add(name)
        _check_plugin_name(where, f"{section}.enabled[{index}]", kind, name, registry, problems)
    return list(dict.fromkeys(enabled))


def _validate_plugin_table(
    where: str,
    section: str,
    kind: str,
    name: str,
    table: Any,
    registry: Registry,
    config: V7Config,
    problems: list[str],
) -> None:
    if not isinstance(table, dict):
        problems.append(
            f"{where}: {section}.{name}: got {_describe(table)}; expected a table of settings for the {kind} plugin {name!r}"
        )
        return
    if not _check_plugin_name(where, f"{section}.{name}", kind, name, registry, problems):
        return
    component = registry.get(kind, name)
    assert component is not None
    try:
        config.plugin_configs[(kind, name)] = component.cls.Config.model_validate(table)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(where, [section, name], exc))


def _resolve_feed_roles(where: str, section: dict[str, Any], config: V7Config, registry: Registry, problems: list[str]) -> None:
    """Which enabled feed supplies candles and which supply market context."""
    enabled = config.enabled["feed"]
    usable = [n for n in enabled if registry.get("feed", n) is not None]

    def provides(name: str, what: str) -> bool:
        component = registry.get("feed", name)
        return component is not None and what in component.cls.provides

    candles = section.get("candles")
    if candles is None:
        candles = next((n for n in usable if provides(n, "candles")), None)
        if candles is None and (usable or not enabled):
            problems.append(f"{where}: feeds.enabled: got {enabled}; expected at least one feed that provides candles, such as 'replay'")
    elif not isinstance(candles, str) or candles not in enabled:
        problems.append(f"{where}: feeds.candles: got {_describe(candles)}; expected one of the enabled feeds {enabled}")
        candles = None
    elif not provides(candles, "candles") and candles in usable:
        problems.append(f"{where}: feeds.candles: feed {candles!r} does not provide candles")
    config.candle_feed = candles

    context = section.get("context")
    if context is None:
        context = [n for n in usable if provides(n, "context")]
    elif not isinstance(context, list) or any(c not in enabled for c in context):
        problems.append(f"{where}: feeds.context: got {_describe(context)}; expected a list of enabled feeds from {enabled}")
        context = []
    else:
        for name in context:
            if name in usable and not provides(name, "context"):
                problems.append(f"{where}: feeds.context: feed {name!r} does not provide market context")
    config.context_feeds = list(context)
