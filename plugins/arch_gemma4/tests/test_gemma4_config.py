"""Reading both config spellings, and refusing layouts llama.cpp cannot run, for the released model shapes."""

from __future__ import annotations

from typing import Any

import pytest

from ollama_arch_gemma4.config import FULL, SLIDING, UnsupportedCheckpoint, check_convertible, parse_config
from ollama_arch_gemma4.convert import gguf_metadata

ROPE = {
    "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "rope_type": "proportional"},
    "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
}


def _pattern(layers: int, period: int) -> list[str]:
    return [FULL if (i + 1) % period == 0 else SLIDING for i in range(layers)]


def _text(**fields: Any) -> dict[str, Any]:
    return {
        "vocab_size": 262144,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "sliding_window": 512,
        "rope_parameters": ROPE,
        "final_logit_softcapping": 30.0,
        **fields,
    }


E2B = _text(
    hidden_size=1536,
    intermediate_size=6144,
    num_hidden_layers=35,
    layer_types=_pattern(35, 5),
    per_layer_config={str(i): {"head_dim": 512} for i in range(4, 35, 5)},
    hidden_size_per_layer_input=256,
    num_kv_shared_layers=20,
    use_double_wide_mlp=True,
)
E4B = _text(
    hidden_size=2560,
    intermediate_size=10240,
    num_hidden_layers=42,
    num_key_value_heads=2,
    layer_types=_pattern(42, 6),
    global_head_dim=512,
    hidden_size_per_layer_input=256,
    num_kv_shared_layers=18,
)
MOE_26B = _text(
    hidden_size=2816,
    intermediate_size=2112,
    num_hidden_layers=30,
    num_attention_heads=16,
    num_key_value_heads=8,
    sliding_window=1024,
    layer_types=_pattern(30, 6),
    global_head_dim=512,
    num_global_key_value_heads=2,
    attention_k_eq_v=True,
    enable_moe_block=True,
    num_experts=128,
    top_k_experts=8,
    moe_intermediate_size=704,
    hidden_size_per_layer_input=0,
    num_kv_shared_layers=0,
)
DENSE_31B = _text(
    hidden_size=5376,
    intermediate_size=21504,
    num_hidden_layers=60,
    num_attention_heads=32,
    num_key_value_heads=16,
    sliding_window=1024,
    _sliding_window_pattern=6,
    per_layer_config={str(i): {"head_dim": 512, "num_key_value_heads": 4} for i in range(5, 60, 6)},
    attention_k_eq_v=True,
    hidden_size_per_layer_input=0,
    num_kv_shared_layers=0,
)


def _config(text: dict[str, Any], conditional: bool = False) -> Any:
    if conditional:
        return parse_config({"architectures": ["Gemma4ForConditionalGeneration"], "text_config": text})
    return parse_config({"architectures": ["Gemma4ForCausalLM"], **text})


@pytest.mark.parametrize("text", [E2B, E4B, MOE_26B, DENSE_31B], ids=["e2b", "e4b", "26b", "31b"])
@pytest.mark.parametrize("conditional", [False, True])
def test_released_layouts_are_accepted(text: dict[str, Any], conditional: bool) -> None:
    config = _config(text, conditional)
    check_convertible(config)
    assert config.global_head_dim == 512 and config.layer_types[-1] == FULL
    assert config.tensor_prefix == ("model.language_model." if conditional else "model.")


def test_e2b_metadata() -> None:
    meta = gguf_metadata(_config(E2B))
    assert meta["gemma4.feed_forward_length"] == [6144] * 15 + [12288] * 20
    assert meta["gemma4.attention.head_count_kv"] == 1
    assert meta["gemma4.rope.dimension_count"] == 512 and meta["gemma4.rope.dimension_count_swa"] == 256


def test_k_eq_v_global_heads_from_either_spelling() -> None:
    moe, dense = gguf_metadata(_config(MOE_26B)), gguf_metadata(_config(DENSE_31B))
    assert moe["gemma4.attention.head_count_kv"] == [2 if (i + 1) % 6 == 0 else 8 for i in range(30)]
    assert dense["gemma4.attention.head_count_kv"] == [4 if (i + 1) % 6 == 0 else 16 for i in range(60)]
    assert moe["gemma4.expert_count"] == 128 and moe["gemma4.expert_feed_forward_length"] == 704


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layer_types": [*_pattern(35, 5)[:13], FULL, SLIDING, *_pattern(35, 5)[15:]]}, "KV-sharing layout"),
        ({"num_kv_shared_layers": 34}, "at least 2"),
        ({"hidden_activation": "silu"}, "tanh GELU"),
        ({"use_bidirectional_attention": "all"}, "bidirectional"),
        ({"rope_parameters": {**ROPE, "full_attention": {"rope_type": "yarn", "rope_theta": 1e6}}}, "rope_type"),
        ({"architectures": ["Gemma3ForCausalLM"]}, "no Gemma 4 model"),
    ],
)
def test_refusals(change: dict[str, Any], message: str) -> None:
    text = {**E2B, "per_layer_config": {}, "global_head_dim": 512, **change}
    with pytest.raises(UnsupportedCheckpoint, match=message):
        check_convertible(parse_config({"architectures": ["Gemma4ForCausalLM"], **text}))
