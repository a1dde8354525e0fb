"""The CUDA backend: NVIDIA GPUs NVML reports, usable when llama-cpp-python was built for CUDA."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from ollama_backend_cuda.nvml import GpuRecord, NvmlError, NvmlSnapshot, read_nvml, visible_gpus
from ollama_core.backends.llama_build import LlamaBuild, llama_build
from ollama_core.descriptors import BackendStatus, Device

log = logging.getLogger(__name__)

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
RESERVED = 457 << 20
"""Device memory the CUDA runtime and llama.cpp take besides the model (context, cuBLAS workspace)."""
INSTALL_CUDA_BUILD = (
    'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-binary llama-cpp-python llama-cpp-python==0.3.36'
)
CUDA_GGML_BACKEND = "CUDA"


class CudaBackend:
    """NVIDIA GPUs: NVML for names, memory, compute capability and versions; ``CUDA_VISIBLE_DEVICES`` honoured."""

    name = "cuda"

    def __init__(
        self,
        *,
        nvml: Callable[[], NvmlSnapshot] = read_nvml,
        build: Callable[[], LlamaBuild] = llama_build,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._nvml = nvml
        self._build = build
        self._environ = os.environ if environ is None else environ

    def status(self) -> BackendStatus:
        """The visible GPUs, or why none can be used."""
        try:
            snapshot = self._nvml()
        except OSError as exc:
            return BackendStatus(available=False, reason=f"no NVIDIA driver found (NVML: {exc})")
        except NvmlError as exc:
            return BackendStatus(available=False, reason=f"NVIDIA driver not usable: {exc}")
        if not snapshot.gpus:
            return BackendStatus(available=False, reason="NVML reports no NVIDIA GPU")
        selector = self._environ.get(VISIBLE_DEVICES)
        gpus = visible_gpus(snapshot.gpus, selector)
        if not gpus:
            return BackendStatus(available=False, reason=f"no NVIDIA GPU is visible ({VISIBLE_DEVICES}={selector!r})")
        devices = tuple(device(position, gpu, snapshot) for position, gpu in enumerate(gpus))
        build = self._build()
        problem = build_problem(build)
        if problem:
            found = f"found {len(devices)} NVIDIA GPU{'s' if len(devices) > 1 else ''}"
            return BackendStatus(
                available=False, reason=f"{found}, but {problem}", devices=devices, visible_devices_env=VISIBLE_DEVICES
            )
        return BackendStatus(available=True, devices=devices, visible_devices_env=VISIBLE_DEVICES)


def build_problem(build: LlamaBuild) -> str:
    """Why this llama-cpp-python build cannot offload to NVIDIA GPUs, and the fix; empty when it can."""
    if build.gpu_offload and CUDA_GGML_BACKEND in build.backends:
        return ""
    if build.error:
        cause = build.error
    elif build.gpu_offload:
        others = ", ".join(sorted(build.backends - {"CPU"})) or "another backend"
        cause = f"llama-cpp-python offloads through {others}, not CUDA"
    elif CUDA_GGML_BACKEND in build.backends:
        cause = "llama-cpp-python was built with CUDA but sees no usable GPU (check the driver and CUDA runtime)"
    else:
        cause = "llama-cpp-python was built without GPU offload"
    return f"{cause}; install a CUDA build with: {INSTALL_CUDA_BUILD}"


def device(position: int, gpu: GpuRecord, snapshot: NvmlSnapshot) -> Device:
    """A GPU as the planner sees it; ``position`` is its index among the visible GPUs."""
    return Device(
        backend="cuda",
        id=gpu.uuid,
        name=gpu.name,
        total_memory=gpu.total_memory,
        free_memory=gpu.free_memory,
        index=position,
        compute=f"{gpu.compute_major}.{gpu.compute_minor}",
        driver=snapshot.driver,
        runtime=snapshot.cuda,
        reserved=RESERVED,
        flash_attention=flash_attention_supported(gpu.compute_major, gpu.compute_minor),
    )


def flash_attention_supported(major: int, minor: int) -> bool:
    """llama.cpp's CUDA flash attention needs compute capability 6.0 or newer (not 7.2, Jetson Xavier)."""
    return major >= 6 and (major, minor) != (7, 2)
