"""NVIDIA GPUs through NVML (``libnvidia-ml.so.1``, shipped with the driver), by ctypes.

A thin layer: :func:`read_snapshot` makes the C calls on a loaded library and returns plain
records; decoding C buffers and structs, and choosing the GPUs ``CUDA_VISIBLE_DEVICES``
leaves visible, are separate functions over plain values.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LIBRARY_NAMES = ("nvml.dll",) if sys.platform == "win32" else ("libnvidia-ml.so.1",)
NVML_SUCCESS = 0
NAME_BUFFER = 96
UUID_BUFFER = 96
DRIVER_BUFFER = 80


class NvmlMemory(ctypes.Structure):
    """``nvmlMemory_t``: bytes of device memory."""

    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class NvmlError(RuntimeError):
    """An NVML call returned an error code."""

    def __init__(self, call: str, code: int, message: str) -> None:
        super().__init__(f"{call} failed: {message} (NVML error {code})")
        self.code = code


@dataclass(frozen=True)
class GpuRecord:
    """One GPU as NVML numbers it (PCI bus order, as ``nvidia-smi`` does)."""

    index: int
    name: str
    uuid: str
    total_memory: int
    free_memory: int
    compute_major: int
    compute_minor: int


@dataclass(frozen=True)
class NvmlSnapshot:
    """The driver version, the CUDA version the driver supports, and every GPU."""

    driver: str
    cuda: str
    gpus: tuple[GpuRecord, ...]


def load_library(names: Sequence[str] = LIBRARY_NAMES) -> ctypes.CDLL:
    """Open NVML; raises ``OSError`` naming every library tried when none opens."""
    errors = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
            continue
        lib.nvmlErrorString.restype = ctypes.c_char_p
        return lib
    raise OSError("; ".join(errors))


def read_nvml() -> NvmlSnapshot:
    """Open NVML and read a snapshot (``OSError`` without a driver, :class:`NvmlError` when a call fails)."""
    return read_snapshot(load_library())


def read_snapshot(lib: Any) -> NvmlSnapshot:
    """Initialise NVML on ``lib``, read the driver and every GPU, shut NVML down again."""
    _check(lib, "nvmlInit_v2", lib.nvmlInit_v2())
    try:
        driver = ctypes.create_string_buffer(DRIVER_BUFFER)
        _check(lib, "nvmlSystemGetDriverVersion", lib.nvmlSystemGetDriverVersion(driver, ctypes.c_uint(DRIVER_BUFFER)))
        cuda = ctypes.c_int(0)
        cuda_version = getattr(lib, "nvmlSystemGetCudaDriverVersion_v2", None) or lib.nvmlSystemGetCudaDriverVersion
        _check(lib, "nvmlSystemGetCudaDriverVersion", cuda_version(ctypes.byref(cuda)))
        count = ctypes.c_uint(0)
        _check(lib, "nvmlDeviceGetCount_v2", lib.nvmlDeviceGetCount_v2(ctypes.byref(count)))
        gpus = tuple(_read_gpu(lib, i) for i in range(count.value))
    finally:
        lib.nvmlShutdown()
    return NvmlSnapshot(driver=decode_text(driver.raw), cuda=cuda_version_text(cuda.value), gpus=gpus)


def _read_gpu(lib: Any, index: int) -> GpuRecord:
    handle = ctypes.c_void_p()
    by_index = lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle))
    _check(lib, "nvmlDeviceGetHandleByIndex_v2", by_index)
    name = ctypes.create_string_buffer(NAME_BUFFER)
    _check(lib, "nvmlDeviceGetName", lib.nvmlDeviceGetName(handle, name, ctypes.c_uint(NAME_BUFFER)))
    uuid = ctypes.create_string_buffer(UUID_BUFFER)
    _check(lib, "nvmlDeviceGetUUID", lib.nvmlDeviceGetUUID(handle, uuid, ctypes.c_uint(UUID_BUFFER)))
    memory = NvmlMemory()
    _check(lib, "nvmlDeviceGetMemoryInfo", lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)))
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    _check(
        lib,
        "nvmlDeviceGetCudaComputeCapability",
        lib.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)),
    )
    total, free = memory_figures(memory)
    return GpuRecord(index, decode_text(name.raw), decode_text(uuid.raw), total, free, major.value, minor.value)


def _check(lib: Any, call: str, code: int) -> None:
    if code == NVML_SUCCESS:
        return
    text = lib.nvmlErrorString(code)
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else f"code {code}"
    raise NvmlError(call, code, message)


def decode_text(raw: bytes) -> str:
    """A NUL-terminated C string from a fixed-size buffer."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def memory_figures(memory: NvmlMemory) -> tuple[int, int]:
    """(total, free) bytes; free never exceeds total."""
    return int(memory.total), min(int(memory.free), int(memory.total))


def cuda_version_text(version: int) -> str:
    """NVML's CUDA version integer (``12040``) as ``12.4``; empty for 0."""
    if version <= 0:
        return ""
    return f"{version // 1000}.{version % 1000 // 10}"


def visible_gpus(gpus: Sequence[GpuRecord], value: str | None) -> tuple[GpuRecord, ...]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible, in the order CUDA numbers them.

    Unset means all of them. Entries are indices (as NVML numbers GPUs) or ``GPU-`` UUIDs (a
    unique prefix is enough); as in CUDA, the list ends at the first entry that names no GPU,
    so an empty value or ``-1`` hides them all. A GPU listed twice counts once.
    """
    if value is None:
        return tuple(gpus)
    chosen: list[GpuRecord] = []
    for entry in (part.strip() for part in value.split(",")):
        gpu = _lookup(gpus, entry)
        if gpu is None:
            break
        if gpu not in chosen:
            chosen.append(gpu)
    return tuple(chosen)


def _lookup(gpus: Sequence[GpuRecord], entry: str) -> GpuRecord | None:
    if entry.isdigit():
        return next((g for g in gpus if g.index == int(entry)), None)
    if not entry.upper().startswith("GPU-"):
        return None
    matches = [g for g in gpus if g.uuid.lower().startswith(entry.lower())]
    return matches[0] if len(matches) == 1 else None
