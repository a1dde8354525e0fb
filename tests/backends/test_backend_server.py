"""A server on this machine (no GPU) plans SmolLM2 onto the CPU and reports it so."""

from __future__ import annotations

import ctypes.util

import httpx
import pytest
from live_server import Server

MiB = 1 << 20

# SmolLM2 at the default 4096-token window (see test_backend_estimate): weights, f16 KV cache for
# 30 layers x 4096 cells x 3 KV heads x 64 x (K, V) x 2 bytes, and the compute graph.
SMOL_WEIGHTS = 30 * 2_216_448 + 576 * 49152 // 32 * 34 + 576 * 4
SMOL_KV = 30 * 4096 * 3 * 64 * 2 * 2
SMOL_GRAPH = 4 * 512 * 50_304 + 4 * 512 * 50_304 // 8


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="this machine has an NVIDIA driver")
def test_smollm2_runs_on_cpu_and_ps_says_so(server: Server, smollm2: str) -> None:
    log = server.log.read_text()
    assert "no GPU found; running on CPU (" in log
    assert "cuda: no NVIDIA driver found" in log and "metal: not macOS on Apple Silicon" in log
    reply = httpx.post(
        server.url + "/api/generate",
        json={"model": smollm2, "prompt": "Say hi", "stream": False, "keep_alive": "1m", "options": {"num_predict": 4}},
        timeout=120,
    ).json()
    assert reply["done"] is True and reply["eval_count"] > 0
    running = [m for m in httpx.get(server.url + "/api/ps").json()["models"] if m["name"] == "smollm2:latest"]
    assert len(running) == 1
    assert running[0].get("size_vram", 0) == 0
    assert running[0]["size"] == SMOL_WEIGHTS + SMOL_KV + SMOL_GRAPH == 306_849_024
    row = next(line for line in server.cli("ps").stdout.splitlines() if line.startswith("smollm2:latest"))
    assert "100% CPU" in row
    assert "smollm2:latest: no GPU found; running on CPU" in server.log.read_text()
    server.cli("stop", smollm2)
