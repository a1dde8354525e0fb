"""The plugin's hooks, registration and import cost."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ollama_core.testing import assert_valid_plugin

from ollama_arch_gemma4 import plugin

HEAVY = ("numpy", "gguf", "jinja2", "llama_cpp", "safetensors")


def test_hooks_match_specs(ollama_validate_plugin: Callable[[object], None]) -> None:
    ollama_validate_plugin(plugin)
    assert_valid_plugin(plugin)


def test_registered_by_entry_point() -> None:
    entry_points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="ollama.plugins")}
    assert entry_points.get("arch_gemma4") == "ollama_arch_gemma4.plugin"


def test_registries(ollama_registries: Callable[..., Any]) -> None:
    registries = ollama_registries(plugin)
    architecture = registries.architecture_for("gemma4")
    assert architecture.renderer == "gemma4" and architecture.parser == "gemma4"
    assert registries.converter_for("Gemma4ForCausalLM").name == "gemma4"
    assert registries.converter_for("Gemma4ForConditionalGeneration").name == "gemma4"
    assert registries.renderer_for(None, "gemma4").name == "gemma4"
    parser_spec = registries.parser_for(None, "gemma4")
    assert parser_spec.name == "gemma4" and set(parser_spec.capabilities) == {"tools", "thinking"}
    assert "gemma4" in registries.tokenizers and "gemma4" in registries.reference_models


def test_factories_build_working_objects(ollama_registries: Callable[..., Any]) -> None:
    registries = ollama_registries(plugin)
    parser = registries.parser_for("gemma4", None).factory(None, True)
    events = parser.feed("<|channel>thought\nx<channel|>y") + parser.finish()
    assert [(e.kind, e.text) for e in events] == [("thinking", "x"), ("content", "y")]
    assert hasattr(registries.renderer_for("gemma4", None).factory(), "render")
    assert hasattr(registries.converters["gemma4"].value.factory(), "convert")
    assert hasattr(registries.tokenizers["gemma4"].value.factory(), "gguf_metadata")


def test_plugin_import_is_cheap() -> None:
    code = f"import sys, ollama_arch_gemma4.plugin; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
