"""Facts about an Apple Silicon Mac: chip, memory, the GPU working-set limit, available memory.

Each reader is a plain function over text a command printed, so it can be checked against
recorded output anywhere; :class:`MacHost` runs the commands.
"""

from __future__ import annotations

import platform
import re
import subprocess
from dataclasses import dataclass

GiB = 1 << 30
LARGE_MEMORY = 36 * GiB
"""From this much RAM up, macOS lets the GPU wire 3/4 of it rather than 2/3."""

_CHIP_FAMILIES = {"M1": "apple7", "M2": "apple8", "M3": "apple9", "M4": "apple9"}
_VM_LINE = re.compile(r'^"?([^:"]+)"?:\s+(\d+)\.?$')
_PAGE_SIZE = re.compile(r"page size of (\d+) bytes")


def is_apple_silicon(system: str, machine: str) -> bool:
    """macOS on an arm64 CPU (a Python running under Rosetta reports x86_64 and is not)."""
    return system == "Darwin" and machine == "arm64"


def working_set_estimate(memsize: int, wired_limit_mb: int = 0) -> int:
    """Metal's ``recommendedMaxWorkingSetSize`` when it cannot be asked: the ``iogpu.wired_limit_mb``
    override when set, else 2/3 of RAM below 36 GiB and 3/4 from 36 GiB up."""
    if wired_limit_mb > 0:
        return min(memsize, wired_limit_mb << 20)
    return memsize * 3 // 4 if memsize >= LARGE_MEMORY else memsize * 2 // 3


def chip_family(chip: str) -> str:
    """The Metal GPU family of an ``Apple M<n> ...`` chip (``apple7`` for M1), or empty when unknown."""
    match = re.search(r"\b(M\d+)\b", chip)
    return _CHIP_FAMILIES.get(match.group(1), "") if match else ""


def available_memory(vm_stat: str, memsize: int) -> int:
    """Memory the system could hand out now, from ``vm_stat`` output: everything not active, wired,
    compressed or speculative, counting purgeable and file-backed pages as free."""
    page = _PAGE_SIZE.search(vm_stat)
    if page is None:
        raise ValueError("vm_stat output has no page size")
    matches = (_VM_LINE.match(line.strip()) for line in vm_stat.splitlines())
    pages = {m.group(1).strip(): int(m.group(2)) for m in matches if m}
    used = (
        pages.get("Pages active", 0)
        + pages.get("Pages inactive", 0)
        + pages.get("Pages speculative", 0)
        + pages.get("Pages wired down", 0)
        + pages.get("Pages occupied by compressor", 0)
        - pages.get("Pages purgeable", 0)
        - pages.get("File-backed pages", 0)
    ) * int(page.group(1))
    return max(0, memsize - max(0, used))


@dataclass(frozen=True)
class MacHost:
    """Runs ``sysctl`` and ``vm_stat``; raises ``OSError`` or ``ValueError`` when they fail."""

    timeout: float = 10.0

    def platform(self) -> tuple[str, str]:
        """(system, machine), e.g. ``("Darwin", "arm64")``."""
        return platform.system(), platform.machine()

    def sysctl(self, name: str) -> str:
        """``sysctl -n NAME``."""
        return self._run("sysctl", "-n", name)

    def vm_stat(self) -> str:
        """``vm_stat``'s output."""
        return self._run("vm_stat")

    def macos_version(self) -> str:
        """The macOS version (``14.5``)."""
        return platform.mac_ver()[0]

    def _run(self, *command: str) -> str:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"{command[0]} timed out") from exc
        if result.returncode != 0:
            raise OSError(f"{' '.join(command)} failed: {result.stderr.strip() or result.returncode}")
        return result.stdout.strip()
