"""A real ``ollama serve`` subprocess for tests: start it on a free loopback port, drive it, stop it.

A module of its own (not ``conftest``), so test modules can import it whatever other
``conftest.py`` files the same pytest run loads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A real ``ollama serve`` subprocess on a loopback port."""

    url: str
    host: str
    models: Path
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def cli(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``ollama ARGS`` against this server."""
        result = subprocess.run(
            [sys.executable, "-m", "ollama_core.cli", *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ollama {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def alive(self) -> bool:
        """Whether the process still runs and answers ``HEAD /``."""
        if self.process.poll() is not None:
            return False
        try:
            return httpx.head(self.url + "/", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Terminate the server (and, through it, its runners)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(tmp: Path, extra_env: Mapping[str, str] | None = None, *, python_path: str | None = None) -> Server:
    """Start ``ollama serve`` with a fresh model store under ``tmp`` and wait until it answers."""
    port = free_port()
    models = tmp / "models"
    models.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update({"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(models), "PYTHONUNBUFFERED": "1"})
    if python_path:
        env["PYTHONPATH"] = python_path + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env or {})
    log = tmp / f"server-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ollama_core.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", models, process, log, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        if server.alive():
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not answer within 60 s:\n{log.read_text()}")
