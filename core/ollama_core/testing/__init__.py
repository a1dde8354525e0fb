"""Tools for plugin authors: build a plugin manager with a plugin registered, validate hookimpls.

Installed as a pytest plugin (entry point ``pytest11``) giving the fixtures
``ollama_plugin_manager``, ``ollama_registries`` and ``ollama_validate_plugin``; the functions
here work without pytest too.
"""

from ollama_core.testing.validate import PluginProblems, assert_valid_plugin, validate_plugin

__all__ = ["PluginProblems", "assert_valid_plugin", "validate_plugin"]
