"""The Gemma 4 text configuration, read from a checkpoint's ``config.json``.

Two spellings exist. Older configs give the full-attention head size and KV heads as
``global_head_dim`` / ``num_global_key_value_heads`` (and may describe the layer pattern with
``sliding_window_pattern``); transformers 5 drops those keys and writes ``per_layer_config``
(layer index -> ``head_dim`` and optional ``num_key_value_heads``) for every full-attention layer.
``Gemma4ForConditionalGeneration`` nests the text fields under ``text_config``.

:func:`check_convertible` refuses what llama.cpp cannot run faithfully, with a reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CAUSAL_LM = "Gemma4ForCausalLM"
CONDITIONAL_GENERATION = "Gemma4ForConditionalGeneration"
HF_ARCHITECTURES = (CAUSAL_LM, CONDITIONAL_GENERATION)

SLIDING = "sliding_attention"
FULL = "full_attention"

_DEFAULT_PATTERN = 6
_GELU_TANH = ("gelu_pytorch_tanh", "gelu_tanh")


class UnsupportedCheckpoint(ValueError):
    """The checkpoint is not a Gemma 4 text model this converter (or llama.cpp) can handle."""


@dataclass(frozen=True)
class RopeConfig:
    """RoPE of one attention type: HF ``rope_type``, base frequency and rotated fraction of the head."""

    rope_type: str
    theta: float
    partial_rotary_factor: float
    factor: float = 1.0


@dataclass(frozen=True)
class Gemma4TextConfig:
    """Everything the converter needs about the text model, with defaults applied."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    global_head_dim: int
    global_key_value_heads: int
    layer_types: tuple[str, ...]
    sliding_window: int
    rope_sliding: RopeConfig
    rope_full: RopeConfig
    final_logit_softcapping: float | None
    rms_norm_eps: float
    hidden_size_per_layer_input: int
    vocab_size_per_layer_input: int
    num_kv_shared_layers: int
    use_double_wide_mlp: bool
    attention_k_eq_v: bool
    enable_moe_block: bool
    num_experts: int
    top_k_experts: int
    moe_intermediate_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    hidden_activation: str
    attention_bias: bool
    use_bidirectional_attention: str | None

    @property
    def tensor_prefix(self) -> str:
        """Prefix of the text model's tensor names in the checkpoint."""
        return "model.language_model." if self.architecture == CONDITIONAL_GENERATION else "model."

    @property
    def first_shared_layer(self) -> int:
        """Index of the first layer that reuses the KV of an earlier layer."""
        return self.num_hidden_layers - self.num_kv_shared_layers

    def is_sliding(self, layer: int) -> bool:
        """Whether ``layer`` uses sliding-window attention."""
        return self.layer_types[layer] == SLIDING

    def has_kv(self, layer: int) -> bool:
        """Whether ``layer`` computes its own keys and values."""
        return layer < self.first_shared_layer

    def layer_head_dim(self, layer: int) -> int:
        """Attention head size of ``layer``."""
        return self.head_dim if self.is_sliding(layer) else self.global_head_dim

    def layer_kv_heads(self, layer: int) -> int:
        """Number of KV heads of ``layer``."""
        return self.num_key_value_heads if self.is_sliding(layer) else self.global_key_value_heads

    def layer_shares_v_with_k(self, layer: int) -> bool:
        """Whether ``layer`` has no ``v_proj`` and uses its key projection as values."""
        return self.attention_k_eq_v and not self.is_sliding(layer)

    def layer_ffn_length(self, layer: int) -> int:
        """Width of the dense MLP of ``layer`` (doubled on KV-shared layers with ``use_double_wide_mlp``)."""
        if self.use_double_wide_mlp and not self.has_kv(layer):
            return 2 * self.intermediate_size
        return self.intermediate_size


def read_config(source: Path) -> Gemma4TextConfig:
    """Read ``config.json`` from a checkpoint directory (either spelling, either architecture)."""
    raw = json.loads((source / "config.json").read_text(encoding="utf-8"))
    return parse_config(raw)


