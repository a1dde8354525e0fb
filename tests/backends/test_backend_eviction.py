"""When the next model would not fit in free GPU memory beside a loaded one, the loaded one is unloaded.

The server gets a third-party backend plugin (installed through a real ``ollama.plugins`` entry
point on ``PYTHONPATH``) that reports one GPU whose free memory the test writes to a file, as a
driver would report it. llama.cpp here is a CPU build, so the runner computes on the CPU whatever
the plan says; what is under test is the plan and the scheduler's choice.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import Server, start_server

MiB = 1 << 20
GPU_TOTAL = 8 * 1024 * MiB

PLUGIN = '''
"""A GPU backend whose one device reports the free memory written in $TEST_GPU_FILE."""

import json
import os

from ollama_core.descriptors import BackendSpec, BackendStatus, Device
from ollama_core.hookspecs import hookimpl


class FileGpu:
    name = "filegpu"

    def status(self):
        free = json.loads(open(os.environ["TEST_GPU_FILE"]).read())["free"]
        device = Device(backend="filegpu", id="GPU-0", name="File GPU", total_memory={total},
                        free_memory=free, compute="9.0")
        return BackendStatus(available=True, devices=(device,))


@hookimpl
def ollama_backends():
    return [BackendSpec(name="filegpu", factory=FileGpu, priority=100)]
'''


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("filegpu")
    site = tmp / "site"
    (site / "ollama_test_filegpu-0.dist-info").mkdir(parents=True)
    (site / "ollama_test_filegpu-0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ollama-test-filegpu\nVersion: 0\n"
    )
    (site / "ollama_test_filegpu-0.dist-info" / "entry_points.txt").write_text(
        "[ollama.plugins]\nfilegpu = ollama_test_filegpu\n"
    )
    (site / "ollama_test_filegpu.py").write_text(textwrap.dedent(PLUGIN).replace("{total}", str(GPU_TOTAL)))
    gpu_file = tmp / "gpu.json"
    gpu_file.write_text(json.dumps({"free": GPU_TOTAL}))
    server = start_server(tmp / "server", {"TEST_GPU_FILE": str(gpu_file)}, python_path=str(site))
    # A second, distinct model file: SmolLM2 with another general.name (same length, so still valid).
    data = bytearray(smollm2_gguf.read_bytes())
    at = data.index(b"Smollm2 135M", 0, 4096)
    data[at : at + 7] = b"Another"
    (tmp / "another.gguf").write_bytes(data)
    for name, path in (("first", smollm2_gguf), ("second", tmp / "another.gguf")):
        (tmp / "Modelfile").write_text(f"FROM {path}\n")
        server.cli("create", name, "-f", str(tmp / "Modelfile"))
    try:
        yield server, gpu_file
    finally:
        server.stop()


def _load(server: Server, model: str) -> None:
    reply = httpx.post(server.url + "/api/generate", json={"model": model, "keep_alive": "5m"}, timeout=120)
    assert reply.status_code == 200 and reply.json()["done_reason"] == "load", reply.text


def _running(server: Server) -> dict[str, dict]:
    return {m["name"]: m for m in httpx.get(server.url + "/api/ps").json()["models"]}


def test_short_gpu_memory_unloads_the_idle_model_first(gpu_server: tuple[Server, Path]) -> None:
    server, gpu_file = gpu_server
    _load(server, "first")
    first = _running(server)["first:latest"]
    assert first["size_vram"] > 0.9 * first["size"], "all layers on the GPU; the input embeddings stay on the CPU"
    assert "first:latest: all 31 layers on filegpu 0 (File GPU)" in server.log.read_text()

    # The driver now reports the first model's memory as used: 200 MiB free, too little for the second.
    gpu_file.write_text(json.dumps({"free": 200 * MiB}))
    _load(server, "second")
    running = _running(server)
    assert list(running) == ["second:latest"], "the idle first model made room"
    assert "unloading first:latest to make room for second:latest" in server.log.read_text()
    second = running["second:latest"]
    assert 0 < second["size_vram"] < 200 * MiB, "with nothing left to unload, what fits goes to the GPU"
    assert " of 31 layers on filegpu 0 (File GPU), the rest on CPU" in server.log.read_text()
    row = next(line for line in server.cli("ps").stdout.splitlines() if line.startswith("second:latest"))
    assert "CPU/GPU" in row

    # With room for both, nothing is unloaded.
    gpu_file.write_text(json.dumps({"free": GPU_TOTAL}))
    _load(server, "first")
    assert sorted(_running(server)) == ["first:latest", "second:latest"]
