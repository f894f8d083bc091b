"""Entry-point registries for dataset and model plugins.

Built-ins are registered through this package's own entry points exactly like third-party
plugins. Discovery is lazy (nothing is imported until a plugin is asked for or listed); a
plugin that fails to import, returns the wrong kind of object, or claims a taken name is
reported with its distribution and the cause, and only the command that needs it fails.
Setting ``PIXELCNN_DISABLE_PLUGINS=1`` keeps only the plugins shipped with pixelcnn.

Name clashes: a plugin shipped with pixelcnn keeps its name and the newcomer is reported as
broken (installing a package can never take ``mnist`` away); when two third-party
distributions claim the same name, neither is used until one is uninstalled, since the order
in which Python finds them means nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Iterable

from pydantic import BaseModel

from .errors import PluginError

DATASETS = "pixelcnn.datasets"
MODELS = "pixelcnn.models"
OWN_DISTRIBUTION = "pixelcnn-cli"
DISABLE_ENV = "PIXELCNN_DISABLE_PLUGINS"


def _metadata(ep: EntryPoint, key: str) -> str | None:
    """``Name`` or ``Version`` of the distribution behind ``ep``; ``None`` when unknown or unreadable."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    try:
        return dist.version if key == "Version" else dist.metadata[key]
    except Exception:  # a half-removed or hand-made .dist-info
        return None


def _dist_name(ep: EntryPoint) -> str | None:
    return _metadata(ep, "Name")


def _normalise(name: str | None) -> str | None:
    return name.lower().replace("_", "-").replace(".", "-") if name else name


def plugins_disabled() -> bool:
    """Whether ``PIXELCNN_DISABLE_PLUGINS`` asks for the built-in plugins only."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in {"", "0", "false", "no", "off"}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


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
    disabled: bool = False
    _plugin: Any = field(default=None, repr=False)
    _loaded: bool = field(default=False, repr=False)

    @property
    def source(self) -> str:
        """``distribution version``, or the entry point's target when it has no distribution."""
        if self.distribution:
            return f"{self.distribution} {self.version}" if self.version else self.distribution
        return self.value

    @property
    def builtin(self) -> bool:
        return _normalise(self.distribution) == OWN_DISTRIBUTION

    @property
    def status(self) -> str:
        """``ok``, ``error``, ``disabled``, or ``not loaded`` (before :meth:`load`)."""
        if self.disabled:
            return "disabled"
        if self.error:
            return "error"
        return "ok" if self._loaded else "not loaded"

    def load(self, check: Callable[[Any], str | None]) -> Any:
        """Import the plugin once; on failure ``error`` says why and ``None`` is returned."""
        if self._loaded:
            return self._plugin
        if self.error is None and not self.disabled:
            try:
                obj = self.entry_point.load()
                plugin = obj() if isinstance(obj, type) else obj
                problem = check(plugin)
                if problem:
                    self.error = f"wrong kind of object: {problem}"
                else:
                    self._plugin = plugin
            except (Exception, SystemExit) as error:  # anything third-party code does at import time
                self.error = f"failed to load: {_first_line(error)}"
        self._loaded = True
        return self._plugin


def _options_problem(plugin: Any, required: bool) -> str | None:
    options_model = getattr(plugin, "options_model", None)
    if options_model is None and not required:
        return None
    if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
        return f"its options_model must be a pydantic model class, not {type(options_model).__name__}"
    return None


def _check_dataset(plugin: Any) -> str | None:
    if not callable(getattr(plugin, "load", None)):
        return f"a dataset plugin needs a load(data_dir, download, options) method ({type(plugin).__name__} has none)"
    return _options_problem(plugin, required=False)


def _check_model(plugin: Any) -> str | None:
    if not callable(getattr(plugin, "build", None)):
        return f"a model plugin needs a build(options, spec) method ({type(plugin).__name__} has none)"
    return _options_problem(plugin, required=True)


