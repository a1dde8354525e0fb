"""The NVML layer against recorded answers: C buffers and structs, versions, CUDA_VISIBLE_DEVICES.

``RecordedNvml`` stands in for ``libnvidia-ml.so.1``: it answers the same C calls through the
same ctypes arguments (buffers filled, ``byref`` targets written), from values recorded on a
two-GPU workstation (RTX 4090 + RTX 3060, driver 550.54.15, CUDA 12.4).
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from ollama_backend_cuda.nvml import (
    GpuRecord,
    NvmlError,
    NvmlMemory,
    cuda_version_text,
    decode_text,
    load_library,
    memory_figures,
    read_snapshot,
    visible_gpus,
)

MiB = 1 << 20
UUID_4090 = "GPU-4f3c2a1b-9d8e-7f6a-5b4c-3d2e1f0a9b8c"
UUID_3060 = "GPU-4f9d1e2c-1a2b-3c4d-5e6f-7a8b9c0d1e2f"
RECORDED = [
    # name, uuid, nvmlMemory_t (total, free, used), compute capability
    ("NVIDIA GeForce RTX 4090", UUID_4090, (25_757_220_864, 25_060_704_256, 696_516_608), (8, 9)),
    ("NVIDIA GeForce RTX 3060", UUID_3060, (12_884_901_888, 12_582_912_000, 301_989_888), (8, 6)),
]


class RecordedNvml:
    """Answers NVML's C calls from ``RECORDED``; ``fail`` makes one call return an error code."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.calls: list[str] = []
        self.nvmlErrorString = self._error_string

    def _call(self, name: str) -> int:
        self.calls.append(name)
        return 999 if name == self.fail else 0

    def _error_string(self, code: int) -> bytes:
        return b"Unknown Error"

    def nvmlInit_v2(self) -> int:
        return self._call("nvmlInit_v2")

    def nvmlShutdown(self) -> int:
        return self._call("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self, buffer: Any, length: ctypes.c_uint) -> int:
        ctypes.memmove(buffer, b"550.54.15\0", 10)
        return self._call("nvmlSystemGetDriverVersion")

    def nvmlSystemGetCudaDriverVersion_v2(self, version: Any) -> int:
        version._obj.value = 12040
        return self._call("nvmlSystemGetCudaDriverVersion_v2")

    def nvmlDeviceGetCount_v2(self, count: Any) -> int:
        count._obj.value = len(RECORDED)
        return self._call("nvmlDeviceGetCount_v2")

    def nvmlDeviceGetHandleByIndex_v2(self, index: ctypes.c_uint, handle: Any) -> int:
        handle._obj.value = 0x1000 + index.value
        return self._call("nvmlDeviceGetHandleByIndex_v2")

    def _record(self, handle: ctypes.c_void_p) -> tuple[str, str, tuple[int, int, int], tuple[int, int]]:
        return RECORDED[int(handle.value or 0) - 0x1000]

    def nvmlDeviceGetName(self, handle: ctypes.c_void_p, buffer: Any, length: ctypes.c_uint) -> int:
        name = self._record(handle)[0].encode() + b"\0"
        ctypes.memmove(buffer, name, len(name))
        return self._call("nvmlDeviceGetName")

    def nvmlDeviceGetUUID(self, handle: ctypes.c_void_p, buffer: Any, length: ctypes.c_uint) -> int:
        uuid = self._record(handle)[1].encode() + b"\0"
        ctypes.memmove(buffer, uuid, len(uuid))
        return self._call("nvmlDeviceGetUUID")

    def nvmlDeviceGetMemoryInfo(self, handle: ctypes.c_void_p, memory: Any) -> int:
        memory._obj.total, memory._obj.free, memory._obj.used = self._record(handle)[2]
        return self._call("nvmlDeviceGetMemoryInfo")

    def nvmlDeviceGetCudaComputeCapability(self, handle: ctypes.c_void_p, major: Any, minor: Any) -> int:
        major._obj.value, minor._obj.value = self._record(handle)[3]
        return self._call("nvmlDeviceGetCudaComputeCapability")


def test_read_a_recorded_two_gpu_machine() -> None:
    nvml = RecordedNvml()
    snapshot = read_snapshot(nvml)
    assert (snapshot.driver, snapshot.cuda) == ("550.54.15", "12.4")
    assert snapshot.gpus == (
        GpuRecord(0, "NVIDIA GeForce RTX 4090", UUID_4090, 25_757_220_864, 25_060_704_256, 8, 9),
        GpuRecord(1, "NVIDIA GeForce RTX 3060", UUID_3060, 12_884_901_888, 12_582_912_000, 8, 6),
    )
    assert nvml.calls[0] == "nvmlInit_v2" and nvml.calls[-1] == "nvmlShutdown"


def test_a_failing_call_names_itself_and_still_shuts_down() -> None:
    nvml = RecordedNvml(fail="nvmlDeviceGetMemoryInfo")
    with pytest.raises(NvmlError, match=r"nvmlDeviceGetMemoryInfo failed: Unknown Error \(NVML error 999\)"):
        read_snapshot(nvml)
    assert nvml.calls[-1] == "nvmlShutdown"


def test_missing_library() -> None:
    with pytest.raises(OSError, match="libnvidia-ml-missing.so.1"):
        load_library(("libnvidia-ml-missing.so.1",))


def test_decoding_recorded_buffers_and_structs() -> None:
    raw = b"NVIDIA H100 80GB HBM3\0" + b"\xff" * 74  # the rest of a 96-byte buffer is whatever was there
    assert decode_text(raw) == "NVIDIA H100 80GB HBM3"
    assert decode_text(b"550.54.15" + b"\0" * 71) == "550.54.15"
    h100 = NvmlMemory(total=85_520_809_984, free=84_933_083_136, used=587_726_848)
    assert memory_figures(h100) == (85_520_809_984, 84_933_083_136)
    odd = NvmlMemory(total=8 << 30, free=9 << 30, used=0)  # some drivers over-report free memory
    assert memory_figures(odd) == (8 << 30, 8 << 30)


@pytest.mark.parametrize(
    ("value", "text"), [(12040, "12.4"), (12020, "12.2"), (11080, "11.8"), (13000, "13.0"), (0, "")]
)
def test_cuda_version_text(value: int, text: str) -> None:
    assert cuda_version_text(value) == text


GPUS = read_snapshot(RecordedNvml()).gpus


@pytest.mark.parametrize(
    ("value", "indices"),
    [
        (None, [0, 1]),  # unset: every GPU
        ("", []),  # empty: none
        ("-1", []),
        ("1", [1]),
        ("1,0", [1, 0]),  # CUDA numbers them in the order listed
        ("0, 1", [0, 1]),
        ("0,7,1", [0]),  # the list ends at the first entry naming no GPU
        ("0,0", [0]),
        (UUID_3060, [1]),
        ("GPU-4f3c", [0]),  # a unique UUID prefix
        ("GPU-4f", []),  # ambiguous: both UUIDs start so
        ("gpu-4f9d1e2c", [1]),
        ("MIG-0a1b2c3d-aaaa-bbbb-cccc-000000000000", []),
    ],
)
def test_cuda_visible_devices(value: str | None, indices: list[int]) -> None:
    assert [g.index for g in visible_gpus(GPUS, value)] == indices
