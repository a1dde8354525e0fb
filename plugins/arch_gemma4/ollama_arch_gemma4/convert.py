"""HF safetensors Gemma 4 checkpoint -> text GGUF for llama.cpp (``general.architecture`` = ``gemma4``).

Covers every text variant: per-layer embeddings and KV sharing (E2B/E4B), fused ``gate_up``
MoE experts (26B-A4B), dense (31B), and the text part of ``Gemma4ForConditionalGeneration``
(audio and vision towers are left to a projector converter). Every tensor's presence and shape is
checked against the configuration before anything is written; the data is then streamed tensor
by tensor (in slices of large tensors) from memory-mapped safetensors into the GGUF.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from ollama_core.descriptors import ConversionResult, ProgressCallback

from ollama_arch_gemma4.chat_templates import bundled_template, variant_for
from ollama_arch_gemma4.checkpoint import Checkpoint, bf16_to_float32, float32_to_bf16
from ollama_arch_gemma4.config import (
    CONDITIONAL_GENERATION,
    Gemma4TextConfig,
    UnsupportedCheckpoint,
    check_convertible,
    read_config,
)
from ollama_arch_gemma4.tokenizer import tokenizer_metadata

logger = logging.getLogger(__name__)

ARCH = "gemma4"
_Q = gguf.GGMLQuantizationType

_FILE_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "F32": (_Q.F32, gguf.LlamaFileType.ALL_F32),
    "F16": (_Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "BF16": (_Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}
_ITEM_SIZE = {_Q.F32: 4, _Q.F16: 2, _Q.BF16: 2}
_INFO_DTYPE: dict[gguf.GGMLQuantizationType, np.dtype[Any]] = {
    _Q.F32: np.dtype(np.float32),
    _Q.F16: np.dtype(np.float16),
    _Q.BF16: np.dtype(np.uint16),
}
_CHUNK_BYTES = 64 * 1024 * 1024

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


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: its name, numpy-order shape, GGML type and where its data comes from."""

    name: str
    shape: tuple[int, ...]
    ggml_type: gguf.GGMLQuantizationType
    source: str | None = None
    values: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Size of the tensor data in the GGUF."""
        return int(np.prod(self.shape, dtype=np.int64)) * _ITEM_SIZE[self.ggml_type]


class Gemma4Converter:
    """Converts a Gemma 4 HF checkpoint directory into a text GGUF."""

    def convert(
        self, source: Path, output_dir: Path, *, file_type: str, progress: ProgressCallback
    ) -> ConversionResult:
        """Write ``model-<file_type>.gguf`` under ``output_dir`` (``file_type``: F32, F16 or BF16)."""
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
        if config.architecture == CONDITIONAL_GENERATION:
            notes.append("text model only: the audio and vision towers are not part of this GGUF")

        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / f"model-{key.lower()}.gguf"
        partial = path.with_name(path.name + ".partial")
        try:
            _write_gguf(partial, source.resolve().name, config, tokenizer, plan, checkpoint, llama_file_type, progress)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        size = path.stat().st_size
        progress("wrote " + path.name, completed=size, total=size)
        return ConversionResult(model_path=path, notes=tuple(notes))


def plan_tensors(
    config: Gemma4TextConfig, checkpoint: Checkpoint, n_vocab: int, matrix_type: gguf.GGMLQuantizationType
) -> list[PlannedTensor]:
    """Map, check and order every GGUF tensor; raise :class:`UnsupportedCheckpoint` on any mismatch."""
    expected = expected_shapes(config, n_vocab)
    sources: dict[str, str] = {}
    unexpected: list[str] = []
    for name in checkpoint.entries:
        target = _target_name(config, name)
        if target is None:
            continue
        if target not in expected or target in sources:
            unexpected.append(name)
            continue
        sources[target] = name
    missing = [t for t in expected if t not in sources and not t.endswith(_OPTIONAL_TENSORS)]
    problems: list[str] = []
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(sorted(unexpected)[:8])}")
    if missing:
        problems.append(f"missing tensors: {', '.join(sorted(missing)[:8])}")
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


def _add_metadata(writer: gguf.GGUFWriter, key: str, value: Any) -> None:
    """Write one KV pair: ints as uint32, floats as float32, bools, strings, lists as arrays."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, list):
        writer.add_array(key, value)
    else:
        raise TypeError(f"{key}: cannot write a {type(value).__name__} to GGUF")


def _write_gguf(
    path: Path,
    name: str,
    config: Gemma4TextConfig,
    tokenizer: Mapping[str, Any],
    plan: list[PlannedTensor],
    checkpoint: Checkpoint,
    file_type: gguf.LlamaFileType,
    progress: ProgressCallback,
) -> None:
    writer = gguf.GGUFWriter(None, ARCH)
    writer.add_name(name)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in {**gguf_metadata(config), **tokenizer}.items():
        _add_metadata(writer, key, value)
    for tensor in plan:
        writer.add_tensor_info(
            tensor.name, tensor.shape, _INFO_DTYPE[tensor.ggml_type], tensor.nbytes, raw_dtype=tensor.ggml_type
        )
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()

    total = sum(t.nbytes for t in plan)
    done = 0
    alignment = writer.data_alignment
    with path.open("ab") as out:
        _pad(out, alignment)
        for tensor in plan:
            progress(f"converting {tensor.name}", completed=done, total=total)
            written = 0
            for chunk in _tensor_chunks(tensor, checkpoint):
                chunk.tofile(out)
                written += chunk.nbytes
            if written != tensor.nbytes:
                raise RuntimeError(f"{tensor.name}: wrote {written} bytes, expected {tensor.nbytes}")
            _pad(out, alignment)
            done += tensor.nbytes
    progress("converted tensors", completed=total, total=total)


def _pad(out: Any, alignment: int) -> None:
    remainder = out.tell() % alignment
    if remainder:
        out.write(b"\x00" * (alignment - remainder))


def _tensor_chunks(tensor: PlannedTensor, checkpoint: Checkpoint) -> Iterator[np.ndarray]:
    """The tensor's data in the GGUF type, in slices along the first axis."""
    if tensor.values is not None:
        yield _cast(tensor.values, False, tensor.ggml_type)
        return
    assert tensor.source is not None
    data = checkpoint.raw(tensor.source).reshape(-1, *tensor.shape[1:])[: tensor.shape[0]]
    bf16 = checkpoint.is_bf16(tensor.source)
    row_bytes = max(1, int(np.prod(tensor.shape[1:], dtype=np.int64)) * 4)
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, len(data), step):
        yield _cast(data[start : start + step], bf16, tensor.ggml_type)


def _cast(data: np.ndarray, bf16: bool, target: gguf.GGMLQuantizationType) -> np.ndarray:
    if target == _Q.BF16 and bf16:
        return np.ascontiguousarray(data)
    values = bf16_to_float32(data) if bf16 else np.asarray(data, dtype=np.float32)
    if target == _Q.F32:
        return np.ascontiguousarray(values)
    if target == _Q.F16:
        return values.astype(np.float16)
    return float32_to_bf16(values)


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