def parse_config(raw: Mapping[str, Any]) -> Gemma4TextConfig:
    """Build the text configuration from a parsed ``config.json``."""
    architectures = [a for a in raw.get("architectures") or [] if a in HF_ARCHITECTURES]
    if not architectures:
        named = raw.get("architectures")
        raise UnsupportedCheckpoint(
            f"config.json architectures {named!r} name no Gemma 4 model ({', '.join(HF_ARCHITECTURES)})"
        )
    architecture = architectures[0]
    nested = raw.get("text_config")
    text: Mapping[str, Any] = nested if isinstance(nested, Mapping) else raw

    layers = int(_required(text, "num_hidden_layers"))
    layer_types = _layer_types(text, layers)
    head_dim = int(text.get("head_dim", 256))
    kv_heads = int(_required(text, "num_key_value_heads"))
    k_eq_v = bool(text.get("attention_k_eq_v", False))
    global_head_dim, global_kv_heads = _full_attention_shape(text, layer_types, head_dim, kv_heads, k_eq_v)
    rope_sliding, rope_full = _rope(text)
    enable_moe = bool(text.get("enable_moe_block", False))
    softcap = text.get("final_logit_softcapping")
    per_layer_width = text.get("hidden_size_per_layer_input", 256)
    vocab_size = int(_required(text, "vocab_size"))
    tie = raw.get("tie_word_embeddings", text.get("tie_word_embeddings", True))

    return Gemma4TextConfig(
        architecture=architecture,
        vocab_size=vocab_size,
        hidden_size=int(_required(text, "hidden_size")),
        intermediate_size=int(_required(text, "intermediate_size")),
        num_hidden_layers=layers,
        num_attention_heads=int(_required(text, "num_attention_heads")),
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        global_head_dim=global_head_dim,
        global_key_value_heads=global_kv_heads,
        layer_types=layer_types,
        sliding_window=int(_required(text, "sliding_window")),
        rope_sliding=rope_sliding,
        rope_full=rope_full,
        final_logit_softcapping=float(softcap) if softcap else None,
        rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)),
        hidden_size_per_layer_input=int(per_layer_width or 0),
        vocab_size_per_layer_input=int(text.get("vocab_size_per_layer_input", 262144) or 0),
        num_kv_shared_layers=int(text.get("num_kv_shared_layers", 0) or 0),
        use_double_wide_mlp=bool(text.get("use_double_wide_mlp", False)),
        attention_k_eq_v=k_eq_v,
        enable_moe_block=enable_moe,
        num_experts=int(text.get("num_experts") or 0) if enable_moe else 0,
        top_k_experts=int(text.get("top_k_experts") or 0) if enable_moe else 0,
        moe_intermediate_size=int(text.get("moe_intermediate_size") or text.get("expert_intermediate_size") or 0)
        if enable_moe
        else 0,
        max_position_embeddings=int(text.get("max_position_embeddings", 131072)),
        tie_word_embeddings=bool(tie),
        hidden_activation=str(text.get("hidden_activation") or text.get("hidden_act") or "gelu_pytorch_tanh"),
        attention_bias=bool(text.get("attention_bias", False)),
        use_bidirectional_attention=text.get("use_bidirectional_attention"),
    )


def check_convertible(config: Gemma4TextConfig) -> None:
    """Raise :class:`UnsupportedCheckpoint` for anything the vendored llama.cpp would run wrongly or abort on."""
    if config.hidden_activation not in _GELU_TANH:
        raise UnsupportedCheckpoint(
            f"hidden_activation {config.hidden_activation!r}: llama.cpp runs Gemma 4 with tanh GELU only"
        )
    if config.attention_bias:
        raise UnsupportedCheckpoint("attention_bias is true: llama.cpp's Gemma 4 graph has no attention biases")
    if config.use_bidirectional_attention == "all":
        raise UnsupportedCheckpoint(
            "use_bidirectional_attention 'all' is not supported by llama.cpp (text stays causal)"
        )
    _check_rope(config)
    if config.hidden_size_per_layer_input and config.vocab_size_per_layer_input < 1:
        raise UnsupportedCheckpoint("per-layer embeddings are enabled but vocab_size_per_layer_input is 0")
    if config.enable_moe_block and not (config.num_experts and config.top_k_experts and config.moe_intermediate_size):
        raise UnsupportedCheckpoint("enable_moe_block needs num_experts, top_k_experts and moe_intermediate_size")
    _check_kv_sharing(config)


def _required(text: Mapping[str, Any], key: str) -> Any:
    if text.get(key) is None:
        raise UnsupportedCheckpoint(f"config.json has no {key!r}")
    return text[key]


def _layer_types(text: Mapping[str, Any], layers: int) -> tuple[str, ...]:
    declared = text.get("layer_types")
    if declared:
        types = [str(t) for t in declared]
        if len(types) != layers:
            raise UnsupportedCheckpoint(f"layer_types has {len(types)} entries for {layers} layers")
        unknown = sorted({t for t in types if t not in (SLIDING, FULL)})
        if unknown:
            raise UnsupportedCheckpoint(f"unknown layer types {unknown}")
    else:
        pattern = int(text.get("sliding_window_pattern") or text.get("_sliding_window_pattern") or _DEFAULT_PATTERN)
        types = [FULL if (i + 1) % pattern == 0 else SLIDING for i in range(layers)]
    if types[-1] != FULL:
        logger.info("the last layer is always full attention in Gemma 4; overriding layer_types[-1]")
        types[-1] = FULL
    return tuple(types)


