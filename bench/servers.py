"""The servers compared: how each is started, stopped and driven, all on loopback."""

from __future__ import annotations

import enum
import json
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from cpu import alive, process_tree

ROOT = Path(__file__).resolve().parents[1]
CTX_PER_SLOT = 4096
START_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0
FAULTS = (-signal.SIGSEGV, -signal.SIGILL, -signal.SIGBUS)
"""Exit statuses of a process killed by a faulting compute kernel."""
NO_REPACK_LAUNCHER = """
import runpy
from llama_cpp import llama_cpp
defaults = llama_cpp.llama_model_default_params
def without_repack():
    params = defaults()
    params.use_extra_bufts = False
    return params
llama_cpp.llama_model_default_params = without_repack
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
"""``python -c`` code that runs llama-cpp-python's server with repacked weights turned off."""


class Mode(enum.Enum):
    """How a server is started for a group of cases."""

    SINGLE = "single"
    CONCURRENT = "concurrent"
    EMBED = "embed"

    @property
    def slots(self) -> int:
        """Parallel sequences the server is given."""
        return 1 if self is Mode.SINGLE else 4


@dataclass
class Stream:
    """One streamed generation, timed on the client with ``time.perf_counter``."""

    start: float
    first: float
    last: float
    end: float
    tokens: int
    finish: str
    text: str

    @property
    def ttft(self) -> float:
        """Seconds from sending the request to the first generated text."""
        return self.first - self.start

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first one, up to the last generated text."""
        return (self.tokens - 1) / (self.last - self.first) if self.tokens > 1 and self.last > self.first else 0.0


class StreamTimer:
    """Collects arrival times of generated text while a response streams in."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = 0.0
        self.last = 0.0
        self.chunks = 0
        self.pieces: list[str] = []

    def text(self, piece: str | None) -> None:
        """Record one chunk of generated text (empty chunks are ignored)."""
        if not piece:
            return
        now = time.perf_counter()
        if not self.chunks:
            self.first = now
        self.last = now
        self.chunks += 1
        self.pieces.append(piece)

    def done(self, tokens: int, finish: str) -> Stream:
        """The finished stream; raises when no text arrived."""
        if not self.chunks:
            raise RuntimeError(f"no text generated (finish reason {finish!r})")
        return Stream(self.start, self.first, self.last, time.perf_counter(), tokens, finish, "".join(self.pieces))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _check(response: httpx.Response) -> None:
    """Raise with the body's start on an HTTP error status."""
    if response.status_code >= 400:
        body = (await response.aread()).decode(errors="replace").strip()
        raise RuntimeError(f"HTTP {response.status_code}: {body[:300]}")


