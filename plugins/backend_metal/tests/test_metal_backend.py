"""The Metal backend: recorded Macs (sysctl, vm_stat, llama.cpp's device report), and this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from ollama_backend_metal import plugin
from ollama_backend_metal.backend import INSTALL_METAL_BUILD, RESERVED, MetalBackend
from ollama_backend_metal.macos import available_memory, chip_family, is_apple_silicon, working_set_estimate
from ollama_core.backends.estimate import LayerMemory, ModelMemory
from ollama_core.backends.llama_build import GgmlDevice, LlamaBuild
from ollama_core.backends.plan import Attention, plan_layers
from ollama_core.plugins import create_plugin_manager
from ollama_core.testing.validate import validate_plugin

GiB = 1 << 30
MiB = 1 << 20

# `vm_stat` on a busy 16 GB MacBook Air (M2).
VM_STAT_M2 = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                                3278.
Pages active:                            236014.
Pages inactive:                          233460.
Pages speculative:                         1557.
Pages throttled:                              0.
Pages wired down:                        141254.
Pages purgeable:                           4330.
"Translation faults":                 520614950.
Pages copy-on-write:                   11528399.
Pages zero filled:                    283005376.
Pages reactivated:                     32004938.
Pages purged:                           3227013.
File-backed pages:                       180493.
Anonymous pages:                         290538.
Pages stored in compressor:             1077296.
Pages occupied by compressor:            367047.
Decompressions:                        52186063.
Compressions:                          62876023.
Pageins:                                9925218.
Pageouts:                                196468.
Swapins:                                1521014.
Swapouts:                               1896395.
"""
# The same Mac idle: most memory free.
VM_STAT_IDLE = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                              700000.
Pages active:                            150000.
Pages inactive:                          100000.
Pages speculative:                         5000.
Pages wired down:                         80000.
Pages purgeable:                          10000.
File-backed pages:                        90000.
Pages occupied by compressor:                 0.
"""
METAL_BUILD = LlamaBuild(
    gpu_offload=True,
    system_info="MTL : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ARM_FMA = 1 | DOTPROD = 1 | ACCELERATE = 1 | ",
    # llama.cpp: "ggml_metal_device_init: recommendedMaxWorkingSetSize = 11453.25 MB"
    devices=(
        GgmlDevice("MTL0", "gpu", "Apple M2", 11_453_251_584, 11_453_251_584),
        GgmlDevice("BLAS", "accel", "Accelerate", 0, 0),
    ),
)


@dataclass
class RecordedMac:
    """A Mac as its commands answered; ``failing`` names sysctl keys that error."""

    system: str = "Darwin"
    machine: str = "arm64"
    sysctls: dict[str, str] = field(
        default_factory=lambda: {
            "hw.memsize": str(16 * GiB),
            "machdep.cpu.brand_string": "Apple M2",
            "iogpu.wired_limit_mb": "0",
        }
    )
    vm: str = VM_STAT_IDLE

    def platform(self) -> tuple[str, str]:
        return self.system, self.machine

    def sysctl(self, name: str) -> str:
        if name not in self.sysctls:
            raise OSError(f"sysctl: unknown oid '{name}'")
        return self.sysctls[name]

    def vm_stat(self) -> str:
        return self.vm

    def macos_version(self) -> str:
        return "14.5"


def test_working_set_rule_of_thumb() -> None:
    assert working_set_estimate(8 * GiB) == 8 * GiB * 2 // 3  # 5.33 GiB
    assert working_set_estimate(16 * GiB) == 11_453_246_122  # 2/3 of 17,179,869,184
    assert working_set_estimate(32 * GiB) == 32 * GiB * 2 // 3
    assert working_set_estimate(36 * GiB) == 27 * GiB  # 3/4 from 36 GiB up
    assert working_set_estimate(64 * GiB) == 48 * GiB
    assert working_set_estimate(128 * GiB) == 96 * GiB
    assert working_set_estimate(16 * GiB, wired_limit_mb=14336) == 14 * GiB  # sudo sysctl iogpu.wired_limit_mb=14336
    assert working_set_estimate(16 * GiB, wired_limit_mb=65536) == 16 * GiB


def test_available_memory_from_vm_stat() -> None:
    # In use: active 236,014 + inactive 233,460 + speculative 1,557 + wired 141,254 + compressor 367,047
    # - purgeable 4,330 - file-backed 180,493 = 794,509 pages of 16 KiB.
    assert available_memory(VM_STAT_M2, 16 * GiB) == 16 * GiB - 794_509 * 16384 == 4_162_633_728
    # Idle: 150,000 + 100,000 + 5,000 + 80,000 - 10,000 - 90,000 = 235,000 pages in use.
    assert available_memory(VM_STAT_IDLE, 16 * GiB) == 16 * GiB - 235_000 * 16384
    with pytest.raises(ValueError):
        available_memory("Pages free: 3.", 16 * GiB)


def test_chip_family_and_platform() -> None:
    assert [chip_family(c) for c in ("Apple M1", "Apple M2 Pro", "Apple M3 Max", "Apple M4", "Apple M9", "Intel")] == [
        "apple7", "apple8", "apple9", "apple9", "", ""
    ]
    assert is_apple_silicon("Darwin", "arm64")
    assert not is_apple_silicon("Darwin", "x86_64") and not is_apple_silicon("Linux", "aarch64")


def test_a_16gb_m2_with_a_metal_build() -> None:
    status = MetalBackend(host=RecordedMac(), build=lambda: METAL_BUILD).status()
    assert status.available and status.visible_devices_env == ""
    (gpu,) = status.devices
    assert (gpu.backend, gpu.id, gpu.name, gpu.compute, gpu.driver) == ("metal", "metal", "Apple M2", "apple8", "14.5")
    assert gpu.total_memory == 11_453_251_584  # llama.cpp's recommendedMaxWorkingSetSize
    assert gpu.free_memory == 11_453_251_584  # idle: more than that is available
    assert gpu.unified and gpu.reserved == RESERVED == 512 * MiB and gpu.flash_attention


def test_a_busy_mac_offers_only_what_is_available() -> None:
    status = MetalBackend(host=RecordedMac(vm=VM_STAT_M2), build=lambda: METAL_BUILD).status()
    assert status.devices[0].free_memory == 4_162_633_728


def test_without_llama_cpps_figure_the_rule_of_thumb_applies() -> None:
    mac = RecordedMac()
    mac.sysctls.update({"hw.memsize": str(64 * GiB), "machdep.cpu.brand_string": "Apple M3 Max"})
    build = LlamaBuild(gpu_offload=True, system_info="MTL : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ")
    (gpu,) = MetalBackend(host=mac, build=lambda: build).status().devices
    assert gpu.total_memory == 48 * GiB
    del mac.sysctls["iogpu.wired_limit_mb"]
    assert MetalBackend(host=mac, build=lambda: build).status().devices[0].total_memory == 48 * GiB


def test_a_cpu_only_build_is_reported_with_the_install_command() -> None:
    cpu = LlamaBuild(gpu_offload=False, system_info="CPU : NEON = 1 | ARM_FMA = 1 | ")
    status = MetalBackend(host=RecordedMac(), build=lambda: cpu).status()
    assert not status.available and len(status.devices) == 1
    assert INSTALL_METAL_BUILD == (
        'CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall --no-binary llama-cpp-python '
        "llama-cpp-python==0.3.36"
    )
    assert status.reason == (
        "found Apple M2, but llama-cpp-python was built without Metal; "
        f"install a Metal build with: {INSTALL_METAL_BUILD}"
    )


def test_elsewhere_it_is_unavailable() -> None:
    intel = MetalBackend(host=RecordedMac(machine="x86_64"), build=lambda: METAL_BUILD).status()
    assert (intel.available, intel.reason) == (False, "not macOS on Apple Silicon (Darwin x86_64)")
    broken = RecordedMac()
    del broken.sysctls["hw.memsize"]
    assert MetalBackend(host=broken, build=lambda: METAL_BUILD).status().reason == (
        "cannot read the Mac's memory size: sysctl: unknown oid 'hw.memsize'"
    )
    here = MetalBackend().status()
    assert not here.available and here.reason.startswith("not macOS on Apple Silicon (Linux")


def test_unified_memory_plan_uses_the_full_offload_graph() -> None:
    (gpu,) = MetalBackend(host=RecordedMac(), build=lambda: METAL_BUILD).status().devices
    layer = LayerMemory(weights=300 * MiB, kv=100 * MiB)
    memory = ModelMemory(
        architecture="llama", layers=(layer,) * 40, output=200 * MiB, host=200 * MiB, host_output=200 * MiB,
        graph_full=300 * MiB, graph_partial=500 * MiB, projector=0, kv_cells=4096,
        kv_cache_type="f16", flash_attention=True,
    )
    p = plan_layers(memory, [gpu], attention=Attention(None, True, "f16"), backend="metal")
    # Unified memory has no partial-offload staging: the 300 MiB graph, not 500. The working set less
    # the 512 MiB reserve, the graph and a 400 MiB margin holds 24 layers of 400 MiB.
    assert (11_453_251_584 - 512 * MiB - 300 * MiB - 400 * MiB) // (400 * MiB) == 24
    assert p.n_gpu_layers == 24 and p.devices[0].graph == 300 * MiB and dict(p.env) == {}
    assert p.size_vram == 512 * MiB + 300 * MiB + 24 * 400 * MiB
    assert p.size == p.size_vram + 16 * 400 * MiB + 200 * MiB + 200 * MiB  # other layers, host tensors, output


def test_plugin_registers_and_lists_in_a_subprocess() -> None:
    assert validate_plugin(plugin) == []
    pm = create_plugin_manager()
    assert pm.has_plugin("backend_metal") and pm.origin("backend_metal").distribution == "ollama-backend-metal"
    listed = json.loads(
        subprocess.run([sys.executable, "-m", "ollama_core.cli", "plugins", "--json"], capture_output=True, text=True,
                       check=True, timeout=60).stdout
    )
    entry = next(p for p in listed["plugins"] if p["name"] == "backend_metal")
    assert entry["hooks"] == ["ollama_backends"] and not [e for e in listed["errors"] if e["plugin"] == "backend_metal"]
    script = (
        "from ollama_core.plugins import build_registries, create_plugin_manager\n"
        "from ollama_core.backends.discovery import discover\n"
        "found = discover(build_registries(create_plugin_manager()).values('backends'))\n"
        "print(next(r.why_not for r in found.reports if r.name == 'metal'))\n"
    )
    reason = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert reason.startswith("not macOS on Apple Silicon (Linux")
