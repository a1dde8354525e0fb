"""The plugin's hooks: valid against the specs, registered under the right names, cheap to import."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ollama_arch_modernbert import plugin


def test_plugin_matches_hook_specs(ollama_validate_plugin: Callable[[object], None]) -> None:
    ollama_validate_plugin(plugin)


def test_registries_find_modernbert(ollama_registries: Callable[..., Any]) -> None:
    registries = ollama_registries(plugin)
    for hf_architecture in ("ModernBertModel", "ModernBertForMaskedLM"):
        assert registries.converter_for(hf_architecture).name == "modernbert"
    architecture = registries.architecture_for("modern-bert")
    assert architecture.name == "modernbert"
    assert "embedding" in architecture.capabilities
    assert "modernbert" in registries.tokenizers
    assert "modernbert" in registries.reference_models


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    heavy = ("numpy", "gguf", "llama_cpp", "safetensors", "ollama_arch_modernbert.convert")
    code = (
        "import json, sys, ollama_arch_modernbert.plugin; "
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_factories_build_working_objects(fixture_dir: Path, reference: dict[str, Any]) -> None:
    converter = plugin.ollama_converters()[0].factory()
    assert callable(converter.convert)
    metadata = plugin.ollama_tokenizers()[0].factory().gguf_metadata(fixture_dir)
    assert metadata["tokenizer.ggml.pre"].value == "modern-bert"
    model = plugin.ollama_reference_models()[0].factory(fixture_dir)
    output = model.run(reference["texts"][0]["ids"])
    assert output.final.shape == (64,)
    assert len(output.layers) == 6
