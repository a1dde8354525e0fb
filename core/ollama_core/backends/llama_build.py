"""What the installed llama-cpp-python build can do: GPU offload, its ggml backends and devices.

Asked once per interpreter in a child process, so that initialising a GPU runtime (which
reserves device memory) never happens in the server itself, and a broken driver cannot crash it.
The devices are llama.cpp's own view (``ggml_backend_dev_*``): what the runtime can really use.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 120.0
_PROBE = """
import ctypes, json, pathlib, llama_cpp
kinds = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}
offload = bool(llama_cpp.llama_supports_gpu_offload())
info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
devices = []
libs = sorted(pathlib.Path(llama_cpp.__file__).parent.joinpath("lib").glob("*ggml.*"))
if libs:
    g = ctypes.CDLL(str(libs[0]))
    g.ggml_backend_dev_count.restype = ctypes.c_size_t
    g.ggml_backend_dev_get.restype = ctypes.c_void_p
    g.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for fn in (g.ggml_backend_dev_name, g.ggml_backend_dev_description):
        fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    g.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    g.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_size_t)] * 2
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        g.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        devices.append({
            "name": g.ggml_backend_dev_name(dev).decode(),
            "kind": kinds.get(g.ggml_backend_dev_type(dev), "other"),
            "description": g.ggml_backend_dev_description(dev).decode(),
            "free": free.value,
            "total": total.value,
        })
print(json.dumps({"gpu_offload": offload, "system_info": info, "devices": devices}))
"""


@dataclass(frozen=True)
class GgmlDevice:
    """One device llama.cpp sees: ``name`` is ggml's (``CUDA0``, ``MTL0``, ``CPU``), ``kind`` is
    ``cpu``, ``gpu``, ``igpu``, ``accel`` or ``other``; memory in bytes as the runtime reports it."""

    name: str
    kind: str
    description: str
    free_memory: int
    total_memory: int


@dataclass(frozen=True)
class LlamaBuild:
    """The answer of the installed llama-cpp-python: ``system_info`` is ``llama_print_system_info()``."""

    gpu_offload: bool
    system_info: str = ""
    devices: tuple[GgmlDevice, ...] = ()
    error: str = ""

    @property
    def backends(self) -> frozenset[str]:
        """ggml backend names compiled in (``CPU``, ``CUDA``, ``MTL`` for Metal, ``Vulkan``, ...)."""
        names = set()
        for part in self.system_info.split("|"):
            name, sep, _ = part.partition(" : ")
            if sep and name.strip():
                names.add(name.strip())
        return frozenset(names)


def parse_probe(stdout: str) -> LlamaBuild:
    """Read the probe's JSON line."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        return LlamaBuild(gpu_offload=False, error="the llama-cpp-python probe printed nothing")
    data = json.loads(lines[-1])
    devices = tuple(
        GgmlDevice(str(d["name"]), str(d["kind"]), str(d["description"]), int(d["free"]), int(d["total"]))
        for d in data.get("devices", [])
    )
    return LlamaBuild(
        gpu_offload=bool(data.get("gpu_offload")), system_info=str(data.get("system_info", "")), devices=devices
    )


@functools.cache
def llama_build(python: str = sys.executable) -> LlamaBuild:
    """Ask ``python``'s llama-cpp-python whether it can offload to a GPU (cached per interpreter)."""
    try:
        result = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return LlamaBuild(gpu_offload=False, error=f"could not run the llama-cpp-python probe: {exc}")
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        return LlamaBuild(gpu_offload=False, error=f"llama-cpp-python failed to start: {tail}")
    try:
        build = parse_probe(result.stdout)
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        return LlamaBuild(gpu_offload=False, error=f"unreadable llama-cpp-python probe output: {exc}")
    log.debug("llama-cpp-python: gpu_offload=%s backends=%s", build.gpu_offload, sorted(build.backends))
    return build
