"""Pytest fixtures for plugin authors (loaded through the ``pytest11`` entry point).

Importing this module must stay cheap: it is loaded into every pytest run on a machine where
ollama-core is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ollama_core.plugins import PluginManager, Registries


@pytest.fixture
def ollama_plugin_manager() -> Callable[..., PluginManager]:
    """Factory: ``ollama_plugin_manager(my_plugin, ...)`` builds a strict manager with the
    built-in plugins plus the given ones (no entry points), so a broken hook fails the test."""
    from ollama_core.plugins import create_plugin_manager

    def make(*plugins: object, builtins: bool = True, entry_points: bool = False, strict: bool = True) -> PluginManager:
        return create_plugin_manager(plugins=plugins, builtins=builtins, entry_points=entry_points, strict=strict)

    return make


@pytest.fixture
def ollama_registries(ollama_plugin_manager: Callable[..., PluginManager]) -> Callable[..., Registries]:
    """Factory: the registries (architectures, converters, renderers, ...) with the given plugins."""
    from ollama_core.plugins import build_registries

    def make(*plugins: object, **kwargs: Any) -> Registries:
        return build_registries(ollama_plugin_manager(*plugins, **kwargs))

    return make


@pytest.fixture
def ollama_validate_plugin() -> Callable[[object], None]:
    """``ollama_validate_plugin(plugin)`` fails the test with every hookimpl that matches no spec."""
    from ollama_core.testing.validate import PluginProblems, validate_plugin

    def check(plugin: object) -> None:
        problems = validate_plugin(plugin)
        if problems:
            pytest.fail(str(PluginProblems(problems)), pytrace=False)

    return check
