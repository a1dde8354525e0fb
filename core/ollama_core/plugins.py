"""The plugin manager: built-in plugins, entry-point plugins, and isolation of broken ones.

Nothing happens at import time. :func:`create_plugin_manager` builds a manager; a plugin that
fails to import, fails validation or raises inside a hook is recorded in
:attr:`PluginManager.errors` (and logged), and the rest keep working. ``strict=True`` re-raises
instead, for plugin authors' tests.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import traceback
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from ollama_core import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ollama.plugins"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "ollama_core.builtins.cpu_backend",
    "ollama_core.builtins.default_prompt",
    "ollama_api.native.plugin",
    "ollama_api.openai.plugin",
    "ollama_api.audio.plugin",
)


class PluginError(Exception):
    """Raised in strict mode for a plugin that cannot be loaded or whose hook failed."""


@dataclass(frozen=True)
class PluginProblem:
    """A recorded failure of one plugin: where it happened and the error text."""

    plugin: str
    phase: str
    error: str
    distribution: str | None = None


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin as ``ollama plugins`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool


@dataclass
class _Origin:
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from and what went wrong."""

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.strict = strict
        self.errors: list[PluginProblem] = []
        self._origins: dict[str, _Origin] = {}

    def record_problem(self, plugin: str, phase: str, exc: BaseException, distribution: str | None = None) -> None:
        """Log a plugin failure and keep it for ``ollama plugins``; re-raise in strict mode."""
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.errors.append(PluginProblem(plugin=plugin, phase=phase, error=text, distribution=distribution))
        log.error("plugin %s failed (%s): %s", plugin, phase, text)
        if self.strict:
            raise PluginError(f"plugin {plugin} failed ({phase}): {text}") from exc

    def add_plugin(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
        builtin: bool = False,
    ) -> bool:
        """Register ``plugin`` under ``name`` after validating it; return whether it was accepted."""
        try:
            check_plugin_api(plugin)
            self.register(plugin, name=name)
            problems = unknown_hooks(self, plugin)
            if problems:
                self.unregister(plugin)
                raise pluggy.PluginValidationError(plugin, "; ".join(problems))
        except Exception as exc:  # noqa: BLE001 - any failure isolates this plugin only
            self.record_problem(name, "register", exc, distribution)
            return False
        self._origins[name] = _Origin(distribution, version, builtin)
        return True

    def load_module(self, module_name: str, *, builtin: bool = False) -> bool:
        """Import a module by name and register it as a plugin."""
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            self.record_problem(module_name, "import", exc)
            return False
        return self.add_plugin(module, module_name, builtin=builtin)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP, *, skip: Collection[str] = ()) -> None:
        """Load every entry point of ``group`` not named in ``skip``, each inside its own error boundary."""
        for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if self.has_plugin(ep.name) or ep.name in skip:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001
                self.record_problem(ep.name, "import", exc, dist)
                continue
            self.add_plugin(plugin, ep.name, distribution=dist, version=version)

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook separately, isolating failures.

        Returns ``(plugin name, result)`` pairs in registration order, so built-ins come first
        (pluggy's own call order is the reverse). ``None`` results are skipped.
        """
        caller = getattr(self.hook, hook_name)
        results: list[tuple[str, Any]] = []
        for impl in caller.get_hookimpls():
            name = self.get_name(impl.plugin) or repr(impl.plugin)
            try:
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                self.record_problem(name, f"hook {hook_name}", exc, self.origin(name).distribution)
                continue
            if result is not None:
                results.append((name, result))
        return results

    def origin(self, name: str) -> _Origin:
        """Where the plugin registered as ``name`` came from."""
        return self._origins.get(name, _Origin())

    def infos(self) -> list[PluginInfo]:
        """Describe every registered plugin, built-ins first."""
        infos: list[PluginInfo] = []
        for name, plugin in self.list_name_plugin():
            origin = self.origin(name)
            hooks = tuple(
                sorted(h.name for h in self.get_hookcallers(plugin) or [] if h.name.startswith("ollama_"))
            )
            infos.append(PluginInfo(name, origin.distribution, origin.version, hooks, origin.builtin))
        return sorted(infos, key=lambda i: (not i.builtin, i.name))


def check_plugin_api(plugin: object) -> None:
    """Refuse a plugin written against a newer hook spec than this core provides."""
    wanted = getattr(plugin, "OLLAMA_PLUGIN_API", None)
    if wanted is not None and (not isinstance(wanted, int) or wanted > hookspecs.SPEC_VERSION):
        raise PluginError(
            f"plugin needs hook spec version {wanted!r}, this ollama-core provides {hookspecs.SPEC_VERSION}"
        )


def unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Names of ``ollama_*`` functions on ``plugin`` that match no hook spec."""
    problems: list[str] = []
    for attr in dir(plugin):
        if not attr.startswith(hookspecs.PROJECT_NAME + "_"):
            continue
        caller = getattr(pm.hook, attr, None)
        if caller is None or caller.spec is None:
            problems.append(f"unknown hook {attr!r}")
    return problems


def create_plugin_manager(
    *,
    entry_points: bool = True,
    builtins: bool = True,
    strict: bool = False,
    plugins: Iterable[object | ModuleType] = (),
    disabled: Collection[str] = (),
) -> PluginManager:
    """Build a plugin manager: built-ins, then ``plugins`` given here, then entry points.

    ``disabled`` names built-in modules and entry points not to load (the server passes
    ``OLLAMA_DISABLED_PLUGINS``, see :class:`~ollama_core.settings.Settings`).
    """
    pm = PluginManager(strict=strict)
    if builtins:
        for module_name in BUILTIN_PLUGINS:
            if module_name not in disabled:
                pm.load_module(module_name, builtin=True)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.add_plugin(plugin, name)
    if entry_points:
        pm.load_entry_points(skip=disabled)
    return pm


@dataclass
class Registered:
    """A registry entry and the plugin that supplied it."""

    value: Any
    plugin: str
    distribution: str | None


@dataclass
class Registries:
    """Every registration hook's answers, by family and name; built once at start-up."""

    architectures: dict[str, Registered] = field(default_factory=dict)
    converters: dict[str, Registered] = field(default_factory=dict)
    tokenizers: dict[str, Registered] = field(default_factory=dict)
    reference_models: dict[str, Registered] = field(default_factory=dict)
    renderers: dict[str, Registered] = field(default_factory=dict)
    parsers: dict[str, Registered] = field(default_factory=dict)
    backends: dict[str, Registered] = field(default_factory=dict)
    api_surfaces: dict[str, Registered] = field(default_factory=dict)

    def values(self, family: str) -> list[Any]:
        """The descriptors of one family, in registration order."""
        return [r.value for r in getattr(self, family).values()]

    def architecture_for(self, gguf_architecture: str) -> Any | None:
        """The :class:`Architecture` that claims a GGUF architecture, if any."""
        for entry in self.architectures.values():
            if gguf_architecture in entry.value.gguf_architectures:
                return entry.value
        return None

    def offers(self, capability: str) -> bool:
        """Whether some registered architecture declares ``capability`` or can gain it from a projector.

        This is what "an installed plugin offers audio input" means: the audio API surface is
        mounted only when ``offers("audio")``.
        """
        return any(
            capability in entry.value.capabilities or capability in entry.value.projector_capabilities
            for entry in self.architectures.values()
        )

    def converter_for(self, hf_architecture: str) -> Any | None:
        """The :class:`ConverterSpec` that converts a HF architecture, if any."""
        for entry in self.converters.values():
            if hf_architecture in entry.value.hf_architectures:
                return entry.value
        return None

    def _by_name_or_arch(self, family: str, name: str | None, architecture: str | None) -> Any | None:
        entries = getattr(self, family)
        if name and name in entries:
            return entries[name].value
        if architecture:
            for entry in entries.values():
                if architecture in entry.value.architectures:
                    return entry.value
            arch = self.architecture_for(architecture)
            default_name = getattr(arch, family[:-1], None) if arch else None
            if default_name and default_name in entries:
                return entries[default_name].value
        return entries["default"].value if "default" in entries else None

    def renderer_for(self, name: str | None, architecture: str | None) -> Any | None:
        """The :class:`RendererSpec` for a model's configured renderer name or architecture."""
        return self._by_name_or_arch("renderers", name, architecture)

    def parser_for(self, name: str | None, architecture: str | None) -> Any | None:
        """The :class:`ParserSpec` for a model's configured parser name or architecture."""
        return self._by_name_or_arch("parsers", name, architecture)


_FAMILIES: dict[str, str] = {
    "architectures": "ollama_architectures",
    "converters": "ollama_converters",
    "tokenizers": "ollama_tokenizers",
    "reference_models": "ollama_reference_models",
    "renderers": "ollama_renderers",
    "parsers": "ollama_parsers",
    "backends": "ollama_backends",
    "api_surfaces": "ollama_api_surfaces",
}


def build_registries(pm: PluginManager) -> Registries:
    """Ask every registration hook once and index the answers by name.

    A name claimed twice is reported against the later plugin, naming both, and the first
    registration is kept.
    """
    registries = Registries()
    for family, hook_name in _FAMILIES.items():
        table: dict[str, Registered] = getattr(registries, family)
        for plugin_name, result in pm.call_each(hook_name):
            dist = pm.origin(plugin_name).distribution
            try:
                items = list(result)
                for item in items:
                    name = item.name
                    if name in table:
                        first = table[name]
                        raise PluginError(
                            f"{family[:-1]} {name!r} is registered by both {first.plugin!r} and {plugin_name!r}"
                        )
                    table[name] = Registered(item, plugin_name, dist)
            except Exception as exc:  # noqa: BLE001
                pm.record_problem(plugin_name, f"hook {hook_name}", exc, dist)
    return registries
