"""Tiny random Gemma 4 checkpoints in HF layout, for variants the shared fixtures do not cover
(MoE with fused experts, ``attention_k_eq_v``, double-wide MLP on KV-shared layers).

Tensor names and shapes are written from the transformers module structure, independently of
the converter. Norms, layer scalars and router scales get random values so that a swapped or
missing one changes the output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from gemma4_support import FIXTURE
from safetensors.numpy import save_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

BASE: dict[str, Any] = {
    "vocab_size": 549,
    "vocab_size_per_layer_input": 549,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "sliding_window": 5,
    "final_logit_softcapping": 30.0,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "rope_parameters": {
        "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "rope_type": "proportional"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    },
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
}

MOE: dict[str, Any] = {
    **BASE,
    "num_hidden_layers": 6,
    "layer_types": ["sliding_attention", "sliding_attention", "full_attention"] * 2,
    "per_layer_config": {
        "2": {"head_dim": 32, "num_key_value_heads": 1},
        "5": {"head_dim": 32, "num_key_value_heads": 1},
    },
    "attention_k_eq_v": True,
    "enable_moe_block": True,
    "num_experts": 4,
    "top_k_experts": 2,
    "moe_intermediate_size": 24,
    "hidden_size_per_layer_input": 0,
    "num_kv_shared_layers": 0,
}

DENSE: dict[str, Any] = {
    **BASE,
    "num_hidden_layers": 4,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
    "global_head_dim": 32,
    "num_global_key_value_heads": 1,
    "attention_k_eq_v": True,
    "hidden_size_per_layer_input": 0,
    "num_kv_shared_layers": 0,
}

SHARED_KV: dict[str, Any] = {
    **BASE,
    "num_hidden_layers": 7,
    "layer_types": [
        "sliding_attention",
        "full_attention",
        "sliding_attention",
        "full_attention",
        "sliding_attention",
        "sliding_attention",
        "full_attention",
    ],
    "global_head_dim": 32,
    "hidden_size_per_layer_input": 8,
    "num_kv_shared_layers": 3,
    "use_double_wide_mlp": True,
}


def write_checkpoint(directory: Path, text: dict[str, Any], *, seed: int) -> Path:
    """Write a ``Gemma4ForCausalLM`` checkpoint for ``text`` (a text config) with the fixture's tokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {f"model.{name}": value for name, value in _tensors(text, rng).items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config = {"architectures": ["Gemma4ForCausalLM"], "model_type": "gemma4_text", **text}
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for name in TOKENIZER_FILES:
        shutil.copy(FIXTURE / name, directory / name)
    return directory


def _full_shape(text: dict[str, Any]) -> tuple[int, int]:
    per_layer = text.get("per_layer_config") or {}
    entry = next(iter(per_layer.values()), {})
    head = text.get("global_head_dim") or entry.get("head_dim")
    kv = text.get("num_global_key_value_heads") or entry.get("num_key_value_heads") or text["num_key_value_heads"]
    return int(head), int(kv if text.get("attention_k_eq_v") else text["num_key_value_heads"])


def _tensors(text: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    def matrix(*shape: int, scale: float = 0.15) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm(size: int) -> np.ndarray:
        return (1.0 + 0.2 * rng.standard_normal(size)).astype(np.float32)

    hidden = text["hidden_size"]
    layers = text["num_hidden_layers"]
    heads = text["num_attention_heads"]
    width = text.get("hidden_size_per_layer_input") or 0
    vocab = text["vocab_size"]
    full_head, full_kv = _full_shape(text)
    first_shared = layers - (text.get("num_kv_shared_layers") or 0)
    out: dict[str, np.ndarray] = {
        "embed_tokens.weight": matrix(vocab, hidden, scale=0.5),
        "norm.weight": norm(hidden),
    }
    if width:
        out["embed_tokens_per_layer.weight"] = matrix(vocab, layers * width, scale=0.5)
        out["per_layer_model_projection.weight"] = matrix(layers * width, hidden)
        out["per_layer_projection_norm.weight"] = norm(width)
    for i in range(layers):
        sliding = text["layer_types"][i] == "sliding_attention"
        head = text["head_dim"] if sliding else full_head
        kv = text["num_key_value_heads"] if sliding else full_kv
        ffn = text["intermediate_size"] * (2 if text.get("use_double_wide_mlp") and i >= first_shared else 1)
        p = f"layers.{i}."
        out |= {
            p + "input_layernorm.weight": norm(hidden),
            p + "self_attn.q_proj.weight": matrix(heads * head, hidden),
            p + "self_attn.o_proj.weight": matrix(hidden, heads * head),
            p + "self_attn.q_norm.weight": norm(head),
            p + "post_attention_layernorm.weight": norm(hidden),
            p + "pre_feedforward_layernorm.weight": norm(hidden),
            p + "post_feedforward_layernorm.weight": norm(hidden),
            p + "mlp.gate_proj.weight": matrix(ffn, hidden),
            p + "mlp.up_proj.weight": matrix(ffn, hidden),
            p + "mlp.down_proj.weight": matrix(hidden, ffn),
            p + "layer_scalar": (0.5 + rng.random(1)).astype(np.float32),
        }
        if i < first_shared:
            out[p + "self_attn.k_proj.weight"] = matrix(kv * head, hidden)
            out[p + "self_attn.k_norm.weight"] = norm(head)
            if sliding or not text.get("attention_k_eq_v"):
                out[p + "self_attn.v_proj.weight"] = matrix(kv * head, hidden)
        if width:
            out[p + "per_layer_input_gate.weight"] = matrix(width, hidden)
            out[p + "per_layer_projection.weight"] = matrix(hidden, width)
            out[p + "post_per_layer_input_norm.weight"] = norm(hidden)
        if text.get("enable_moe_block"):
            experts, expert_ffn = text["num_experts"], text["moe_intermediate_size"]
            out |= {
                p + "router.proj.weight": matrix(experts, hidden, scale=1.0),
                p + "router.scale": norm(hidden),
                p + "router.per_expert_scale": (0.5 + rng.random(experts)).astype(np.float32),
                p + "experts.gate_up_proj": matrix(experts, 2 * expert_ffn, hidden),
                p + "experts.down_proj": matrix(experts, hidden, expert_ffn),
                p + "pre_feedforward_layernorm_2.weight": norm(hidden),
                p + "post_feedforward_layernorm_1.weight": norm(hidden),
                p + "post_feedforward_layernorm_2.weight": norm(hidden),
            }
    return out
