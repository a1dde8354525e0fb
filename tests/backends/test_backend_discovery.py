"""Backend discovery: priority order, isolation of broken backends, the log lines; the llama-cpp-python probe."""

from __future__ import annotations

import json
import logging

import pytest
from backend_models import RTX_3060, RTX_4090

from ollama_core.backends.discovery import Discovery, describe_device, discover
from ollama_core.backends.llama_build import llama_build, parse_probe
from ollama_core.builtins.cpu_backend import CpuBackend
from ollama_core.descriptors import BackendSpec, BackendStatus, Device
from ollama_core.plugins import build_registries, create_plugin_manager


class Fixed:
    def __init__(self, name: str, status: BackendStatus) -> None:
        self.name = name
        self._status = status

    def status(self) -> BackendStatus:
        return self._status


class Exploding:
    name = "boom"

    def status(self) -> BackendStatus:
        raise RuntimeError("driver crashed")


def spec(name: str, priority: int, status: BackendStatus) -> BackendSpec:
    return BackendSpec(name=name, factory=lambda: Fixed(name, status), priority=priority)


CPU = Device(backend="cpu", id="cpu", name="CPU (8 threads)", total_memory=32 << 30, free_memory=20 << 30)
GPUS = BackendStatus(available=True, devices=(RTX_4090, RTX_3060), visible_devices_env="CUDA_VISIBLE_DEVICES")


def test_highest_priority_usable_backend_wins() -> None:
    found = discover(
        [
            spec("cpu", -100, BackendStatus(available=True, devices=(CPU,))),
            spec("cuda", 100, GPUS),
            spec("metal", 90, BackendStatus(available=False, reason="not macOS on Apple Silicon (Linux x86_64)")),
        ]
    )
    assert [r.name for r in found.reports] == ["cuda", "metal", "cpu"]
    assert found.accelerator is not None and found.accelerator.name == "cuda"
    assert found.devices == (RTX_4090, RTX_3060)
    assert found.describe() == [
        "cuda 0: NVIDIA GeForce RTX 4090, id GPU-4090bbbb-0000-0000-0000-000000000000, compute 8.9, driver 550.54.15, "
        "runtime 12.4, 23.3 GiB free of 24.0 GiB",
        "cuda 1: NVIDIA GeForce RTX 3060, id GPU-3060dddd-0000-0000-0000-000000000000, compute 8.6, driver 550.54.15, "
        "runtime 12.4, 11.7 GiB free of 12.0 GiB",
        "metal not used: not macOS on Apple Silicon (Linux x86_64)",
    ]


def test_a_backend_that_raises_is_reported_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    def broken_factory() -> Fixed:
        raise ImportError("libcuda.so.1 missing")

    class WrongType:
        name = "odd"

        def status(self) -> str:
            return "fine"

    with caplog.at_level(logging.WARNING, logger="ollama_core.backends.discovery"):
        found = discover(
            [
                BackendSpec(name="boom", factory=Exploding, priority=50),
                BackendSpec(name="broken", factory=broken_factory, priority=40),
                BackendSpec(name="odd", factory=WrongType, priority=30),  # type: ignore[arg-type]
                spec("cpu", -100, BackendStatus(available=True, devices=(CPU,))),
            ]
        )
    assert [(r.name, r.status is None) for r in found.reports] == [
        ("boom", True), ("broken", True), ("odd", True), ("cpu", False)
    ]
    assert found.reports[0].error == "RuntimeError: driver crashed"
    assert found.accelerator is None and found.devices == ()
    assert found.why_cpu() == (
        "boom: failed: RuntimeError: driver crashed; broken: failed: ImportError: libcuda.so.1 missing; "
        "odd: failed: TypeError: status() returned str, not BackendStatus"
    )
    assert found.describe() == [f"no GPU found; running on CPU ({found.why_cpu()})"]
    assert "backend boom failed: RuntimeError: driver crashed" in caplog.text


def test_available_backend_without_devices_is_not_used() -> None:
    found = discover(
        [spec("cuda", 100, BackendStatus(available=True)), spec("cpu", -100, BackendStatus(True, devices=(CPU,)))]
    )
    assert found.accelerator is None and found.why_cpu() == "cuda: no devices"
    assert Discovery(()).why_cpu() == "no GPU backend plugin is installed"


def test_describe_device_without_versions() -> None:
    assert describe_device(CPU) == "cpu 0: CPU (8 threads), id cpu, 20.0 GiB free of 32.0 GiB"


def test_cpu_backend_reports_system_memory() -> None:
    status = CpuBackend().status()
    assert status.available and len(status.devices) == 1
    device = status.devices[0]
    assert device.backend == "cpu" and 0 < device.free_memory <= device.total_memory


def test_installed_plugins_on_this_machine_fall_back_to_cpu() -> None:
    pm = create_plugin_manager()
    found = discover(build_registries(pm).values("backends"))
    assert [r.name for r in found.reports][-1] == "cpu"
    assert found.reports[-1].usable and found.reports[-1].status is not None
    assert found.reports[-1].status.devices[0].backend == "cpu"


CUDA_BUILD = {
    "gpu_offload": True,
    "system_info": "CPU : SSE3 = 1 | AVX2 = 1 | CUDA : ARCHS = 890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | ",
    "devices": [
        {"name": "CUDA0", "kind": "gpu", "description": "NVIDIA GeForce RTX 4090", "free": 25_060_704_256,
         "total": 25_757_220_864},
        {"name": "CPU", "kind": "cpu", "description": "AMD Ryzen 9 7950X", "free": 60 << 30, "total": 64 << 30},
    ],
}


def test_parse_a_recorded_cuda_probe() -> None:
    build = parse_probe("ggml_cuda_init: found 1 CUDA devices\n" + json.dumps(CUDA_BUILD) + "\n")
    assert build.gpu_offload and build.backends == {"CPU", "CUDA"} and build.error == ""
    assert [(d.name, d.kind, d.total_memory) for d in build.devices] == [("CUDA0", "gpu", 25_757_220_864),
                                                                          ("CPU", "cpu", 64 << 30)]
    assert parse_probe("").error == "the llama-cpp-python probe printed nothing"


def test_this_machines_llama_cpp_python_is_cpu_only() -> None:
    build = llama_build()
    assert not build.gpu_offload and "CPU" in build.backends and build.error == ""
    assert [d.kind for d in build.devices] == ["cpu"]


def test_probe_of_a_python_that_does_not_exist() -> None:
    build = llama_build("/nonexistent/python3")
    assert not build.gpu_offload and build.error.startswith("could not run the llama-cpp-python probe")