def _full_attention_shape(
    text: Mapping[str, Any], layer_types: tuple[str, ...], head_dim: int, kv_heads: int, k_eq_v: bool
) -> tuple[int, int]:
    """Head size and KV heads of full-attention layers from either config spelling."""
    full_layers = [i for i, t in enumerate(layer_types) if t == FULL]
    per_layer = text.get("per_layer_config") or {}
    head_dims: set[int] = set()
    kv_overrides: set[int] = set()
    for key, entry in per_layer.items():
        layer = int(key)
        if layer >= len(layer_types) or not isinstance(entry, Mapping):
            continue
        if layer_types[layer] == SLIDING:
            if int(entry.get("head_dim", head_dim)) != head_dim:
                raise UnsupportedCheckpoint(
                    f"layer {layer}: per-layer sliding head_dim differs from head_dim {head_dim}"
                )
            continue
        if "head_dim" in entry:
            head_dims.add(int(entry["head_dim"]))
        if "num_key_value_heads" in entry:
            kv_overrides.add(int(entry["num_key_value_heads"]))
    if len(head_dims) > 1 or len(kv_overrides) > 1:
        raise UnsupportedCheckpoint("full-attention layers with different head shapes are not supported by llama.cpp")

    global_head_dim = text.get("global_head_dim")
    if global_head_dim is None:
        global_head_dim = head_dims.pop() if head_dims else 512
    global_kv = text.get("num_global_key_value_heads")
    if global_kv is None:
        global_kv = kv_overrides.pop() if kv_overrides else None
    if not full_layers:
        return int(global_head_dim), kv_heads
    return int(global_head_dim), int(global_kv) if (k_eq_v and global_kv) else kv_heads


def _rope(text: Mapping[str, Any]) -> tuple[RopeConfig, RopeConfig]:
    params = text.get("rope_parameters") or {}
    if not isinstance(params, Mapping):
        params = {}

    def one(layer_type: str, default: RopeConfig) -> RopeConfig:
        entry = params.get(layer_type)
        if not isinstance(entry, Mapping):
            return default
        return RopeConfig(
            rope_type=str(entry.get("rope_type", "default")),
            theta=float(entry.get("rope_theta", default.theta)),
            partial_rotary_factor=float(entry.get("partial_rotary_factor", 1.0)),
            factor=float(entry.get("factor", 1.0) or 1.0),
        )

    sliding_default = RopeConfig("default", float(text.get("rope_local_base_freq", 10_000.0)), 1.0)
    full_default = RopeConfig(
        "proportional", float(text.get("rope_theta", 1_000_000.0)), float(text.get("partial_rotary_factor", 0.25))
    )
    return one(SLIDING, sliding_default), one(FULL, full_default)


def _check_rope(config: Gemma4TextConfig) -> None:
    sliding, full = config.rope_sliding, config.rope_full
    if sliding.rope_type != "default" or sliding.factor != 1.0:
        raise UnsupportedCheckpoint(
            f"sliding-layer rope_type {sliding.rope_type!r} (factor {sliding.factor}) is not supported"
        )
    if full.rope_type not in ("proportional", "default") or full.factor != 1.0:
        raise UnsupportedCheckpoint(f"full-layer rope_type {full.rope_type!r} (factor {full.factor}) is not supported")
    rotated_sliding = config.head_dim * sliding.partial_rotary_factor
    rotated_full = config.global_head_dim * full.partial_rotary_factor
    for label, rotated in (("sliding", rotated_sliding), ("full", rotated_full)):
        if rotated != int(rotated) or int(rotated) % 2 or rotated <= 0:
            raise UnsupportedCheckpoint(
                f"{label}-layer partial_rotary_factor gives {rotated} rotated dims, not an even whole number"
            )


def _check_kv_sharing(config: Gemma4TextConfig) -> None:
    """llama.cpp reuses KV by position: shared sliding layers read layer ``n-2``, full ones ``n-1``
    (``n`` = first shared layer), and asserts ``n >= 2``. HF reuses the last non-shared layer of
    the same type. Refuse layouts where the two differ, instead of letting llama.cpp abort."""
    shared = config.num_kv_shared_layers
    if shared == 0:
        return
    first = config.first_shared_layer
    if shared < 0 or first < 2:
        raise UnsupportedCheckpoint(
            f"num_kv_shared_layers={shared} leaves {first} layers with their own KV; llama.cpp needs at least 2"
        )
    for layer in range(first, config.num_hidden_layers):
        kind = config.layer_types[layer]
        hf_source = max((i for i in range(first) if config.layer_types[i] == kind), default=None)
        llama_source = first - (2 if kind == SLIDING else 1)
        if hf_source != llama_source:
            found = ", ".join(config.layer_types[first - 2 : first])
            raise UnsupportedCheckpoint(
                f"KV-sharing layout not supported by llama.cpp: layer {layer} ({kind}) reuses the KV of layer "
                f"{hf_source} in transformers, but llama.cpp would read layer {llama_source}. llama.cpp requires "
                f"the last two layers before the shared ones (layers {first - 2} and {first - 1}) to be "
                f"[sliding_attention, full_attention]; they are [{found}]"
            )
