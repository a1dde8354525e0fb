"""Fixtures for the ModernBERT plugin tests: the shared ``modernbert-a`` checkpoint and its conversions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[3]
FIXTURE = next(
    (
        base / "shared" / "fixtures" / "modernbert-a"
        for base in (_ROOT, _ROOT.parent)
        if (base / "shared" / "fixtures" / "modernbert-a").is_dir()
    ),
    _ROOT.parent / "shared" / "fixtures" / "modernbert-a",
)


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The read-only ``modernbert-a`` checkpoint (sentence-transformers layout, CLS pooling)."""
    if not FIXTURE.is_dir():
        pytest.skip(f"fixture checkpoint not found at {FIXTURE}")
    return FIXTURE


@pytest.fixture(scope="session")
def reference(fixture_dir: Path) -> dict[str, Any]:
    """``reference.json``: what transformers computed for 8 texts (ids and pooled embeddings)."""
    return json.loads((fixture_dir / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def converted(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``converted(file_type)``: the fixture converted to GGUF at that type (once per session)."""
    from ollama_arch_modernbert.convert import convert_checkpoint

    cache: dict[str, Path] = {}

    def get(file_type: str) -> Path:
        if file_type not in cache:
            out = tmp_path_factory.mktemp(f"gguf-{file_type.lower()}") / "model.gguf"
            cache[file_type] = convert_checkpoint(fixture_dir, out, file_type=file_type).model_path
        return cache[file_type]

    return get


@pytest.fixture(scope="session")
def llama_outputs(converted: Callable[[str], Path], reference: dict[str, Any]) -> Callable[[str], list[Any]]:
    """``llama_outputs(file_type)``: llama.cpp's ids and embeddings of the 8 reference texts (once per type)."""
    pytest.importorskip("llama_cpp")
    from ollama_arch_modernbert.verify import llama_embeddings

    cache: dict[str, list[Any]] = {}

    def get(file_type: str) -> list[Any]:
        if file_type not in cache:
            cache[file_type] = llama_embeddings(converted(file_type), [t["text"] for t in reference["texts"]])
        return cache[file_type]

    return get


@pytest.fixture
def checkpoint_copy(fixture_dir: Path, tmp_path: Path) -> Callable[..., Path]:
    """``checkpoint_copy(config=..., modules=...)``: a writable copy of the fixture, optionally edited.

    ``config`` is a function editing the config.json dict in place; ``modules`` replaces
    ``modules.json`` (``None`` removes every sentence-transformers file).
    """
    counter = iter(range(1000))

    def make(config: Callable[[dict[str, Any]], None] | None = None, **edits: Any) -> Path:
        target = tmp_path / f"checkpoint-{next(counter)}"
        shutil.copytree(fixture_dir, target)
        if config is not None:
            raw = json.loads((target / "config.json").read_text(encoding="utf-8"))
            config(raw)
            (target / "config.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
        if "modules" in edits:
            if edits["modules"] is None:
                for name in ("modules.json", "sentence_bert_config.json"):
                    (target / name).unlink()
                shutil.rmtree(target / "1_Pooling")
            else:
                (target / "modules.json").write_text(json.dumps(edits["modules"]), encoding="utf-8")
        return target

    return make
