"""HF safetensors Gemma 4 checkpoint -> text GGUF for llama.cpp (``general.architecture`` = ``gemma4``).

Covers every text variant: per-layer embeddings and KV sharing (E2B/E4B), fused ``gate_up``
MoE experts (26B-A4B), dense (31B), and the text part of ``Gemma4ForConditionalGeneration``,
whose audio and vision towers go to a separate projector GGUF (:mod:`ollama_arch_gemma4.projector`).
Every tensor's presence and shape is checked against the configuration before anything is
written; the data is then streamed tensor by tensor (in slices of large tensors) from
memory-mapped safetensors into the GGUF.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from ollama_core.descriptors import ConversionResult, ProgressCallback

from ollama_arch_gemma4.chat_templates import bundled_template, variant_for
from ollama_arch_gemma4.checkpoint import Checkpoint
from ollama_arch_gemma4.config import (
    CONDITIONAL_GENERATION,
    Gemma4TextConfig,
    UnsupportedCheckpoint,
    check_convertible,
    read_config,
)
from ollama_arch_gemma4.gguf_stream import PlannedTensor, map_sources, write_gguf
from ollama_arch_gemma4.projector import ARCH as PROJECTOR_ARCH
from ollama_arch_gemma4.projector import plan_projector
from ollama_arch_gemma4.tokenizer import tokenizer_metadata

logger = logging.getLogger(__name__)

ARCH = "gemma4"
_Q = gguf.GGMLQuantizationType

_FILE_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "F32": (_Q.F32, gguf.LlamaFileType.ALL_F32),
    "F16": (_Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "BF16": (_Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}

_GLOBAL_TENSORS = {
    "embed_tokens.weight": "token_embd.weight",
    "embed_tokens_per_layer.weight": "per_layer_token_embd.weight",
    "per_layer_model_projection.weight": "per_layer_model_proj.weight",
    "per_layer_projection_norm.weight": "per_layer_proj_norm.weight",
    "norm.weight": "output_norm.weight",
}
_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "per_layer_input_gate.weight": "inp_gate.weight",
    "per_layer_projection.weight": "proj.weight",
    "post_per_layer_input_norm.weight": "post_norm.weight",
    "layer_scalar": "layer_output_scale.weight",
    "router.proj.weight": "ffn_gate_inp.weight",
    "router.scale": "ffn_gate_inp.scale",
    "router.per_expert_scale": "ffn_down_exps.scale",
    "experts.gate_up_proj": "ffn_gate_up_exps.weight",
    "experts.down_proj": "ffn_down_exps.weight",
    "pre_feedforward_layernorm_2.weight": "pre_ffw_norm_2.weight",
    "post_feedforward_layernorm_1.weight": "post_ffw_norm_1.weight",
    "post_feedforward_layernorm_2.weight": "post_ffw_norm_2.weight",
}
_KV_TENSORS = frozenset({"attn_k.weight", "attn_v.weight", "attn_k_norm.weight"})
_OPTIONAL_TENSORS = ("layer_output_scale.weight",)
_TOWER_PREFIXES = ("model.audio_tower.", "model.vision_tower.", "model.embed_audio.", "model.embed_vision.")
_LAYER_NAME = re.compile(r"layers\.(\d+)\.(.+)")
_ROW_TRUNCATED = frozenset({"token_embd.weight", "per_layer_token_embd.weight", "output.weight"})
_UNROTATED = 1e30


class Gemma4Converter:
    """Converts a Gemma 4 HF checkpoint directory into a text GGUF and, with towers, a projector GGUF."""

    def convert(
        self, source: Path, output_dir: Path, *, file_type: str, progress: ProgressCallback
    ) -> ConversionResult:
        """Write ``model-<type>.gguf`` (and ``mmproj-<type>.gguf`` for audio/vision towers) under ``output_dir``.

        ``file_type`` is F32, F16 or BF16.
        """
        key = file_type.upper()
        if key not in _FILE_TYPES:
            raise ValueError(f"unsupported file type {file_type!r}; Gemma 4 converts to {', '.join(_FILE_TYPES)}")
        matrix_type, llama_file_type = _FILE_TYPES[key]

        progress("reading Gemma 4 checkpoint")
        config = read_config(source)
        check_convertible(config)
        tokenizer = tokenizer_metadata(source)
        notes: list[str] = []
        if "tokenizer.chat_template" not in tokenizer:
            variant = variant_for(config.hidden_size_per_layer_input)
            tokenizer["tokenizer.chat_template"] = bundled_template(variant)
            notes.append(f"the checkpoint has no chat template; wrote the bundled {variant}-model Gemma 4 template")
        checkpoint = Checkpoint(source)
        plan = plan_tensors(config, checkpoint, len(tokenizer["tokenizer.ggml.tokens"]), matrix_type)
        projector = plan_projector(source, config, checkpoint, matrix_type, llama_file_type)
        metadata = {
            "general.name": source.resolve().name,
            "general.file_type": int(llama_file_type),
            "general.quantization_version": gguf.GGML_QUANT_VERSION,
            **gguf_metadata(config),
            **tokenizer,
        }

        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / f"model-{key.lower()}.gguf"
        outputs: list[tuple[Path, str, dict[str, Any], list[PlannedTensor]]] = [(path, ARCH, metadata, plan)]
        projector_path = None
        if projector is not None:
            projector_path = output_dir / f"mmproj-{key.lower()}.gguf"
            outputs.append((projector_path, PROJECTOR_ARCH, projector.metadata, projector.tensors))
            notes.append(f"multimodal projector ({projector.modalities}) written to {projector_path.name}")
        partials = [target.with_name(target.name + ".partial") for target, *_ in outputs]
        try:
            for (_, architecture, meta, tensors), partial in zip(outputs, partials, strict=True):
                write_gguf(partial, architecture, meta, tensors, checkpoint, progress)
            for (target, *_), partial in zip(outputs, partials, strict=True):
                os.replace(partial, target)
                size = target.stat().st_size
                progress("wrote " + target.name, completed=size, total=size)
        finally:
            for partial in partials:
                partial.unlink(missing_ok=True)
        return ConversionResult(model_path=path, projector_path=projector_path, notes=tuple(notes))


def plan_tensors(
    config: Gemma4TextConfig, checkpoint: Checkpoint, n_vocab: int, matrix_type: gguf.GGMLQuantizationType
) -> list[PlannedTensor]:
    """Map, check and order every GGUF tensor; raise :class:`UnsupportedCheckpoint` on any mismatch."""
    expected = expected_shapes(config, n_vocab)
    sources, problems = map_sources(
        checkpoint.entries, lambda name: _target_name(config, name), expected, lambda t: t.endswith(_OPTIONAL_TENSORS)
    )
    for target, name in sources.items():
        stored = checkpoint.shape(name) or (1,)
        want = expected[target]
        if target in _ROW_TRUNCATED:
            if stored[1:] != want[1:] or stored[0] < want[0]:
                problems.append(f"{name}: shape {list(stored)}, expected at least {want[0]} rows of {list(want[1:])}")
        elif stored != want:
            problems.append(f"{name}: shape {list(stored)}, expected {list(want)}")
    if problems:
        raise UnsupportedCheckpoint("checkpoint does not match its config.json: " + "; ".join(problems))

    planned = [
        PlannedTensor(target, expected[target], _tensor_type(target, expected[target], matrix_type), source=name)
        for target, name in sources.items()
    ]
    planned.append(
        PlannedTensor("rope_freqs.weight", (config.global_head_dim // 2,), _Q.F32, values=rope_freqs(config))
    )
    return sorted(planned, key=lambda t: _order(t.name))


def expected_shapes(config: Gemma4TextConfig, n_vocab: int) -> dict[str, tuple[int, ...]]:
    """Numpy-order shape of every tensor taken from the checkpoint, by GGUF name."""
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    width = config.hidden_size_per_layer_input
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (n_vocab, hidden),
        "output_norm.weight": (hidden,),
    }
    if not config.tie_word_embeddings:
        shapes["output.weight"] = (n_vocab, hidden)
    if width:
        shapes["per_layer_token_embd.weight"] = (n_vocab, layers * width)
        shapes["per_layer_model_proj.weight"] = (layers * width, hidden)
        shapes["per_layer_proj_norm.weight"] = (width,)
    for i in range(layers):
        head = config.layer_head_dim(i)
        q_width = config.num_attention_heads * head
        kv_width = config.layer_kv_heads(i) * head
        ffn = config.layer_ffn_length(i)
        layer: dict[str, tuple[int, ...]] = {
            "attn_norm.weight": (hidden,),
            "attn_q.weight": (q_width, hidden),
            "attn_output.weight": (hidden, q_width),
            "attn_q_norm.weight": (head,),
            "post_attention_norm.weight": (hidden,),
            "ffn_norm.weight": (hidden,),
            "post_ffw_norm.weight": (hidden,),
            "ffn_gate.weight": (ffn, hidden),
            "ffn_up.weight": (ffn, hidden),
            "ffn_down.weight": (hidden, ffn),
            "layer_output_scale.weight": (1,),
        }
        if config.has_kv(i):
            layer["attn_k.weight"] = (kv_width, hidden)
            layer["attn_k_norm.weight"] = (head,)
            if not config.layer_shares_v_with_k(i):
                layer["attn_v.weight"] = (kv_width, hidden)
        if width:
            layer["inp_gate.weight"] = (width, hidden)
            layer["proj.weight"] = (hidden, width)
            layer["post_norm.weight"] = (hidden,)
        if config.enable_moe_block:
            experts = config.num_experts
            expert_ffn = config.moe_intermediate_size
            layer["ffn_gate_inp.weight"] = (experts, hidden)
            layer["ffn_gate_inp.scale"] = (hidden,)
            layer["ffn_down_exps.scale"] = (experts,)
            layer["ffn_gate_up_exps.weight"] = (experts, 2 * expert_ffn, hidden)
            layer["ffn_down_exps.weight"] = (experts, hidden, expert_ffn)
            layer["pre_ffw_norm_2.weight"] = (hidden,)
            layer["post_ffw_norm_1.weight"] = (hidden,)
            layer["post_ffw_norm_2.weight"] = (hidden,)
        shapes.update({f"blk.{i}.{name}": shape for name, shape in layer.items()})
    return shapes


def rope_freqs(config: Gemma4TextConfig) -> np.ndarray:
    """Frequency factors of full-attention layers.

    "Proportional" RoPE rotates the first ``partial_rotary_factor * head_dim / 2`` frequency
    pairs, with frequencies over the FULL head size, and leaves the rest unrotated: factor 1 for
    rotated pairs and a huge factor (frequency ~0) for the others. Default RoPE with a partial
    factor is expressed by a smaller rotary dimension instead, so all factors are 1.
    """
    pairs = config.global_head_dim // 2
    factors = np.ones(pairs, dtype=np.float32)
    if config.rope_full.rope_type == "proportional":
        factors[int(config.global_head_dim * config.rope_full.partial_rotary_factor) // 2 :] = _UNROTATED
    return factors


def gguf_metadata(config: Gemma4TextConfig) -> dict[str, Any]:
    """The ``gemma4.*`` model keys (tokenizer keys excluded), in the value types llama.cpp reads."""
    layers = range(config.num_hidden_layers)
    ffn = [config.layer_ffn_length(i) for i in layers]
    kv_heads = [config.layer_kv_heads(i) for i in layers]
    full = config.rope_full
    rot_full = config.global_head_dim
    if full.rope_type != "proportional":
        rot_full = int(config.global_head_dim * full.partial_rotary_factor)
    meta: dict[str, Any] = {
        f"{ARCH}.context_length": config.max_position_embeddings,
        f"{ARCH}.embedding_length": config.hidden_size,
        f"{ARCH}.block_count": config.num_hidden_layers,
        f"{ARCH}.feed_forward_length": ffn[0] if len(set(ffn)) == 1 else ffn,
        f"{ARCH}.attention.head_count": config.num_attention_heads,
        f"{ARCH}.attention.head_count_kv": kv_heads[0] if len(set(kv_heads)) == 1 else kv_heads,
        f"{ARCH}.attention.key_length": config.global_head_dim,
        f"{ARCH}.attention.value_length": config.global_head_dim,
        f"{ARCH}.attention.key_length_swa": config.head_dim,
        f"{ARCH}.attention.value_length_swa": config.head_dim,
        f"{ARCH}.attention.layer_norm_rms_epsilon": config.rms_norm_eps,
        f"{ARCH}.attention.sliding_window": config.sliding_window,
        f"{ARCH}.attention.sliding_window_pattern": [config.is_sliding(i) for i in layers],
        f"{ARCH}.attention.shared_kv_layers": config.num_kv_shared_layers,
        f"{ARCH}.embedding_length_per_layer_input": config.hidden_size_per_layer_input,
        f"{ARCH}.rope.freq_base": full.theta,
        f"{ARCH}.rope.freq_base_swa": config.rope_sliding.theta,
        f"{ARCH}.rope.dimension_count": rot_full,
        f"{ARCH}.rope.dimension_count_swa": int(config.head_dim * config.rope_sliding.partial_rotary_factor),
    }
    if config.final_logit_softcapping:
        meta[f"{ARCH}.final_logit_softcapping"] = config.final_logit_softcapping
    if config.enable_moe_block:
        meta[f"{ARCH}.expert_count"] = config.num_experts
        meta[f"{ARCH}.expert_used_count"] = config.top_k_experts
        meta[f"{ARCH}.expert_feed_forward_length"] = config.moe_intermediate_size
    return meta


def _target_name(config: Gemma4TextConfig, name: str) -> str | None:
    """GGUF name for a checkpoint tensor; ``None`` to skip it; the name itself when unknown."""
    if name == "lm_head.weight":
        return None if config.tie_word_embeddings else "output.weight"
    if config.architecture == CONDITIONAL_GENERATION and name.startswith(_TOWER_PREFIXES):
        return None
    prefix = config.tensor_prefix
    if not name.startswith(prefix):
        return name
    rest = name[len(prefix) :]
    if rest in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[rest]
    match = _LAYER_NAME.fullmatch(rest)
    if match is None or match[2] not in _LAYER_TENSORS:
        return name
    layer, target = int(match[1]), _LAYER_TENSORS[match[2]]
    if target in _KV_TENSORS and layer < config.num_hidden_layers and not config.has_kv(layer):
        logger.debug("skipping %s: layer %d reuses the KV of an earlier layer", name, layer)
        return None
    return f"blk.{layer}.{target}"


def _tensor_type(
    name: str, shape: tuple[int, ...], matrix_type: gguf.GGMLQuantizationType
) -> gguf.GGMLQuantizationType:
    """F32 for vectors, norms, scales and the router; the chosen type for other matrices."""
    if len(shape) < 2 or name.endswith(("norm.weight", ".scale")) or ".ffn_gate_inp." in name:
        return _Q.F32
    return matrix_type


def _order(name: str) -> tuple[int, int, str]:
    match = re.match(r"blk\.(\d+)\.(.+)", name)
    if match is None:
        return (0, 0, name)
    return (1, int(match[1]), match[2])