async def _lines(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """JSON objects from an NDJSON or server-sent-events body."""
    await _check(response)
    async for line in response.aiter_lines():
        line = line.strip()
        if line.startswith("data:"):
            line = line[5:].strip()
        elif line.startswith((":", "event:", "id:", "retry:")):
            continue
        if not line or line == "[DONE]":
            continue
        obj = json.loads(line)
        if isinstance(obj, dict) and obj.get("error"):
            raise RuntimeError(f"server error: {obj['error']}")
        yield obj


class Server(ABC):
    """A server process under test: ``start`` in a ``Mode``, ``wait_ready``, ``prepare``, drive it, ``stop``."""

    name: str
    health_path: str

    def __init__(self, model: Path, threads: int, workdir: Path, log_dir: Path) -> None:
        self.model = model
        self.threads = threads
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.mode = Mode.SINGLE
        self.log_path = log_dir / f"{self.name}.log"
        self.log_path.unlink(missing_ok=True)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    @abstractmethod
    def command(self, mode: Mode) -> tuple[list[str], dict[str, str]]:
        """Command line and extra environment that start the server on ``self.port``."""

    async def prepare(self, client: httpx.AsyncClient) -> None:
        """Set-up after the server answers, before any measurement."""

    @abstractmethod
    async def generate(self, client: httpx.AsyncClient, prompt: str, tokens: int) -> Stream:
        """Stream a greedy completion of ``prompt`` limited to ``tokens`` tokens."""

    @abstractmethod
    async def embed(self, client: httpx.AsyncClient, inputs: Sequence[str]) -> None:
        """Embed ``inputs`` in one request; raises unless one vector per input came back."""

    def start(self, mode: Mode) -> None:
        """Launch the process in its own process group, output appended to ``self.log_path``."""
        self.mode = mode
        self.port = free_port()
        cmd, env = self.command(mode)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {mode.value}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **env}, start_new_session=True,
            )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        """Poll the health endpoint until it answers 200; raises if the process dies or time runs out."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; log {self.log_path}:\n{self.log_tail()}")
            try:
                if (await client.get(self.url + self.health_path, timeout=2.0)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await anyio.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT:.0f}s; log {self.log_path}")

    def stop(self) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after ``STOP_TIMEOUT`` seconds; then
        SIGKILL whatever it started in other sessions and left running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        descendants = {pid: start for pid, (start, _) in process_tree(proc.pid).items() if pid != proc.pid}
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while (left := [pid for pid, start in descendants.items() if alive(pid, start)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Ours(Server):
    """``ollama serve`` from this checkout, driven through ``/api/generate`` and ``/api/embed``."""

    name = "ours"
    health_path = "/"
    model_name = "bench"

    def command(self, mode: Mode) -> tuple[list[str], dict[str, str]]:
        env = {
            "OLLAMA_HOST": f"127.0.0.1:{self.port}",
            "OLLAMA_MODELS": str(self.workdir / "ollama-models"),
            "OLLAMA_NUM_PARALLEL": str(mode.slots),
            "OLLAMA_KEEP_ALIVE": "-1",
            "OLLAMA_CONTEXT_LENGTH": str(CTX_PER_SLOT),
        }
        return [str(ROOT / ".venv/bin/ollama"), "serve"], env

    async def prepare(self, client: httpx.AsyncClient) -> None:
        """Create the model from the GGUF with ``ollama create`` unless the store has it already."""
        shown = await client.post(self.url + "/api/show", json={"model": self.model_name})
        if shown.status_code == 200:
            return
        modelfile = self.workdir / "Modelfile"
        modelfile.write_text(
            f"FROM {self.model}\nPARAMETER num_ctx {CTX_PER_SLOT}\nPARAMETER num_thread {self.threads}\n"
        )
        result = await anyio.run_process(
            [str(ROOT / ".venv/bin/ollama"), "create", self.model_name, "-f", str(modelfile)],
            env={**os.environ, "OLLAMA_HOST": f"127.0.0.1:{self.port}"}, check=False,
        )
        if result.returncode:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise RuntimeError(f"ollama create failed: {output[-500:]}")

    async def generate(self, client: httpx.AsyncClient, prompt: str, tokens: int) -> Stream:
        body = {
            "model": self.model_name, "prompt": prompt, "raw": True, "stream": True, "keep_alive": -1,
            "options": {"temperature": 0, "num_predict": tokens, "seed": 1, "repeat_penalty": 1.0},
        }
        timer = StreamTimer()
        async with client.stream("POST", self.url + "/api/generate", json=body) as response:
            async for obj in _lines(response):
                timer.text(obj.get("response"))
                if obj.get("done"):
                    return timer.done(int(obj.get("eval_count") or timer.chunks), str(obj.get("done_reason")))
        raise RuntimeError("stream ended without a done message")

    async def embed(self, client: httpx.AsyncClient, inputs: Sequence[str]) -> None:
        body = {"model": self.model_name, "input": list(inputs), "keep_alive": -1}
        response = await client.post(self.url + "/api/embed", json=body)
        await _check(response)
        if len(response.json().get("embeddings") or []) != len(inputs):
            raise RuntimeError("wrong number of embeddings")


class LlamaServer(Server):
    """llama.cpp's ``llama-server``, driven through ``/completion`` and ``/embedding``."""

    name = "llama-server"
    health_path = "/health"

    def __init__(self, binary: Path, model: Path, threads: int, workdir: Path, log_dir: Path) -> None:
        super().__init__(model, threads, workdir, log_dir)
        self.binary = binary
        self.repack = True

    def command(self, mode: Mode) -> tuple[list[str], dict[str, str]]:
        cmd = [
            str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
            "-t", str(self.threads), "-tb", str(self.threads),
            "-np", str(mode.slots), "-c", str(CTX_PER_SLOT * mode.slots), "--no-webui",
        ]
        if not self.repack:
            cmd.append("--no-repack")
        if mode is Mode.EMBED:
            cmd += ["--embedding", "--pooling", "mean"]
        return cmd, {}

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        """As ours does, start once more without repacked weights if a kernel faults at warm-up
        (llama.cpp's AMX kernels do on some machines that report AMX)."""
        try:
            await super().wait_ready(client)
        except RuntimeError:
            if not self.repack or self.proc is None or self.proc.returncode not in FAULTS:
                raise
            self.repack = False
            self.proc = None
            self.start(self.mode)
            await super().wait_ready(client)

    async def generate(self, client: httpx.AsyncClient, prompt: str, tokens: int) -> Stream:
        body = {
            "prompt": prompt, "n_predict": tokens, "temperature": 0, "seed": 1, "repeat_penalty": 1.0,
            "stream": True, "cache_prompt": True,
        }
        timer = StreamTimer()
        async with client.stream("POST", self.url + "/completion", json=body) as response:
            async for obj in _lines(response):
                timer.text(obj.get("content"))
                if obj.get("stop"):
                    return timer.done(int(obj.get("tokens_predicted") or timer.chunks), str(obj.get("stop_type")))
        raise RuntimeError("stream ended without a stop message")

    async def embed(self, client: httpx.AsyncClient, inputs: Sequence[str]) -> None:
        response = await client.post(self.url + "/embedding", json={"content": list(inputs)})
        await _check(response)
        data = response.json()
        if not isinstance(data, list) or len(data) != len(inputs):
            raise RuntimeError("wrong number of embeddings")


