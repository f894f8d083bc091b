"""Entry-point registries for dataset and model plugins.

Built-ins are registered through this package's own entry points exactly like third-party
plugins. Discovery is lazy (nothing is imported until a plugin is asked for or listed); a
plugin that fails to import, returns the wrong kind of object, or claims a taken name is
reported with its distribution and the cause, and only the command that needs it fails.
Setting ``PIXELCNN_DISABLE_PLUGINS=1`` keeps only the plugins shipped with pixelcnn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Iterable

from .errors import PluginError

DATASETS = "pixelcnn.datasets"
MODELS = "pixelcnn.models"
OWN_DISTRIBUTION = "pixelcnn-cli"
DISABLE_ENV = "PIXELCNN_DISABLE_PLUGINS"


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _normalise(name: str | None) -> str | None:
    return name.lower().replace("_", "-") if name else name


@dataclass
class PluginEntry:
    """One entry point: what it claims, where it comes from, and (once loaded) what it gave."""

    group: str
    name: str
    value: str
    distribution: str | None
    version: str | None
    entry_point: EntryPoint | None = None
    error: str | None = None
    _plugin: Any = field(default=None, repr=False)
    _loaded: bool = field(default=False, repr=False)

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}" if self.distribution else self.value

    def load(self, check: Callable[[Any], str | None]) -> Any:
        if self._loaded:
            return self._plugin
        if self.error is None:
            try:
                obj = self.entry_point.load()
                plugin = obj() if isinstance(obj, type) else obj
                problem = check(plugin)
                if problem:
                    self.error = f"wrong kind of object: {problem}"
                else:
                    self._plugin = plugin
            except Exception as error:  # any import-time failure of third-party code
                detail = str(error).splitlines()[0] if str(error) else ""
                self.error = f"failed to load: {type(error).__name__}{': ' + detail if detail else ''}"
        self._loaded = True
        return self._plugin


def _check_dataset(plugin: Any) -> str | None:
    if not callable(getattr(plugin, "load", None)):
        return "a dataset plugin needs a load(data_dir, download, options) method"
    return None


def _check_model(plugin: Any) -> str | None:
    if not callable(getattr(plugin, "build", None)):
        return "a model plugin needs a build(options, spec) method"
    if not isinstance(getattr(plugin, "options_model", None), type):
        return "a model plugin needs an options_model (a pydantic model class)"
    return None


class Registry:
    def __init__(self, group: str, kind: str, check: Callable[[Any], str | None]):
        self.group = group
        self.kind = kind
        self.check = check
        self._entries: dict[str, PluginEntry] | None = None
        self._extra: list[EntryPoint] = []

    # -- discovery -------------------------------------------------------------------------
    def _discover(self) -> Iterable[EntryPoint]:
        return list(entry_points(group=self.group)) + self._extra

    def entries(self) -> dict[str, PluginEntry]:
        if self._entries is None:
            only_own = os.environ.get(DISABLE_ENV, "").strip().lower() not in {"", "0", "false", "no"}
            entries: dict[str, PluginEntry] = {}
            seen: set[tuple[str | None, str, str]] = set()
            for ep in self._discover():
                dist = _dist_name(ep)
                if only_own and _normalise(dist) != OWN_DISTRIBUTION:
                    continue
                key = (_normalise(dist), ep.name, ep.value)
                if key in seen:  # the same distribution found twice on sys.path
                    continue
                seen.add(key)
                version = ep.dist.version if getattr(ep, "dist", None) is not None else None
                entry = PluginEntry(self.group, ep.name, ep.value, dist, version, ep)
                if ep.name in entries:
                    first = entries[ep.name]
                    clash = f"name {ep.name!r} is claimed by both {first.source} and {entry.source}"
                    first.error = entry.error = clash
                    # keep the first; the clash makes both unusable until one is removed
                    continue
                entries[ep.name] = entry
            self._entries = entries
        return self._entries

    def add(self, ep: EntryPoint) -> None:
        """Register an entry point in-process (tests and notebooks)."""
        self._extra.append(ep)
        self._entries = None

    def reset(self) -> None:
        self._extra = []
        self._entries = None

    # -- use --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self.entries())

    def get(self, name: str) -> Any:
        entries = self.entries()
        entry = entries.get(name)
        if entry is None:
            available = ", ".join(self.names()) or "none"
            raise PluginError(f"unknown {self.kind} {name!r}; available: {available}")
        plugin = entry.load(self.check)
        if entry.error:
            raise PluginError(f"{self.kind} plugin {name!r} ({entry.source}): {entry.error}")
        return plugin

    def entry(self, name: str) -> PluginEntry | None:
        return self.entries().get(name)


datasets = Registry(DATASETS, "dataset", _check_dataset)
models = Registry(MODELS, "model", _check_model)


def provenance(registry: Registry, name: str) -> dict[str, str | None]:
    """Name, distribution and version of a plugin, as recorded in checkpoints."""
    entry = registry.entry(name)
    return {
        "name": name,
        "distribution": entry.distribution if entry else None,
        "version": entry.version if entry else None,
    }
