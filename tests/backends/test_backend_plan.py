"""Offload plans on recorded devices, with every layer count and byte figure worked out by hand.

Models (see ``backend_models``): a Mistral-7B-shaped and a Llama-3-70B-shaped header at Q4_0
(18 bytes per 32 values), and the real SmolLM2 header. Devices: an 8 GiB RTX 3070, a 24 GiB
RTX 4090, an 80 GiB H100, the 4090 with a 12 GiB RTX 3060, Apple M-series Macs of 16, 64 and
128 GiB, and no GPU at all.

The rules being checked: a device used for the model holds the backend's reserve, the compute
graph (the smaller full-offload graph only when one device holds everything, or on unified
memory), whole layers with their KV cache, and the output layer last; and it must keep one
more layer's worth free as a margin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from backend_models import (
    H100,
    LLAMA_70B,
    M_16,
    M_64,
    M_128,
    MISTRAL_7B,
    RTX_3060,
    RTX_3070,
    RTX_4090,
    GiB,
    MiB,
)

from ollama_core.backends.discovery import BackendReport, Discovery
from ollama_core.backends.estimate import ModelShape
from ollama_core.backends.plan import LoadPlan, PlanRequest, PlanSettings, choose_attention, plan_load
from ollama_core.descriptors import BackendStatus, Device
from ollama_core.gguf import GGUFFile, read_gguf
from ollama_core.settings import Settings

CUDA_RESERVE = 457 * MiB
METAL_RESERVE = 512 * MiB

# Mistral-7B shape at Q4_0: q and o are 4096 x 4096, k and v 4096 x 1024 (8 KV heads of 128),
# three FFN matrices 4096 x 14336, two f32 norms of 4096.
M7_LAYER = 2 * (4096 * 4096 // 32 * 18) + 2 * (4096 * 1024 // 32 * 18) + 3 * (4096 * 14336 // 32 * 18) + 2 * 4096 * 4
M7_EMBD = 4096 * 32000 // 32 * 18  # token_embd and output.weight: 73,728,000 bytes each
M7_OUTPUT = M7_EMBD + 4096 * 4  # output.weight + output_norm
# Llama-70B shape at Q4_0: q, o 8192 x 8192; k, v 8192 x 1024; FFN 8192 x 28672; vocabulary 128,256.
L70_LAYER = 2 * (8192 * 8192 // 32 * 18) + 2 * (8192 * 1024 // 32 * 18) + 3 * (8192 * 28672 // 32 * 18) + 2 * 8192 * 4
L70_EMBD = 8192 * 128256 // 32 * 18
L70_OUTPUT = L70_EMBD + 8192 * 4


def kv(num_ctx: int) -> int:
    """f16 KV cache of one layer of either model: cells x 8 KV heads x 128 values x (K, V) x 2 bytes."""
    return num_ctx * 8 * 128 * 2 * 2


def graph(values_per_token: int) -> int:
    """A 512-token micro-batch of f32 values, plus an eighth."""
    g = 4 * 512 * values_per_token
    return g + g // 8


def test_hand_figures() -> None:
    assert M7_LAYER == 122_716_160 and M7_OUTPUT == 73_744_384
    assert L70_LAYER == 481_361_920 and L70_OUTPUT == 591_036_416
    assert kv(4096) == 16 * MiB and kv(32768) == 128 * MiB


@pytest.fixture(scope="module")
def mistral(tmp_path_factory: pytest.TempPathFactory) -> GGUFFile:
    return read_gguf(MISTRAL_7B.write(tmp_path_factory.mktemp("m7") / "mistral.gguf"))


@pytest.fixture(scope="module")
def llama70(tmp_path_factory: pytest.TempPathFactory) -> GGUFFile:
    return read_gguf(LLAMA_70B.write(tmp_path_factory.mktemp("l70") / "llama70.gguf"))


def on(*devices: Device, env: str | None = None) -> Discovery:
    """A discovery where one backend reports ``devices`` (with CUDA's visible-devices variable unless told)."""
    backend = devices[0].backend
    variable = env if env is not None else ("CUDA_VISIBLE_DEVICES" if backend == "cuda" else "")
    status = BackendStatus(available=True, devices=devices, visible_devices_env=variable)
    return Discovery((BackendReport(backend, 100, status),))


def plan(
    gguf: GGUFFile,
    discovery: Discovery,
    num_ctx: int,
    *,
    num_gpu: int | None = None,
    main_gpu: int | None = None,
    **settings: Any,
) -> LoadPlan:
    request = PlanRequest(num_ctx=num_ctx, num_gpu=num_gpu, main_gpu=main_gpu)
    return plan_load(gguf, discovery, request, PlanSettings(**settings))


# Graphs of Mistral-7B with flash attention (every device here runs it, and the model's K and V
# heads match, so automatic flash attention is assumed on). Values per token: the layer pass
# 4 x 4096 + 2 x 14336 + cells, or the logits 2 x 4096 + 32000 = 40,192.
M7_GRAPH_4K = graph(4 * 4096 + 2 * 14336 + 4096)  # 49,152 values: 113,246,208 bytes
M7_GRAPH_32K = graph(4 * 4096 + 2 * 14336 + 32768)  # 77,824 values: 179,306,496 bytes
M7_PARTIAL_32K = M7_GRAPH_32K + M7_EMBD  # split layers: the GPU stages the largest weight too
# Llama-70B: the logits (2 x 8192 + 128,256 = 144,640 values) beat the layer pass up to 32k cells.
L70_GRAPH = graph(2 * 8192 + 128256)
L70_PARTIAL = L70_GRAPH + L70_EMBD


def test_no_gpu_runs_everything_on_cpu(mistral: GGUFFile) -> None:
    cpu = Device(backend="cpu", id="cpu", name="CPU", total_memory=64 * GiB, free_memory=60 * GiB)
    discovery = Discovery((BackendReport("cpu", -100, BackendStatus(available=True, devices=(cpu,))),))
    p = plan(mistral, discovery, 4096)
    assert (p.backend, p.n_gpu_layers, p.size_vram, p.devices, p.tensor_split, dict(p.env)) == ("cpu", 0, 0, (), (), {})
    assert p.size == 32 * (M7_LAYER + kv(4096)) + M7_EMBD + M7_OUTPUT + M7_GRAPH_4K == 4_724_506_624
    assert p.reason.startswith("no GPU found; running on CPU (no GPU backend plugin is installed)")
    assert p.flash_attn is None and p.kv_cache_type == "f16"


def test_8gib_gpu_holds_a_7b_model_at_4k(mistral: GGUFFile) -> None:
    p = plan(mistral, on(RTX_3070), 4096)
    assert p.n_gpu_layers == 33 == p.total_layers  # 32 blocks and the output layer
    assert p.size_vram == CUDA_RESERVE + M7_GRAPH_4K + 32 * (M7_LAYER + kv(4096)) + M7_OUTPUT == 5_129_977_856
    assert p.size == p.size_vram + M7_EMBD  # token embeddings stay in system memory
    assert dict(p.env) == {"CUDA_VISIBLE_DEVICES": RTX_3070.id} and p.tensor_split == () and p.main_gpu == 0


def test_8gib_gpu_takes_27_layers_of_a_7b_model_at_32k(mistral: GGUFFile) -> None:
    layer = M7_LAYER + kv(32768)  # 256,933,888
    # All 33 would need 32 layers + output = 8.30 GB: more than 7800 MiB free.
    room = 7800 * MiB - CUDA_RESERVE - M7_PARTIAL_32K - layer  # 7,189,725,184 after graph and margin
    assert room // layer == 27
    p = plan(mistral, on(RTX_3070), 32768)
    assert p.n_gpu_layers == 27
    assert p.size_vram == CUDA_RESERVE + M7_PARTIAL_32K + 27 * layer == 7_669_448_704
    assert p.size == p.size_vram + 5 * layer + M7_EMBD + M7_OUTPUT
    assert p.reason == "27 of 33 layers on cuda 0 (NVIDIA GeForce RTX 3070), the rest on CPU"


def test_gpu_overhead_is_left_free(mistral: GGUFFile) -> None:
    layer = M7_LAYER + kv(32768)
    room = 7800 * MiB - GiB - CUDA_RESERVE - M7_PARTIAL_32K - layer
    assert room // layer == 23
    assert plan(mistral, on(RTX_3070), 32768, gpu_overhead=GiB).n_gpu_layers == 23


def test_q8_0_cache_turns_flash_attention_on_and_fits_everything(mistral: GGUFFile) -> None:
    layer = M7_LAYER + 32768 * 2 * (1024 // 32 * 34)  # K and V rows of 1024 values: 32 blocks of 34 bytes
    p = plan(mistral, on(RTX_3070), 32768, kv_cache_type="q8_0")
    assert (p.flash_attn, p.kv_cache_type, p.n_gpu_layers) == (True, "q8_0", 33)
    assert p.size_vram == CUDA_RESERVE + M7_GRAPH_32K + 32 * layer + M7_OUTPUT == 6_940_868_608


def test_flash_attention_off_keeps_f16_and_a_big_graph(mistral: GGUFFile) -> None:
    # Without flash attention each token keeps scores and mask for 32,768 cells x (1 + 32 heads).
    partial = graph(4 * 4096 + 2 * 14336 + 32768 * 33) + M7_EMBD
    layer = M7_LAYER + kv(32768)
    assert (7800 * MiB - CUDA_RESERVE - partial - layer) // layer == 18
    p = plan(mistral, on(RTX_3070), 32768, kv_cache_type="q8_0", flash_attention=False)
    assert (p.flash_attn, p.kv_cache_type, p.n_gpu_layers) == (False, "f16", 18)
    assert "KV cache type q8_0 needs flash attention; using f16" in p.notes


def test_24gib_gpu_holds_a_7b_model_at_32k(mistral: GGUFFile) -> None:
    p = plan(mistral, on(RTX_4090), 32768)
    assert p.n_gpu_layers == 33
    assert p.size_vram == CUDA_RESERVE + M7_GRAPH_32K + 32 * (M7_LAYER + kv(32768)) + M7_OUTPUT == 8_954_134_528


def test_80gib_gpu_holds_a_70b_model(llama70: GGUFFile) -> None:
    p = plan(llama70, on(H100), 8192)
    assert p.n_gpu_layers == 81
    assert p.size_vram == CUDA_RESERVE + L70_GRAPH + 80 * (L70_LAYER + kv(8192)) + L70_OUTPUT == 42_596_794_368
    assert p.size == p.size_vram + L70_EMBD


def test_24gib_gpu_takes_44_layers_of_a_70b_model(llama70: GGUFFile) -> None:
    layer = L70_LAYER + kv(8192)  # 514,916,352
    assert (23900 * MiB - CUDA_RESERVE - L70_PARTIAL - layer) // layer == 44
    p = plan(llama70, on(RTX_4090), 8192)
    assert p.n_gpu_layers == 44
    assert p.size == p.size_vram + 36 * layer + L70_EMBD + L70_OUTPUT


def test_two_gpus_prefer_the_one_that_holds_the_whole_model(mistral: GGUFFile) -> None:
    p = plan(mistral, on(RTX_4090, RTX_3060), 32768)
    assert p.n_gpu_layers == 33 and [a.device.name for a in p.devices] == ["NVIDIA GeForce RTX 4090"]
    assert dict(p.env) == {"CUDA_VISIBLE_DEVICES": RTX_4090.id} and p.tensor_split == ()
    # main_gpu picks the 3060 first, and it holds the model too (8.95 GB in 12000 MiB).
    p = plan(mistral, on(RTX_4090, RTX_3060), 32768, main_gpu=1)
    assert [a.device.name for a in p.devices] == ["NVIDIA GeForce RTX 3060"]
    assert dict(p.env) == {"CUDA_VISIBLE_DEVICES": RTX_3060.id}


def test_sched_spread_splits_in_proportion_to_room(mistral: GGUFFile) -> None:
    layer = M7_LAYER + kv(32768)
    room_4090 = 23900 * MiB - CUDA_RESERVE - M7_PARTIAL_32K - layer
    room_3060 = 12000 * MiB - CUDA_RESERVE - M7_PARTIAL_32K - layer
    # Both devices are filled to the same smallest fraction f of their room. 22 layers on the 4090
    # need f >= 22 x layer / room_4090 = 0.2348, the other 10 and the output on the 3060 only 0.2280.
    # With 21 on the 4090 the 3060 would need f >= 0.2501, at which the 4090 already takes 23.
    assert round(22 * layer / room_4090, 4) == 0.2348
    assert round((10 * layer + M7_OUTPUT) / room_3060, 4) == 0.2280
    assert round((11 * layer + M7_OUTPUT) / room_3060, 4) == 0.2501
    p = plan(mistral, on(RTX_4090, RTX_3060), 32768, sched_spread=True)
    assert p.tensor_split == (22.0, 11.0) and p.n_gpu_layers == 33 and p.main_gpu == 0
    assert dict(p.env) == {"CUDA_VISIBLE_DEVICES": f"{RTX_4090.id},{RTX_3060.id}"}
    first, second = p.devices
    assert first.total == CUDA_RESERVE + M7_PARTIAL_32K + 22 * layer
    assert second.total == CUDA_RESERVE + M7_PARTIAL_32K + 10 * layer + M7_OUTPUT
    assert p.size_vram == first.total + second.total


def test_a_70b_model_spreads_over_two_gpus_of_different_sizes(llama70: GGUFFile) -> None:
    layer = L70_LAYER + kv(8192)
    on_4090 = (23900 * MiB - CUDA_RESERVE - L70_PARTIAL - layer) // layer
    on_3060 = (12000 * MiB - CUDA_RESERVE - L70_PARTIAL - layer) // layer
    assert (on_4090, on_3060) == (44, 20)
    p = plan(llama70, on(RTX_4090, RTX_3060), 8192)
    assert p.n_gpu_layers == 64 and p.tensor_split == (44.0, 20.0)
    assert p.size_vram == 2 * (CUDA_RESERVE + L70_PARTIAL) + 64 * layer
    assert p.size == p.size_vram + 16 * layer + L70_EMBD + L70_OUTPUT


def test_without_a_visible_devices_variable_the_split_follows_device_indices(mistral: GGUFFile) -> None:
    spread = plan(mistral, on(RTX_4090, RTX_3060, env=""), 32768, sched_spread=True)
    assert spread.tensor_split == (22.0, 11.0) and dict(spread.env) == {}
    alone = plan(mistral, on(RTX_4090, RTX_3060, env=""), 32768, main_gpu=1)
    assert alone.tensor_split == (0.0, 33.0) and alone.main_gpu == 1


def test_num_gpu_option(mistral: GGUFFile, llama70: GGUFFile) -> None:
    ten = plan(mistral, on(RTX_4090), 32768, num_gpu=10)
    assert ten.n_gpu_layers == 10
    assert ten.size_vram == CUDA_RESERVE + M7_PARTIAL_32K + 10 * (M7_LAYER + kv(32768))
    none = plan(mistral, on(RTX_4090), 32768, num_gpu=0)
    assert (none.n_gpu_layers, none.size_vram, dict(none.env)) == (0, 0, {"CUDA_VISIBLE_DEVICES": ""})
    assert none.reason == "num_gpu is 0; running on CPU"
    # Asking for more than fits is obeyed (the user knows better than the estimate) and noted.
    layer = L70_LAYER + kv(8192)
    assert (7800 * MiB - CUDA_RESERVE - L70_PARTIAL - layer) // layer == 12
    forced = plan(llama70, on(RTX_3070), 8192, num_gpu=40)
    assert forced.n_gpu_layers == 40
    assert "num_gpu 40 asks for more layers than the estimate fits (12)" in forced.notes[0]
    assert plan(mistral, on(RTX_4090), 4096, num_gpu=999).n_gpu_layers == 33
    everything = plan(llama70, on(RTX_3070), 8192, num_gpu=999)
    assert everything.n_gpu_layers == 81 and "(12)" in everything.notes[0]


def test_a_gpu_too_small_for_one_layer_leaves_the_model_on_cpu(llama70: GGUFFile) -> None:
    tiny = Device(backend="cuda", id="GPU-tiny", name="GT 710", total_memory=2 * GiB, free_memory=1900 * MiB,
                  compute="3.5", reserved=CUDA_RESERVE, flash_attention=False)
    p = plan(llama70, on(tiny), 8192)
    assert p.n_gpu_layers == 0 and p.size_vram == 0 and dict(p.env) == {"CUDA_VISIBLE_DEVICES": ""}
    assert p.reason.startswith("not enough free cuda memory for one layer")


def test_16gib_mac_holds_a_7b_model_at_32k(mistral: GGUFFile) -> None:
    # Unified memory: no partial-offload staging, the device graph is the full-offload one.
    p = plan(mistral, on(M_16), 32768)
    assert p.n_gpu_layers == 33 and dict(p.env) == {} and p.backend == "metal"
    assert p.size_vram == METAL_RESERVE + M7_GRAPH_32K + 32 * (M7_LAYER + kv(32768)) + M7_OUTPUT == 9_011_806_208


def test_16gib_mac_takes_20_layers_of_a_70b_model(llama70: GGUFFile) -> None:
    layer = L70_LAYER + kv(4096)
    working_set = 16 * GiB * 2 // 3
    assert (working_set - METAL_RESERVE - L70_GRAPH - layer) // layer == 20
    p = plan(llama70, on(M_16), 4096)
    assert p.n_gpu_layers == 20
    assert p.size_vram == METAL_RESERVE + L70_GRAPH + 20 * layer


@pytest.mark.parametrize(("mac", "num_ctx"), [(M_64, 4096), (M_128, 32768)])
def test_large_macs_hold_a_70b_model(llama70: GGUFFile, mac: Device, num_ctx: int) -> None:
    p = plan(llama70, on(mac), num_ctx)
    assert p.n_gpu_layers == 81
    assert p.size_vram == METAL_RESERVE + L70_GRAPH + 80 * (L70_LAYER + kv(num_ctx)) + L70_OUTPUT


def test_smollm2_on_an_8gib_gpu(smollm2_gguf: Path) -> None:
    layer = 2_216_448 + 4096 * 3 * 64 * 2 * 2  # weights (see the estimate tests) + 3 MiB of f16 KV cache
    embd = 576 * 49152 // 32 * 34  # token_embd, Q8_0: also the output layer on the GPU
    p = plan(read_gguf(smollm2_gguf), on(RTX_3070), 4096)
    assert p.n_gpu_layers == 31
    assert p.size_vram == CUDA_RESERVE + 115_900_416 + 30 * layer + embd + 576 * 4
    assert p.size == p.size_vram + embd


def test_choose_attention(smollm2_gguf: Path) -> None:
    shape = ModelShape.from_gguf(read_gguf(smollm2_gguf))
    pascal = Device(backend="cuda", id="GPU-old", name="Tesla K80", total_memory=12 * GiB, free_memory=11 * GiB,
                    flash_attention=False)
    forced = choose_attention(shape, [pascal], PlanSettings(flash_attention=True, kv_cache_type="q4_0"))
    assert (forced.flash_attn, forced.kv_cache_type) == (False, "f16") and len(forced.notes) == 2
    auto = choose_attention(shape, [RTX_4090], PlanSettings(kv_cache_type="q4_0"))
    assert (auto.flash_attn, auto.assume_flash, auto.kv_cache_type) == (True, True, "q4_0")
    unknown = choose_attention(shape, [RTX_4090], PlanSettings(kv_cache_type="q5_1"))
    assert (unknown.flash_attn, unknown.kv_cache_type) == (None, "f16")
    assert unknown.notes == ("unknown KV cache type 'q5_1'; using f16",)


def test_plan_settings_from_the_environment() -> None:
    env = {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_GPU_OVERHEAD": "1073741824",
           "OLLAMA_SCHED_SPREAD": "true"}
    settings = PlanSettings.from_settings(Settings.from_env(env))
    assert settings == PlanSettings(flash_attention=True, kv_cache_type="q8_0", gpu_overhead=GiB, sched_spread=True)
    assert PlanSettings.from_settings(Settings.from_env({})) == PlanSettings()