class LlamaCppPython(Server):
    """llama-cpp-python's ``llama_cpp.server``, driven through ``/v1/completions`` and ``/v1/embeddings``.

    Configured as the other servers run: requests queue instead of interrupting each other,
    logits are kept for the last token only (``logits_all`` off), flash attention is on.
    """

    name = "llama-cpp-python"
    health_path = "/v1/models"

    def __init__(self, python: Path, model: Path, threads: int, workdir: Path, log_dir: Path) -> None:
        super().__init__(model, threads, workdir, log_dir)
        self.python = python
        self.repack = True

    def command(self, mode: Mode) -> tuple[list[str], dict[str, str]]:
        launch = ["-m", "llama_cpp.server"] if self.repack else ["-c", NO_REPACK_LAUNCHER]
        cmd = [
            str(self.python), *launch, "--model", str(self.model),
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(CTX_PER_SLOT),
            "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
            "--interrupt_requests", "false", "--logits_all", "false", "--flash_attn", "true",
        ]
        if mode is Mode.EMBED:
            cmd += ["--embedding", "true"]
        return cmd, {}

    async def prepare(self, client: httpx.AsyncClient) -> None:
        """Run a request of several tokens; if a kernel faults on it (llama.cpp's AMX kernels do on
        some machines that report AMX), start again without repacked weights, as ours and
        llama-server do. This server has no option for that, so a launcher turns it off."""
        try:
            if self.mode is Mode.EMBED:
                await self.embed(client, ["warm up the model"])
            else:
                await self.generate(client, "warm up the model", 2)
        except (httpx.HTTPError, RuntimeError):
            await anyio.sleep(1.0)
            if self.proc is None or self.proc.poll() not in FAULTS or not self.repack:
                raise
            self.repack = False
            self.proc = None
            self.start(self.mode)
            await self.wait_ready(client)

    async def generate(self, client: httpx.AsyncClient, prompt: str, tokens: int) -> Stream:
        body = {
            "prompt": prompt, "max_tokens": tokens, "temperature": 0, "seed": 1, "repeat_penalty": 1.0,
            "stream": True,
        }
        timer = StreamTimer()
        finish = ""
        async with client.stream("POST", self.url + "/v1/completions", json=body) as response:
            async for obj in _lines(response):
                choice = (obj.get("choices") or [{}])[0]
                timer.text(choice.get("text"))
                finish = choice.get("finish_reason") or finish
        return timer.done(tokens if finish == "length" else timer.chunks, finish)

    async def embed(self, client: httpx.AsyncClient, inputs: Sequence[str]) -> None:
        response = await client.post(self.url + "/v1/embeddings", json={"input": list(inputs)})
        await _check(response)
        if len(response.json().get("data") or []) != len(inputs):
            raise RuntimeError("wrong number of embeddings")
