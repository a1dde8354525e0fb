"""The CUDA backend: status from recorded NVML snapshots and llama-cpp-python builds, and on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ollama_backend_cuda import plugin
from ollama_backend_cuda.backend import INSTALL_CUDA_BUILD, RESERVED, CudaBackend, flash_attention_supported
from ollama_backend_cuda.nvml import GpuRecord, NvmlError, NvmlSnapshot, read_nvml
from ollama_core.backends.discovery import BackendReport, Discovery
from ollama_core.backends.llama_build import LlamaBuild
from ollama_core.backends.plan import PlanRequest, PlanSettings, plan_load
from ollama_core.gguf import read_gguf
from ollama_core.plugins import create_plugin_manager
from ollama_core.testing.validate import validate_plugin

ROOT = Path(__file__).resolve().parents[3]
SMOLLM2 = Path(os.environ.get("OLLAMA_TEST_GGUF") or ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
UUID_4090 = "GPU-4f3c2a1b-9d8e-7f6a-5b4c-3d2e1f0a9b8c"
UUID_3060 = "GPU-4f9d1e2c-1a2b-3c4d-5e6f-7a8b9c0d1e2f"
SNAPSHOT = NvmlSnapshot(
    driver="550.54.15",
    cuda="12.4",
    gpus=(
        GpuRecord(0, "NVIDIA GeForce RTX 4090", UUID_4090, 25_757_220_864, 25_060_704_256, 8, 9),
        GpuRecord(1, "NVIDIA GeForce RTX 3060", UUID_3060, 12_884_901_888, 12_582_912_000, 8, 6),
    ),
)
CUDA_BUILD = LlamaBuild(gpu_offload=True, system_info="CPU : AVX2 = 1 | CUDA : ARCHS = 860,890 | USE_GRAPHS = 1 | ")
CPU_BUILD = LlamaBuild(gpu_offload=False, system_info="CPU : SSE3 = 1 | AVX2 = 1 | OPENMP = 1 | ")


def backend(
    snapshot: NvmlSnapshot = SNAPSHOT, build: LlamaBuild = CUDA_BUILD, env: dict[str, str] | None = None
) -> CudaBackend:
    return CudaBackend(nvml=lambda: snapshot, build=lambda: build, environ=env or {})


def test_two_gpus_with_a_cuda_build() -> None:
    status = backend().status()
    assert status.available and status.reason == "" and status.visible_devices_env == "CUDA_VISIBLE_DEVICES"
    first, second = status.devices
    assert (first.backend, first.id, first.name, first.index) == ("cuda", UUID_4090, "NVIDIA GeForce RTX 4090", 0)
    assert (first.total_memory, first.free_memory) == (25_757_220_864, 25_060_704_256)
    assert (first.compute, first.driver, first.runtime) == ("8.9", "550.54.15", "12.4")
    assert first.reserved == RESERVED == 457 << 20 and first.flash_attention and not first.unified
    assert (second.id, second.index, second.compute) == (UUID_3060, 1, "8.6")


def test_cuda_visible_devices_is_honoured() -> None:
    only = backend(env={"CUDA_VISIBLE_DEVICES": UUID_3060}).status()
    assert [(d.name, d.index) for d in only.devices] == [("NVIDIA GeForce RTX 3060", 0)]
    swapped = backend(env={"CUDA_VISIBLE_DEVICES": "1,0"}).status()
    assert [d.id for d in swapped.devices] == [UUID_3060, UUID_4090]
    hidden = backend(env={"CUDA_VISIBLE_DEVICES": ""}).status()
    assert not hidden.available and hidden.reason == "no NVIDIA GPU is visible (CUDA_VISIBLE_DEVICES='')"


def test_a_cpu_only_build_is_reported_with_the_install_command() -> None:
    status = backend(build=CPU_BUILD).status()
    assert not status.available and len(status.devices) == 2
    assert INSTALL_CUDA_BUILD == (
        'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-binary llama-cpp-python '
        "llama-cpp-python==0.3.36"
    )
    assert status.reason == (
        f"found 2 NVIDIA GPUs, but llama-cpp-python was built without GPU offload; install a CUDA build with: "
        f"{INSTALL_CUDA_BUILD}"
    )


def test_other_builds() -> None:
    vulkan = backend(build=LlamaBuild(gpu_offload=True, system_info="CPU : AVX2 = 1 | Vulkan : ")).status()
    assert "llama-cpp-python offloads through Vulkan, not CUDA" in vulkan.reason and not vulkan.available
    blind = backend(build=LlamaBuild(gpu_offload=False, system_info="CPU : AVX2 = 1 | CUDA : ARCHS = 890 | ")).status()
    assert "built with CUDA but sees no usable GPU" in blind.reason
    error = "llama-cpp-python failed to start: ImportError: libcudart.so.12"
    broken = backend(build=LlamaBuild(gpu_offload=False, error=error)).status()
    assert broken.reason.startswith(f"found 2 NVIDIA GPUs, but {error};")


def test_driver_problems() -> None:
    def missing() -> NvmlSnapshot:
        raise OSError("libnvidia-ml.so.1: cannot open shared object file: No such file or directory")

    def failing() -> NvmlSnapshot:
        raise NvmlError("nvmlInit_v2", 9, "Driver Not Loaded")

    assert CudaBackend(nvml=missing, environ={}).status().reason == (
        "no NVIDIA driver found (NVML: libnvidia-ml.so.1: cannot open shared object file: No such file or directory)"
    )
    assert CudaBackend(nvml=failing, environ={}).status().reason == (
        "NVIDIA driver not usable: nvmlInit_v2 failed: Driver Not Loaded (NVML error 9)"
    )
    empty = backend(snapshot=NvmlSnapshot("550.54.15", "12.4", ())).status()
    assert empty.reason == "NVML reports no NVIDIA GPU"


@pytest.mark.parametrize(
    ("major", "minor", "supported"), [(5, 2, False), (6, 0, True), (7, 2, False), (7, 5, True), (9, 0, True)]
)
def test_flash_attention_by_compute_capability(major: int, minor: int, supported: bool) -> None:
    assert flash_attention_supported(major, minor) is supported


def test_plan_smollm2_on_the_recorded_4090() -> None:
    if not SMOLLM2.is_file():
        pytest.skip(f"{SMOLLM2} not found (scripts/fetch-default-model.sh fetches it)")
    status = backend().status()
    discovery = Discovery((BackendReport("cuda", 100, status),))
    p = plan_load(read_gguf(SMOLLM2), discovery, PlanRequest(num_ctx=4096), PlanSettings())
    assert (p.backend, p.n_gpu_layers, p.tensor_split) == ("cuda", 31, ())
    assert dict(p.env) == {"CUDA_VISIBLE_DEVICES": UUID_4090}


def _driver_present() -> bool:
    try:
        read_nvml()
    except (OSError, NvmlError):
        return False
    return True


DRIVER = _driver_present()


@pytest.mark.skipif(DRIVER, reason="this machine has an NVIDIA driver")
def test_on_this_machine_it_loads_and_reports_no_driver() -> None:
    status = CudaBackend().status()
    assert not status.available and status.devices == ()
    assert status.reason.startswith("no NVIDIA driver found (NVML: libnvidia-ml.so.1")


def test_plugin_registers_the_backend() -> None:
    assert validate_plugin(plugin) == []
    pm = create_plugin_manager()
    assert pm.has_plugin("backend_cuda") and not [e for e in pm.errors if e.plugin == "backend_cuda"]
    assert pm.origin("backend_cuda").distribution == "ollama-backend-cuda"


def test_ollama_plugins_json_and_discovery_in_subprocesses() -> None:
    listed = json.loads(
        subprocess.run([sys.executable, "-m", "ollama_core.cli", "plugins", "--json"], capture_output=True, text=True,
                       check=True, timeout=60).stdout
    )
    entry = next(p for p in listed["plugins"] if p["name"] == "backend_cuda")
    assert entry["distribution"] == "ollama-backend-cuda" and entry["hooks"] == ["ollama_backends"]
    assert not [e for e in listed["errors"] if e["plugin"] == "backend_cuda"]
    script = (
        "from ollama_core.plugins import build_registries, create_plugin_manager\n"
        "from ollama_core.backends.discovery import discover\n"
        "found = discover(build_registries(create_plugin_manager()).values('backends'))\n"
        "print(next(r.why_not for r in found.reports if r.name == 'cuda'))\n"
    )
    reason = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert reason.startswith("no NVIDIA driver found (NVML: libnvidia-ml.so.1") is not DRIVER
