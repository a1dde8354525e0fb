"""A pure-numpy ModernBERT forward pass (HF ``ModernBertModel`` + sentence-transformers pooling).

Used to verify conversions: it reads the same safetensors weights as the converter and
computes in float64, so it is an independent, exact reference for one unpadded sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ollama_core.descriptors import ReferenceOutput

from ollama_arch_modernbert.checkpoint import Checkpoint, backbone_names
from ollama_arch_modernbert.config import (
    GELU_ERF,
    GELU_TANH,
    POOLING_CLS,
    POOLING_LAST,
    RELU,
    SILU,
    ModernBertConfig,
    load_config,
    load_embedding_pipeline,
)

_erf = np.frompyfunc(math.erf, 1, 1)


class ModernBertReference:
    """The reference model for one checkpoint directory; :meth:`run` embeds one token sequence."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.config: ModernBertConfig = load_config(checkpoint_dir)
        if problems := self.config.unsupported_features():
            raise ValueError(f"the reference forward pass does not implement {', '.join(problems)}")
        self.pipeline = load_embedding_pipeline(checkpoint_dir, self.config)
        checkpoint = Checkpoint(checkpoint_dir)
        self.weights: dict[str, np.ndarray] = {
            name: checkpoint.read_float32(stored) for name, stored in backbone_names(checkpoint)
        }

    def run(self, token_ids: Sequence[int]) -> ReferenceOutput:
        """Embed ``token_ids`` (special tokens included).

        ``final`` is the pooled embedding, L2-normalised when the pipeline normalises;
        ``layers`` holds each layer's output hidden states (tokens x hidden, before the final norm);
        ``checkpoints`` the states llama.cpp names ``ffn_inp-<layer>`` and ``final_norm_out``.
        """
        cfg = self.config
        ids = np.asarray(token_ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("token_ids must be a non-empty sequence")
        if ids.min() < 0 or ids.max() >= cfg.vocab_size:
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
        x = self._norm(self.weights["embeddings.tok_embeddings.weight"][ids].astype(np.float64), "embeddings.norm")
        layers: list[np.ndarray] = []
        checkpoints: dict[str, np.ndarray] = {}
        for i in range(cfg.num_hidden_layers):
            x = self._layer(i, x, checkpoints)
            layers.append(x.astype(np.float32))
        hidden = self._norm(x, "final_norm")
        checkpoints["final_norm_out"] = hidden.astype(np.float32)
        pooled = self._pool(hidden)
        if self.pipeline.normalize:
            pooled = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return ReferenceOutput(final=pooled.astype(np.float32), layers=tuple(layers), checkpoints=checkpoints)

    def _layer(self, i: int, x: np.ndarray, checkpoints: dict[str, np.ndarray]) -> np.ndarray:
        """One encoder layer: (pre-norm) attention and GLU MLP, each with a residual.

        The state after the attention residual goes into ``checkpoints`` as ``ffn_inp-<i>``, the
        name llama.cpp's graph gives it.
        """
        cfg, w = self.config, self.weights
        prefix = f"layers.{i}."
        h = self._norm(x, prefix + "attn_norm") if prefix + "attn_norm.weight" in w else x
        sliding = cfg.sliding_layers[i]
        x = x + self._attention(h, w[prefix + "attn.Wqkv.weight"], sliding) @ w[prefix + "attn.Wo.weight"].T
        checkpoints[f"ffn_inp-{i}"] = x.astype(np.float32)
        up = self._norm(x, prefix + "mlp_norm") @ w[prefix + "mlp.Wi.weight"].T
        activated, gate = up[:, : cfg.intermediate_size], up[:, cfg.intermediate_size :]
        return x + (self._activation(activated) * gate) @ w[prefix + "mlp.Wo.weight"].T

    def _attention(self, h: np.ndarray, wqkv: np.ndarray, sliding: bool) -> np.ndarray:
        """Bidirectional multi-head attention with RoPE; sliding layers see ``±local_attention/2``."""
        cfg = self.config
        tokens, heads, dim = h.shape[0], cfg.num_attention_heads, cfg.head_dim
        q, k, v = (part.reshape(tokens, heads, dim).transpose(1, 0, 2) for part in np.split(h @ wqkv.T, 3, axis=1))
        theta = cfg.local_rope_theta if sliding else cfg.global_rope_theta
        q, k = _rope(q, theta), _rope(k, theta)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(dim)
        if sliding:
            positions = np.arange(tokens)
            far = np.abs(positions[:, None] - positions[None, :]) > cfg.local_attention // 2
            scores = np.where(far[None], -np.inf, scores)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        return (probs @ v).transpose(1, 0, 2).reshape(tokens, heads * dim)

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        """LayerNorm without bias."""
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.config.norm_eps) * self.weights[name + ".weight"]

    def _activation(self, x: np.ndarray) -> np.ndarray:
        """The GLU's activation (exact-erf GELU, tanh GELU, SiLU or ReLU)."""
        kind = self.config.hidden_activation
        if kind == GELU_ERF:
            return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))
        if kind == GELU_TANH:
            return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
        if kind == SILU:
            return x / (1.0 + np.exp(-x))
        if kind == RELU:
            return np.maximum(x, 0.0)
        raise ValueError(f"unknown activation {kind!r}")

    def _pool(self, hidden: np.ndarray) -> np.ndarray:
        """sentence-transformers pooling over every token, [CLS] and [SEP] included."""
        if self.pipeline.pooling == POOLING_CLS:
            return hidden[0]
        if self.pipeline.pooling == POOLING_LAST:
            return hidden[-1]
        return hidden.mean(axis=0)


def _rope(x: np.ndarray, theta: float) -> np.ndarray:
    """Rotary embedding, rotate-half (NeoX) layout over the full head width, positions 0..T-1."""
    dim = x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.arange(x.shape[-2], dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[..., : dim // 2], x[..., dim // 2 :]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
