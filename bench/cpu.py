"""CPU accounting from ``/proc``, to tell measurements taken on a busy machine from clean ones."""

from __future__ import annotations

import os
import time

import anyio

QUIET_LOAD = 0.1
QUIET_TIMEOUT = 60.0


def _machine() -> tuple[int, int]:
    """Busy (including stolen) and total jiffies of all CPUs."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _stat(pid: int | str) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (index 0 is the state), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()


def process_tree(root: int) -> dict[int, tuple[int, int]]:
    """``root`` and its live descendants: pid -> (start time, jiffies used by it and its reaped children)."""
    procs: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(entry.name)) is not None:
            procs[int(entry.name)] = fields
    children: dict[int, list[int]] = {}
    for pid, fields in procs.items():
        children.setdefault(int(fields[1]), []).append(pid)
    tree: dict[int, tuple[int, int]] = {}
    todo = [root] if root in procs else []
    while todo:
        pid = todo.pop()
        fields = procs[pid]
        tree[pid] = (int(fields[19]), sum(int(x) for x in fields[11:15]))
        todo += children.get(pid, [])
    return tree


def alive(pid: int, start: int) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (clock ticks since boot)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == start


def _self() -> int:
    """Jiffies used by this process."""
    t = os.times()
    return round((t.user + t.system) * os.sysconf("SC_CLK_TCK"))


class CpuMeter:
    """Measures the share of all CPUs used by processes other than one server's process tree and this harness."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.tree = process_tree(root)
        self.busy, self.total = _machine()
        self.own = _self()

    def others(self) -> float:
        """Share of the CPUs that other processes (or the hypervisor) took since construction."""
        busy, total = _machine()
        server = sum(used - self.tree.get(pid, (0, 0))[1] for pid, (_, used) in process_tree(self.root).items())
        foreign = (busy - self.busy) - server - (_self() - self.own)
        return max(0.0, foreign / max(1, total - self.total))


async def wait_for_quiet(threshold: float = QUIET_LOAD, timeout: float = QUIET_TIMEOUT) -> None:
    """Wait until the CPUs are under ``threshold`` busy over half a second, or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        busy0, total0 = _machine()
        await anyio.sleep(0.5)
        busy, total = _machine()
        if (busy - busy0) / max(1, total - total0) < threshold or time.monotonic() > deadline:
            return
