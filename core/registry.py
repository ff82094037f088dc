"""Plugin discovery: entry points in the `v7` group, each loaded and registered on its own.

pluggy's `load_setuptools_entrypoints` stops at the first broken plugin; here every entry point
is imported in its own try/except and every hook implementation is called on its own, so one
broken plugin is reported (name, distribution, error) while the rest of V7 keeps working.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .components import KINDS, Component

HOOK_KIND: dict[str, str] = {
    "register_feeds": "feed",
    "register_theories": "theory",
    "register_formatters": "formatter",
    "register_synthesizers": "synthesizer",
    "register_sinks": "sink",
}
KIND_SECTION: dict[str, str] = {
    "feed": "feeds",
    "theory": "theories",
    "formatter": "formatters",
    "synthesizer": "synthesizer",
    "sink": "sinks",
}


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from: its entry-point name and distribution."""

    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class RegisteredComponent:
    kind: str
    name: str
    cls: type[Component]
    source: PluginSource

    @property
    def version(self) -> str:
        return str(getattr(self.cls, "version", "") or self.source.version)


@dataclass(frozen=True)
class LoadError:
    source: PluginSource
    error: str
    kind: str | None = None
    name: str | None = None

    def describe(self) -> str:
        what = f"{self.kind} {self.name!r}" if self.name else f"plugin {self.source.plugin!r}"
        return f"{what} (distribution {self.source.distribution} {self.source.version}): {self.error}"


@dataclass
class Registry:
    """Every component the installed plugins registered, by kind and name, plus load errors."""

    components: dict[str, dict[str, RegisteredComponent]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    errors: list[LoadError] = field(default_factory=list)
    blocked: list[PluginSource] = field(default_factory=list)
    """Entry points skipped before import because they were blocked by name."""
    plugin_manager: pluggy.PluginManager = field(default_factory=lambda: _new_manager())
    _conflicts: dict[tuple[str, str], RegisteredComponent] = field(default_factory=dict)
    _sources: dict[str, PluginSource] = field(default_factory=dict)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> RegisteredComponent | None:
        return self.components[kind].get(name)

    def error_for(self, kind: str, name: str) -> LoadError | None:
        """The load error that explains why `name` is missing or unusable, if any."""
        for error in self.errors:
            if error.name == name and error.kind in (kind, None):
                return error
        for error in self.errors:
            if error.name is None and error.source.plugin == name:
                return error
        return None

    def all(self) -> list[RegisteredComponent]:
        return [c for kind in KINDS for c in self.components[kind].values()]

    # -- loading ---------------------------------------------------------------------------

    def add_plugin(self, plugin: Any, source: PluginSource) -> None:
        """Register one plugin object (a module or any object with hookimpls) and collect its components."""
        name = source.plugin
        first = self._sources.get(name)
        if first is not None:
            # Same entry-point name from two distributions: report both, and register this one under
            # a distinct name so its components meet the name-conflict check instead of vanishing.
            self.errors.append(LoadError(source, f"two plugins are named {name!r}: distribution {first.distribution} and distribution {source.distribution}"))
            name = f"{name}@{source.distribution}"
        self._sources.setdefault(source.plugin, source)
        try:
            self.plugin_manager.register(plugin, name=name)
        except Exception as exc:  # pluggy validation errors
            self.errors.append(LoadError(source, f"{type(exc).__name__}: {exc}"))
            return
        for hook_name, kind in HOOK_KIND.items():
            caller = getattr(self.plugin_manager.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(register=lambda cls, _kind=kind: self._register(_kind, cls, source))
                except Exception as exc:
                    self.errors.append(LoadError(source, f"{hook_name} raised {type(exc).__name__}: {exc}", kind))

    def _register(self, kind: str, cls: Any, source: PluginSource) -> None:
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"register() takes a subclass of v7.{base.__name__}, got {cls!r}")
        name = getattr(cls, "name", "")
        if not name or not isinstance(name, str):
            raise TypeError(f"{cls.__name__} has no `name`")
        existing = self.components[kind].get(name) or self._conflicts.get((kind, name))
        if existing is not None:
            # Neither wins: silently picking one would run code the user did not choose.
            self.components[kind].pop(name, None)
            self._conflicts[(kind, name)] = existing
            message = (
                f"two plugins register the {kind} name {name!r}: distribution "
                f"{existing.source.distribution} (plugin {existing.source.plugin}) and distribution "
                f"{source.distribution} (plugin {source.plugin})"
            )
            self.errors.append(LoadError(source, message, kind, name))
            return
        self.components[kind][name] = RegisteredComponent(kind, name, cls, source)

    def load_entry_points(
        self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None, blocked: Iterable[str] = ()
    ) -> None:
        """Import and register every entry point of the `v7` group, except those named in `blocked`."""
        blocked = set(blocked)
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=hookspecs.PROJECT)
        seen: set[str] = set()
        # Reading name and version parses a distribution's METADATA each time: once per distribution.
        described: dict[int, tuple[str, str]] = {}
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            if id(dist) not in described:
                described[id(dist)] = (getattr(dist, "name", None) or "unknown", getattr(dist, "version", None) or "")
            name, version = described[id(dist)]
            source = PluginSource(plugin=ep.name, distribution=name, version=version)
            if ep.name in seen:
                # The same distribution can be visible twice on sys.path (editable + wheel); skip it.
                if any(c.source == source for c in self.all()):
                    continue
            seen.add(ep.name)
            if ep.name in blocked:
                self.blocked.append(source)
                continue
            try:
                plugin = ep.load()
            except BaseException as exc:  # a plugin's import may even call sys.exit
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.errors.append(LoadError(source, f"import failed: {type(exc).__name__}: {exc}"))
                continue
            self.add_plugin(plugin, source)


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_registry(extra_plugins: Iterable[tuple[Any, PluginSource]] = (), blocked: Iterable[str] = ()) -> Registry:
    """Discover every installed plugin not `blocked` (plus `extra_plugins`, used by tests and embedding code)."""
    registry = Registry()
    registry.load_entry_points(blocked=blocked)
    for plugin, source in extra_plugins:
        registry.add_plugin(plugin, source)
    return registry
