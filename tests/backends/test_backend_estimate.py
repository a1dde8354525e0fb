"""Memory estimates from GGUF headers, against figures worked out by hand from the tensor shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from backend_models import MISTRAL_7B, Dense, Tensor, write_sparse_gguf

from ollama_core.backends.estimate import ModelShape, estimate_memory, kv_cells, row_bytes
from ollama_core.gguf import read_gguf

MiB = 1 << 20

# SmolLM2-135M-Instruct Q4_1: 30 blocks of attention (9 heads, 3 KV heads of 64) and a gated FFN
# of 1536; Q4_1 stores 32 values in 20 bytes, Q8_0 in 34.
SMOL_Q = 576 * 576 // 32 * 20  # attn_q and attn_output: 207,360 bytes each
SMOL_K = 576 * 192 // 32 * 20  # attn_k and attn_v: 69,120 bytes each
SMOL_FFN = 576 * 1536 // 32 * 20  # ffn_gate, ffn_up, ffn_down: 552,960 bytes each
SMOL_LAYER = 2 * SMOL_Q + 2 * SMOL_K + 3 * SMOL_FFN + 2 * 576 * 4  # + two f32 norms = 2,216,448
SMOL_EMBD = 576 * 49152 // 32 * 34  # token_embd at Q8_0: 30,081,024
SMOL_NORM = 576 * 4  # output_norm, f32


def test_smollm2_weights_kv_and_graph_by_hand(smollm2_gguf: Path) -> None:
    memory = estimate_memory(read_gguf(smollm2_gguf), num_ctx=4096)
    assert [layer.weights for layer in memory.layers] == [SMOL_LAYER] * 30
    # No output.weight: the output layer is token_embd again, so offloading it copies 30 MB to the GPU,
    # while on the CPU it costs only output_norm.
    assert memory.output == SMOL_NORM + SMOL_EMBD
    assert memory.host == SMOL_EMBD and memory.host_output == SMOL_NORM
    # llama.cpp logs "CPU_Mapped model buffer size = 92.10 MiB" for this file.
    assert memory.weights == 30 * SMOL_LAYER + SMOL_EMBD + SMOL_NORM == 96_576_768
    assert round(memory.weights / MiB, 2) == 92.10
    # KV: 4096 cells x 3 KV heads x 64 values x (K and V) x 2 bytes (f16) per layer: 90 MiB in all,
    # as llama.cpp logs "KV buffer size = 90.00 MiB".
    assert [layer.kv for layer in memory.layers] == [4096 * 3 * 64 * 2 * 2] * 30
    assert memory.kv == 90 * MiB
    # Graph: a 512-token micro-batch of f32 values; per token the layer pass needs 4 x 576 + 2 x 1536
    # plus the attention scores and mask (4096 cells x (1 + 9 heads)) = 46,336 values, the logits
    # 2 x 576 + 49,152 = 50,304 values. The larger, plus an eighth: llama.cpp measured 99.4 MiB.
    graph = 4 * 512 * 50_304
    assert memory.graph_full == graph + graph // 8 == 115_900_416
    # With layers split, the GPU also stages the largest weight (token_embd as output) for big batches.
    assert memory.graph_partial == memory.graph_full + SMOL_EMBD
    assert memory.cpu_total == memory.weights + memory.kv + memory.graph_full


def test_smollm2_long_context_graph_grows_without_flash_attention(smollm2_gguf: Path) -> None:
    gguf = read_gguf(smollm2_gguf)
    # 16,384 cells x 10 = 163,840 score values per token beat the logits (llama.cpp measured 326.4 MiB).
    plain = estimate_memory(gguf, num_ctx=16384)
    graph = 4 * 512 * (4 * 576 + 2 * 1536 + 16384 * 10)
    assert plain.graph_full == graph + graph // 8
    assert plain.graph_full > 326.4 * MiB
    # Flash attention keeps no score matrix: the logits dominate again (llama.cpp measured 98.3 MiB).
    flash = estimate_memory(gguf, num_ctx=16384, flash_attention=True)
    assert flash.graph_full == 115_900_416


@pytest.mark.parametrize(
    ("cache_type", "row"),
    [
        ("f16", 192 * 2),  # 3 KV heads x 64 = 192 values, 2 bytes each
        ("q8_0", 192 // 32 * 34),  # 6 blocks of 34 bytes = 204
        ("q4_0", 192 // 32 * 18),  # 6 blocks of 18 bytes = 108
    ],
)
def test_kv_cache_types(smollm2_gguf: Path, cache_type: str, row: int) -> None:
    memory = estimate_memory(read_gguf(smollm2_gguf), num_ctx=2048, kv_cache_type=cache_type, flash_attention=True)
    assert memory.kv == 30 * 2048 * 2 * row  # 30 layers x 2048 cells x (K row + V row)
    assert row_bytes(cache_type, 192) == row


def test_parallel_sequences_pad_each_share_to_256_cells(smollm2_gguf: Path) -> None:
    # 3 x 1000 = 3000 cells pad to 3072; each sequence gets 1024 (already a multiple of 256).
    assert kv_cells(1000, 3) == 1024
    # One sequence of 1000 pads to 1024; 4 x 4096 stays 4096 each.
    assert kv_cells(1000, 1) == 1024 and kv_cells(4096, 4) == 4096
    # 3 x 300 = 900 pads to 1024; 1024 // 3 = 341 pads to 512 per sequence.
    assert kv_cells(300, 3) == 512
    memory = estimate_memory(read_gguf(smollm2_gguf), num_ctx=4096, num_parallel=4)
    assert memory.kv == 4 * 90 * MiB


def _tiny(tmp_path: Path, arch: str, **meta: object) -> Path:
    model = Dense(layers=12, embd=256, heads=4, heads_kv=2, ff=512, vocab=1000, arch=arch)
    return model.write(tmp_path / f"{arch}.gguf", **meta)


def test_sliding_window_layers_follow_the_architecture_pattern(tmp_path: Path) -> None:
    path = _tiny(tmp_path, "gemma3", **{"gemma3.attention.sliding_window": 512, "gemma3.attention.key_length": 64,
                                        "gemma3.attention.value_length": 64})
    shape = ModelShape.from_gguf(read_gguf(path))
    # gemma3: every 6th layer is global, the others slide.
    assert [i for i, s in enumerate(shape.swa_layers) if not s] == [5, 11]
    full_row = 2 * 64 * 2  # 2 KV heads x 64 values x 2 bytes
    # As the runner opens contexts (full-size SWA cache), every layer holds 8192 cells.
    full = estimate_memory(read_gguf(path), num_ctx=8192)
    assert full.kv == 12 * 8192 * full_row * 2
    # With a window-sized cache, sliding layers hold 512 + 512 (micro-batch) = 1024 cells.
    small = estimate_memory(read_gguf(path), num_ctx=8192, swa_full=False)
    assert [layer.kv for layer in small.layers] == [
        (8192 if i in (5, 11) else 1024) * full_row * 2 for i in range(12)
    ]


def test_explicit_pattern_swa_head_sizes_and_shared_kv_layers(tmp_path: Path) -> None:
    pattern = [True, True, True, False] * 3
    path = _tiny(
        tmp_path,
        "gemma4",
        **{
            "gemma4.attention.sliding_window": 256,
            "gemma4.attention.sliding_window_pattern": pattern,
            "gemma4.attention.key_length": 128,
            "gemma4.attention.value_length": 128,
            "gemma4.attention.key_length_swa": 64,
            "gemma4.attention.value_length_swa": 64,
            "gemma4.attention.shared_kv_layers": 4,
        },
    )
    shape = ModelShape.from_gguf(read_gguf(path))
    assert list(shape.swa_layers) == pattern
    assert shape.key_length == tuple(64 if s else 128 for s in pattern)
    # The last 4 layers reuse earlier caches and hold none of their own.
    assert shape.kv_layers == (True,) * 8 + (False,) * 4
    memory = estimate_memory(read_gguf(path), num_ctx=1024, flash_attention=True)
    per_cell = [(2 * (64 if s else 128) * 2) * 2 for s in pattern]  # 2 KV heads x dim x f16 x (K, V)
    assert [layer.kv for layer in memory.layers] == [1024 * c for c in per_cell[:8]] + [0] * 4
    # Without flash attention llama.cpp pads every V row to the widest one (2 x 128 values).
    padded = estimate_memory(read_gguf(path), num_ctx=1024)
    assert padded.layers[0].kv == 1024 * (2 * 64 * 2 + 2 * 128 * 2)


def test_per_layer_kv_heads_and_recurrent_layers(tmp_path: Path) -> None:
    heads_kv = [0, 0, 0, 2] * 3
    path = _tiny(
        tmp_path,
        "granitehybrid",
        **{
            "granitehybrid.attention.head_count_kv": heads_kv,
            "granitehybrid.ssm.state_size": 16,
            "granitehybrid.ssm.inner_size": 512,
            "granitehybrid.ssm.conv_kernel": 4,
            "granitehybrid.ssm.group_count": 1,
        },
    )
    memory = estimate_memory(read_gguf(path), num_ctx=1024, num_parallel=2)
    # Recurrent layers keep, per sequence, f32 conv state (4 - 1) x (512 + 2 x 1 x 16) and SSM state 16 x 512.
    recurrent = ((4 - 1) * (512 + 2 * 16) + 16 * 512) * 4 * 2
    attention = 1024 * 2 * (2 * 64 * 2) * 2  # 1024 cells x 2 sequences x (K, V) rows of 2 x 64 f16
    assert [layer.kv for layer in memory.layers] == [recurrent, recurrent, recurrent, attention] * 3


def test_mla_caches_no_values_and_encoders_no_kv(tmp_path: Path) -> None:
    mla = _tiny(
        tmp_path,
        "deepseek2",
        **{
            "deepseek2.attention.key_length": 576,
            "deepseek2.attention.value_length": 512,
            "deepseek2.attention.key_length_mla": 192,
            "deepseek2.attention.head_count_kv": 1,
        },
    )
    memory = estimate_memory(read_gguf(mla), num_ctx=512, flash_attention=True)
    assert memory.layers[0].kv == 512 * 576 * 2  # compressed K of 576 values, no V
    bert = Dense(layers=4, embd=128, heads=2, heads_kv=2, ff=256, vocab=500, arch="bert", tied=True)
    enc = estimate_memory(read_gguf(bert.write(tmp_path / "bert.gguf")), num_ctx=512)
    assert enc.kv == 0
    # An encoder has no language-model head: its token embeddings are not loaded a second time.
    assert enc.output == 128 * 4


def test_flash_attention_and_quantized_cache_support(tmp_path: Path, smollm2_gguf: Path) -> None:
    smol = ModelShape.from_gguf(read_gguf(smollm2_gguf))
    assert smol.supports_flash_attention()
    assert all(smol.supports_kv_cache_type(t) for t in ("f16", "q8_0", "q4_0"))
    assert not smol.supports_kv_cache_type("q5_1")
    odd = _tiny(tmp_path, "llama", **{"llama.attention.key_length": 80, "llama.attention.value_length": 80})
    shape = ModelShape.from_gguf(read_gguf(odd))
    assert shape.supports_flash_attention() and not shape.supports_kv_cache_type("q8_0")  # 80 is no multiple of 32
    unequal = _tiny(tmp_path, "qwen2", **{"qwen2.attention.key_length": 128, "qwen2.attention.value_length": 64})
    assert not ModelShape.from_gguf(read_gguf(unequal)).supports_flash_attention()


def test_projector_weights_are_counted(tmp_path: Path, smollm2_gguf: Path) -> None:
    projector = write_sparse_gguf(
        tmp_path / "mmproj.gguf",
        "clip",
        {},
        [Tensor("v.patch_embd.weight", (1024, 1024)), Tensor("mm.0.weight", (1024, 576))],
    )
    memory = estimate_memory(read_gguf(smollm2_gguf), num_ctx=2048, projector=read_gguf(projector))
    assert memory.projector == 1024 * 1024 // 32 * 18 + 1024 * 576 // 32 * 18


def test_mistral_shaped_header(tmp_path: Path) -> None:
    memory = estimate_memory(read_gguf(MISTRAL_7B.write(tmp_path / "m.gguf")), num_ctx=4096, flash_attention=True)
    q = 4096 * 4096 // 32 * 18  # attn_q, attn_output at Q4_0
    k = 4096 * 1024 // 32 * 18  # attn_k, attn_v (8 KV heads of 128)
    ffn = 4096 * 14336 // 32 * 18
    assert memory.layers[0].weights == 2 * q + 2 * k + 3 * ffn + 2 * 4096 * 4 == 122_716_160
    assert memory.layers[0].kv == 4096 * 8 * 128 * 2 * 2 == 16 * MiB
    assert memory.output == 4096 * 32000 // 32 * 18 + 4096 * 4
    assert memory.kv == 512 * MiB
