"""The CPU backend: always available, the fallback when no accelerator backend is."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ollama_core.descriptors import BackendSpec, BackendStatus, Device
from ollama_core.hookspecs import hookimpl


class CpuBackend:
    """Runs every layer on the CPU, in system memory."""

    name = "cpu"

    def status(self) -> BackendStatus:
        """Report the host memory as one device."""
        total, free = _memory()
        device = Device(backend="cpu", id="cpu", name=f"CPU ({os.cpu_count() or 1} threads)", total_memory=total, free_memory=free)
        return BackendStatus(available=True, devices=(device,))


def _memory() -> tuple[int, int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        return fields["MemTotal"], fields.get("MemAvailable", fields["MemTotal"])
    except (OSError, KeyError, ValueError):
        pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
        size = pages * os.sysconf("SC_PAGE_SIZE") if pages else 0
        return size, size


@hookimpl
def ollama_backends() -> Sequence[BackendSpec]:
    return [BackendSpec(name="cpu", factory=CpuBackend, priority=-100)]
