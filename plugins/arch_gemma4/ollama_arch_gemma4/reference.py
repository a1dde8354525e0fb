"""A numpy forward pass of the Gemma 4 text model, for verifying conversions (``ollama create --verify``).

It follows the transformers implementation for one unpadded, text-only sequence in float64:
per-layer embeddings, sliding-window and full attention (attention scale 1, q/k/v RMS norms,
NeoX RoPE with proportional frequencies on full layers), KV sharing, ``attention_k_eq_v``,
dense and MoE feed-forward, layer scalars and final logit soft-capping. Weights are read from
the memory-mapped checkpoint as needed, so it suits small models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ollama_core.descriptors import ReferenceOutput

from ollama_arch_gemma4.checkpoint import Checkpoint, bf16_to_float32
from ollama_arch_gemma4.config import SLIDING, Gemma4TextConfig, RopeConfig, read_config

_LOGIT_ROWS = 4096


class Gemma4Reference:
    """The reference model of one checkpoint directory; :meth:`run` computes one sequence."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.config: Gemma4TextConfig = read_config(checkpoint_dir)
        self.checkpoint = Checkpoint(checkpoint_dir)

    def run(self, token_ids: Sequence[int]) -> ReferenceOutput:
        """``final``: last-position logits; ``layers``: each layer's output hidden states (tokens x hidden),
        also as ``checkpoints`` under llama.cpp's names (``l_out-<layer>``)."""
        cfg = self.config
        ids = np.asarray(token_ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("token_ids must be a non-empty sequence")
        if ids.min() < 0 or ids.max() >= cfg.vocab_size:
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
        x = self._rows("embed_tokens.weight", ids) * math.sqrt(cfg.hidden_size)
        per_layer = self._per_layer_inputs(ids, x) if cfg.hidden_size_per_layer_input else None
        positions = np.arange(ids.size)
        shared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        outputs: list[np.ndarray] = []
        for layer in range(cfg.num_hidden_layers):
            x = self._layer(layer, x, positions, shared, None if per_layer is None else per_layer[:, layer])
            outputs.append(x)
        final = _rms_norm(x[-1], self._weight("norm.weight"), cfg.rms_norm_eps)
        logits = self._logits(final)
        if cfg.final_logit_softcapping:
            cap = cfg.final_logit_softcapping
            logits = cap * np.tanh(logits / cap)
        checkpoints = {f"l_out-{i}": out for i, out in enumerate(outputs)}
        return ReferenceOutput(final=logits, layers=tuple(outputs), checkpoints=checkpoints)

    def _layer(
        self,
        layer: int,
        x: np.ndarray,
        positions: np.ndarray,
        shared: dict[str, tuple[np.ndarray, np.ndarray]],
        per_layer: np.ndarray | None,
    ) -> np.ndarray:
        cfg = self.config
        eps = cfg.rms_norm_eps
        prefix = f"layers.{layer}."
        head = cfg.layer_head_dim(layer)
        kind = cfg.layer_types[layer]
        sliding = kind == SLIDING
        rope = cfg.rope_sliding if sliding else cfg.rope_full

        h = _rms_norm(x, self._weight(prefix + "input_layernorm.weight"), eps)
        q = (h @ self._weight(prefix + "self_attn.q_proj.weight").T).reshape(len(x), -1, head)
        q = _rope(_rms_norm(q, self._weight(prefix + "self_attn.q_norm.weight"), eps), positions, rope, head)
        if cfg.has_kv(layer):
            k_raw = (h @ self._weight(prefix + "self_attn.k_proj.weight").T).reshape(len(x), -1, head)
            if cfg.layer_shares_v_with_k(layer):
                v = k_raw
            else:
                v = (h @ self._weight(prefix + "self_attn.v_proj.weight").T).reshape(len(x), -1, head)
            k = _rope(_rms_norm(k_raw, self._weight(prefix + "self_attn.k_norm.weight"), eps), positions, rope, head)
            v = _rms_norm(v, None, eps)
            shared[kind] = (k, v)
        else:
            k, v = shared[kind]
        attention = _attention(q, k, v, cfg.sliding_window if sliding else None)
        out = attention.reshape(len(x), -1) @ self._weight(prefix + "self_attn.o_proj.weight").T
        x = x + _rms_norm(out, self._weight(prefix + "post_attention_layernorm.weight"), eps)

        mlp = self._mlp(prefix + "mlp.", _rms_norm(x, self._weight(prefix + "pre_feedforward_layernorm.weight"), eps))
        if cfg.enable_moe_block:
            mlp = _rms_norm(mlp, self._weight(prefix + "post_feedforward_layernorm_1.weight"), eps)
            experts = self._experts(prefix, x)
            mlp = mlp + _rms_norm(experts, self._weight(prefix + "post_feedforward_layernorm_2.weight"), eps)
        x = x + _rms_norm(mlp, self._weight(prefix + "post_feedforward_layernorm.weight"), eps)

        if per_layer is not None:
            gate = _gelu_tanh(x @ self._weight(prefix + "per_layer_input_gate.weight").T) * per_layer
            projected = gate @ self._weight(prefix + "per_layer_projection.weight").T
            x = x + _rms_norm(projected, self._weight(prefix + "post_per_layer_input_norm.weight"), eps)
        if self._has(prefix + "layer_scalar"):
            x = x * self._weight(prefix + "layer_scalar").reshape(-1)[0]
        return x

    def _mlp(self, prefix: str, h: np.ndarray) -> np.ndarray:
        gate = _gelu_tanh(h @ self._weight(prefix + "gate_proj.weight").T)
        return (gate * (h @ self._weight(prefix + "up_proj.weight").T)) @ self._weight(prefix + "down_proj.weight").T

    def _experts(self, prefix: str, x: np.ndarray) -> np.ndarray:
        cfg = self.config
        eps = cfg.rms_norm_eps
        routed = _rms_norm(x, None, eps) * self._weight(prefix + "router.scale") / math.sqrt(cfg.hidden_size)
        scores = routed @ self._weight(prefix + "router.proj.weight").T
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        h = _rms_norm(x, self._weight(prefix + "pre_feedforward_layernorm_2.weight"), eps)
        gate_up = self._weight(prefix + "experts.gate_up_proj")
        down = self._weight(prefix + "experts.down_proj")
        expert_scale = self._weight(prefix + "router.per_expert_scale")
        width = cfg.moe_intermediate_size
        out = np.zeros_like(x)
        for t in range(len(x)):
            chosen = np.argsort(-probs[t], kind="stable")[: cfg.top_k_experts]
            weights = probs[t, chosen] / probs[t, chosen].sum()
            for e, w in zip(chosen, weights, strict=True):
                projected = gate_up[e] @ h[t]
                hidden = _gelu_tanh(projected[:width]) * projected[width:]
                out[t] += w * expert_scale[e] * (down[e] @ hidden)
        return out

    def _per_layer_inputs(self, ids: np.ndarray, x: np.ndarray) -> np.ndarray:
        cfg = self.config
        layers, width = cfg.num_hidden_layers, cfg.hidden_size_per_layer_input
        table = self._rows("embed_tokens_per_layer.weight", ids).reshape(len(ids), layers, width) * math.sqrt(width)
        projected = (x @ self._weight("per_layer_model_projection.weight").T) / math.sqrt(cfg.hidden_size)
        projected = _rms_norm(
            projected.reshape(len(ids), layers, width),
            self._weight("per_layer_projection_norm.weight"),
            cfg.rms_norm_eps,
        )
        return (projected + table) / math.sqrt(2.0)

    def _logits(self, hidden: np.ndarray) -> np.ndarray:
        name = self._name("embed_tokens.weight")
        if not self.config.tie_word_embeddings and "lm_head.weight" in self.checkpoint.entries:
            name = "lm_head.weight"
        table = self.checkpoint.raw(name)
        parts = [self._float(name, table[i : i + _LOGIT_ROWS]) @ hidden for i in range(0, len(table), _LOGIT_ROWS)]
        return np.concatenate(parts)

    def _name(self, name: str) -> str:
        return self.config.tensor_prefix + name

    def _has(self, name: str) -> bool:
        return self._name(name) in self.checkpoint.entries

    def _weight(self, name: str) -> np.ndarray:
        full = self._name(name)
        return self._float(full, self.checkpoint.raw(full))

    def _rows(self, name: str, ids: np.ndarray) -> np.ndarray:
        full = self._name(name)
        return self._float(full, self.checkpoint.raw(full)[ids])

    def _float(self, name: str, data: np.ndarray) -> np.ndarray:
        values = bf16_to_float32(data) if self.checkpoint.is_bf16(name) else data
        return np.asarray(values, dtype=np.float64)


def _rms_norm(x: np.ndarray, weight: np.ndarray | None, eps: float) -> np.ndarray:
    normed = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return normed if weight is None else normed * weight


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _rope(x: np.ndarray, positions: np.ndarray, rope: RopeConfig, head: int) -> np.ndarray:
    """NeoX-style rotation of ``x`` (tokens x heads x head); proportional RoPE rotates the first
    pairs with frequencies over the full head size and leaves the other pairs unrotated."""
    if rope.rope_type == "proportional":
        rotary = head
        inv_freq = rope.theta ** (-np.arange(0, head, 2, dtype=np.float64) / head)
        inv_freq[int(head * rope.partial_rotary_factor) // 2 :] = 0.0
    else:
        rotary = int(head * rope.partial_rotary_factor)
        inv_freq = rope.theta ** (-np.arange(0, rotary, 2, dtype=np.float64) / rotary)
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    half = rotary // 2
    first, second = x[..., :half], x[..., half:rotary]
    rotated = np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return np.concatenate([rotated, x[..., rotary:]], axis=-1)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, window: int | None) -> np.ndarray:
    """Causal attention with scale 1 and grouped KV heads; ``window`` limits sliding layers."""
    tokens, heads, _ = q.shape
    group = heads // k.shape[1]
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    scores = np.einsum("qhd,khd->hqk", q, k)
    query = np.arange(tokens)[:, None]
    key = np.arange(tokens)[None, :]
    allowed = key <= query
    if window is not None:
        allowed &= query - key < window
    scores = np.where(allowed[None], scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", weights, v)