class Registry:
    def __init__(self, group: str, kind: str, check: Callable[[Any], str | None]):
        self.group = group
        self.kind = kind
        self.check = check
        self._all: list[PluginEntry] | None = None
        self._entries: dict[str, PluginEntry] | None = None
        self._disabled_flag: bool | None = None
        self._extra: list[EntryPoint] = []

    # -- discovery -------------------------------------------------------------------------
    def _discover(self) -> Iterable[EntryPoint]:
        try:
            found = list(entry_points(group=self.group))
        except Exception:  # a broken .dist-info somewhere on sys.path must not take the tool down
            found = []
        return found + self._extra

    def _scan(self) -> None:
        only_own = plugins_disabled()
        everything: list[PluginEntry] = []
        active: dict[str, PluginEntry] = {}
        seen: set[tuple[str | None, str, str]] = set()
        for ep in self._discover():
            dist = _dist_name(ep)
            key = (_normalise(dist), ep.name, ep.value)
            if key in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(key)
            entry = PluginEntry(self.group, ep.name, ep.value, dist, _metadata(ep, "Version"), ep)
            everything.append(entry)
            if only_own and not entry.builtin:
                entry.disabled = True
                entry.error = f"switched off by {DISABLE_ENV}={os.environ.get(DISABLE_ENV)}"
                continue
            first = active.get(ep.name)
            if first is None:
                active[ep.name] = entry
            elif first.builtin and not entry.builtin:
                entry.error = f"name {ep.name!r} is taken by {first.source}, which ships with pixelcnn; rename the plugin"
            elif entry.builtin and not first.builtin:
                first.error = f"name {ep.name!r} is taken by {entry.source}, which ships with pixelcnn; rename the plugin"
                active[ep.name] = entry
            else:  # two third-party claims: neither wins until one is removed
                both = " and ".join(sorted([first.source, entry.source]))
                clash = f"name {ep.name!r} is claimed by both {both}; uninstall one of them"
                first.error = entry.error = clash
        self._all = everything
        self._entries = active
        self._disabled_flag = only_own

    def _fresh(self) -> None:
        if self._entries is None or self._disabled_flag != plugins_disabled():
            self._scan()

    def entries(self) -> dict[str, PluginEntry]:
        """The entry each usable name resolves to (it may still fail to load)."""
        self._fresh()
        return self._entries

    def all_entries(self) -> list[PluginEntry]:
        """Every entry point found, including those switched off and the losers of a name clash."""
        self._fresh()
        return list(self._all)

    def add(self, ep: EntryPoint) -> None:
        """Register an entry point in-process (tests and notebooks)."""
        self._extra.append(ep)
        self._entries = None

    def reset(self) -> None:
        """Forget in-process entry points and everything loaded; the next use rediscovers."""
        self._extra = []
        self._entries = None
        self._all = None

    # -- use --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self.entries())

    def _unknown(self, name: str) -> PluginError:
        available = ", ".join(self.names()) or "none"
        message = f"unknown {self.kind} {name!r}; available: {available}"
        switched_off = [e for e in self.all_entries() if e.disabled and e.name == name]
        if switched_off:
            message = (f"{self.kind} plugin {name!r} ({switched_off[0].source}) is switched off by "
                       f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV)}; unset it to use third-party plugins")
        return PluginError(message)

    def get(self, name: str) -> Any:
        entry = self.entries().get(name)
        if entry is None:
            raise self._unknown(name)
        plugin = entry.load(self.check)
        if entry.error:
            raise PluginError(f"{self.kind} plugin {name!r} ({entry.source}): {entry.error}")
        return plugin

    def entry(self, name: str) -> PluginEntry | None:
        """The entry behind ``name``, if a usable one is installed (switched-off ones count as installed)."""
        found = self.entries().get(name)
        if found is None:
            found = next((e for e in self.all_entries() if e.disabled and e.name == name), None)
        return found


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
