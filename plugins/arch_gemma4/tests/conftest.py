"""Shared fixtures: the gemma4-a reference checkpoint and its conversions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gemma4_support import FIXTURE, convert


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The gemma4-a checkpoint (read-only)."""
    if not (FIXTURE / "model.safetensors").is_file():
        pytest.skip(f"reference checkpoint {FIXTURE} is not available")
    return FIXTURE


@pytest.fixture(scope="session")
def reference(fixture_dir: Path) -> dict[str, Any]:
    """What transformers computed for gemma4-a."""
    return json.loads((fixture_dir / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def f32_gguf(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gemma4-a converted at F32."""
    return convert(fixture_dir, tmp_path_factory.mktemp("gemma4-f32"), "F32")


@pytest.fixture(scope="session")
def f32_llama(f32_gguf: Path) -> Iterator[Any]:
    """The F32 conversion loaded in llama.cpp."""
    pytest.importorskip("llama_cpp")
    from gemma4_llama import LlamaRunner

    runner = LlamaRunner(f32_gguf)
    yield runner
    runner.close()
