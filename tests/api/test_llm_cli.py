"""Simon Willison's ``llm`` CLI with its ``llm-ollama`` plugin talks to this server as to Ollama."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from live_server import Server

LLM = Path(sys.executable).parent / "llm"


@pytest.mark.skipif(not LLM.exists(), reason="llm is not installed (test extra)")
def test_llm_ollama_lists_and_prompts(server: Server, smollm2: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLM_"))}
    env.update({"OLLAMA_HOST": server.host, "LLM_USER_PATH": str(tmp_path)})

    def llm(*args: str) -> str:
        done = subprocess.run([str(LLM), *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "Ollama: ollama/smollm2:latest" in llm("models")
    first = llm("-m", "ollama/smollm2", "-o", "temperature", "0", "-o", "num_predict", "8", "hi")
    assert first.strip()
    again = llm("-m", "ollama/smollm2", "-o", "temperature", "0", "-o", "num_predict", "8", "hi")
    assert again == first, "greedy, through the same chat path"
