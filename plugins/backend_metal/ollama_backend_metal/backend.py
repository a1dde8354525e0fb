"""The Metal backend: the GPU of an Apple Silicon Mac, sharing the system's unified memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from ollama_backend_metal.macos import MacHost, available_memory, chip_family, is_apple_silicon, working_set_estimate
from ollama_core.backends.llama_build import LlamaBuild, llama_build
from ollama_core.descriptors import BackendStatus, Device

log = logging.getLogger(__name__)

RESERVED = 512 << 20
"""Memory Metal and llama.cpp take besides the model (command buffers, pipelines)."""
INSTALL_METAL_BUILD = (
    'CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall --no-binary llama-cpp-python llama-cpp-python==0.3.36'
)
METAL_GGML_BACKEND = "MTL"


class Host(Protocol):
    """What the backend asks of the machine (see :class:`~ollama_backend_metal.macos.MacHost`)."""

    def platform(self) -> tuple[str, str]: ...

    def sysctl(self, name: str) -> str: ...

    def vm_stat(self) -> str: ...

    def macos_version(self) -> str: ...


class MetalBackend:
    """Apple Silicon: one GPU whose memory is the GPU working set of the unified memory."""

    name = "metal"

    def __init__(self, *, host: Host | None = None, build: Callable[[], LlamaBuild] = llama_build) -> None:
        self._host: Host = host or MacHost()
        self._build = build

    def status(self) -> BackendStatus:
        """The GPU, or why it cannot be used."""
        system, machine = self._host.platform()
        if not is_apple_silicon(system, machine):
            return BackendStatus(available=False, reason=f"not macOS on Apple Silicon ({system} {machine})")
        try:
            memsize = int(self._host.sysctl("hw.memsize"))
            chip = self._host.sysctl("machdep.cpu.brand_string") or "Apple Silicon"
        except (OSError, ValueError) as exc:
            return BackendStatus(available=False, reason=f"cannot read the Mac's memory size: {exc}")
        build = self._build()
        gpu = device(self._host, chip, memsize, build)
        problem = build_problem(build)
        if problem:
            return BackendStatus(available=False, reason=f"found {chip}, but {problem}", devices=(gpu,))
        return BackendStatus(available=True, devices=(gpu,))


def device(host: Host, chip: str, memsize: int, build: LlamaBuild) -> Device:
    """The GPU: llama.cpp's working-set figure when the build reported one, else macOS's rule of thumb."""
    metal = next((d for d in build.devices if d.name.startswith(METAL_GGML_BACKEND)), None)
    if metal is not None and metal.total_memory > 0:
        working_set = metal.total_memory
    else:
        working_set = working_set_estimate(memsize, _wired_limit_mb(host))
    try:
        free = min(working_set, available_memory(host.vm_stat(), memsize))
    except (OSError, ValueError) as exc:
        log.debug("vm_stat unreadable (%s); assuming the whole working set is free", exc)
        free = working_set
    return Device(
        backend="metal",
        id="metal",
        name=chip,
        total_memory=working_set,
        free_memory=free,
        compute=chip_family(chip),
        driver=host.macos_version(),
        reserved=RESERVED,
        unified=True,
    )


def build_problem(build: LlamaBuild) -> str:
    """Why this llama-cpp-python build cannot offload to Metal, and the fix; empty when it can."""
    if build.gpu_offload and METAL_GGML_BACKEND in build.backends:
        return ""
    cause = build.error or "llama-cpp-python was built without Metal"
    return f"{cause}; install a Metal build with: {INSTALL_METAL_BUILD}"


def _wired_limit_mb(host: Host) -> int:
    try:
        return int(host.sysctl("iogpu.wired_limit_mb"))
    except (OSError, ValueError):
        return 0
