"""Ask every compute backend, highest priority first, what it can offer right now.

A backend whose factory or ``status()`` raises is reported and skipped; the others still
answer. The first available backend with devices (other than the CPU backend) runs models;
without one, everything runs on the CPU and :meth:`Discovery.why_cpu` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ollama_core.descriptors import BackendSpec, BackendStatus, Device

log = logging.getLogger(__name__)

CPU_BACKEND = "cpu"
GiB = 1 << 30


@dataclass(frozen=True)
class BackendReport:
    """One backend's answer: its status, or the error it raised (then ``status`` is None)."""

    name: str
    priority: int
    status: BackendStatus | None
    error: str = ""

    @property
    def usable(self) -> bool:
        """Available and with at least one device."""
        return self.status is not None and self.status.available and bool(self.status.devices)

    @property
    def why_not(self) -> str:
        """Why this backend cannot be used (empty when it can)."""
        if self.status is None:
            return f"failed: {self.error}"
        if not self.status.available:
            return self.status.reason or "unavailable"
        return "" if self.status.devices else "no devices"


@dataclass(frozen=True)
class Discovery:
    """Every backend's answer, highest priority first."""

    reports: tuple[BackendReport, ...]

    @property
    def accelerator(self) -> BackendReport | None:
        """The backend models are offloaded to: the first usable one that is not the CPU."""
        return next((r for r in self.reports if r.name != CPU_BACKEND and r.usable), None)

    @property
    def devices(self) -> tuple[Device, ...]:
        """The accelerator's devices (empty when everything runs on the CPU)."""
        chosen = self.accelerator
        return chosen.status.devices if chosen is not None and chosen.status is not None else ()

    def why_cpu(self) -> str:
        """Why no GPU is used: every other backend's reason, or that none is installed."""
        reasons = [f"{r.name}: {r.why_not}" for r in self.reports if r.name != CPU_BACKEND]
        return "; ".join(reasons) if reasons else "no GPU backend plugin is installed"

    def describe(self) -> list[str]:
        """Lines for the server log: the devices models will use, or why there are none."""
        chosen = self.accelerator
        if chosen is None:
            return [f"no GPU found; running on CPU ({self.why_cpu()})"]
        lines = [describe_device(device) for device in self.devices]
        lines += [f"{r.name} not used: {r.why_not}" for r in self.reports if r.name not in (CPU_BACKEND, chosen.name)]
        return lines


def describe_device(device: Device) -> str:
    """One device on one line: backend, index, name, id, versions and memory."""
    parts = [f"{device.backend} {device.index}: {device.name}"]
    if device.id:
        parts.append(f"id {device.id}")
    if device.compute:
        parts.append(f"compute {device.compute}")
    if device.driver:
        parts.append(f"driver {device.driver}")
    if device.runtime:
        parts.append(f"runtime {device.runtime}")
    parts.append(f"{device.free_memory / GiB:.1f} GiB free of {device.total_memory / GiB:.1f} GiB")
    return ", ".join(parts)


def discover(specs: Iterable[BackendSpec]) -> Discovery:
    """Ask each backend for its status, highest ``priority`` first, isolating failures."""
    reports = []
    for spec in sorted(specs, key=lambda s: -s.priority):
        try:
            status = spec.factory().status()
            if not isinstance(status, BackendStatus):
                raise TypeError(f"status() returned {type(status).__name__}, not BackendStatus")
        except Exception as exc:  # noqa: BLE001 - one broken backend must not stop the others
            log.warning("backend %s failed: %s: %s", spec.name, type(exc).__name__, exc)
            reports.append(BackendReport(spec.name, spec.priority, None, f"{type(exc).__name__}: {exc}"))
            continue
        reports.append(BackendReport(spec.name, spec.priority, status))
    return Discovery(tuple(reports))
