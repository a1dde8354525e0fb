"""ModernBERT safetensors checkpoint to a GGUF that llama.cpp's ``modern-bert`` architecture loads.

Tensors are streamed: the GGUF header and tensor table are written from the safetensors
headers alone, then each tensor is read, converted and written before the next one is read.

Besides llama.cpp's own keys the GGUF carries :data:`NORMALIZE_KEY` (bool): whether the
sentence-transformers pipeline ends with a ``Normalize`` module, i.e. whether served
embeddings must be L2-normalised (llama.cpp has no key for this).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from ollama_core.descriptors import ConversionResult, ProgressCallback

from ollama_arch_modernbert.checkpoint import Checkpoint, backbone_names
from ollama_arch_modernbert.config import (
    POOLING_CLS,
    POOLING_LAST,
    POOLING_MEAN,
    RELU,
    SILU,
    EmbeddingPipeline,
    ModernBertConfig,
    load_config,
    load_embedding_pipeline,
)
from ollama_arch_modernbert.tokenizer import tokenizer_metadata

logger = logging.getLogger(__name__)

ARCH = "modern-bert"
NORMALIZE_KEY = "ollama.embedding.normalize"
"""GGUF bool key: L2-normalise pooled embeddings (the sentence-transformers ``Normalize`` module)."""
OUTPUT_NAME = "model.gguf"

FILE_TYPES: dict[str, gguf.LlamaFileType] = {
    "F32": gguf.LlamaFileType.ALL_F32,
    "F16": gguf.LlamaFileType.MOSTLY_F16,
    "BF16": gguf.LlamaFileType.MOSTLY_BF16,
}
_GGML_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, np.dtype]] = {
    "F32": (gguf.GGMLQuantizationType.F32, np.dtype(np.float32)),
    "F16": (gguf.GGMLQuantizationType.F16, np.dtype(np.float16)),
    "BF16": (gguf.GGMLQuantizationType.BF16, np.dtype(np.uint16)),
}
POOLING_TYPES: dict[str, gguf.PoolingType] = {
    POOLING_MEAN: gguf.PoolingType.MEAN,
    POOLING_CLS: gguf.PoolingType.CLS,
    POOLING_LAST: gguf.PoolingType.LAST,
}
_GGUF_ACTIVATIONS = {SILU: "silu", RELU: "relu"}
"""llama.cpp ``hidden_activation`` names; both GELU variants map to its (tanh) GeGLU, ``gelu``."""

_GLOBAL_TENSORS = {
    "embeddings.tok_embeddings.weight": "token_embd.weight",
    "embeddings.norm.weight": "token_embd_norm.weight",
    "final_norm.weight": "output_norm.weight",
}
_LAYER_TENSORS = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.Wqkv.weight": "attn_qkv.weight",
    "attn.Wo.weight": "attn_output.weight",
    "mlp_norm.weight": "ffn_norm.weight",
    "mlp.Wi.weight": "ffn_up.weight",
    "mlp.Wo.weight": "ffn_down.weight",
}
_LAYER_NAME = re.compile(r"layers\.(\d+)\.(.+)")
_CHUNK = 1 << 18
"""Elements converted at a time: bounds the temporary memory of a narrowing conversion."""


@dataclass(frozen=True)
class TensorPlan:
    """One GGUF tensor: its name, the checkpoint tensor it comes from, and the type it is stored as."""

    gguf_name: str
    stored_name: str
    shape: tuple[int, ...]
    file_type: str

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in the GGUF."""
        return int(np.prod(self.shape, dtype=np.int64)) * _GGML_TYPES[self.file_type][1].itemsize


class ModernBertConverter:
    """The :class:`~ollama_core.descriptors.Converter` for ModernBERT embedding checkpoints."""

    def convert(
        self, source: Path, output_dir: Path, *, file_type: str, progress: ProgressCallback
    ) -> ConversionResult:
        """Convert ``source`` to ``output_dir/model.gguf`` at ``file_type`` (F32, F16 or BF16)."""
        output_dir.mkdir(parents=True, exist_ok=True)
        return convert_checkpoint(source, output_dir / OUTPUT_NAME, file_type=file_type, progress=progress)


def convert_checkpoint(
    source: Path,
    destination: Path,
    *,
    file_type: str = "F16",
    progress: ProgressCallback | None = None,
) -> ConversionResult:
    """Write the GGUF for the checkpoint in ``source`` to ``destination`` (atomically).

    Raises ``ValueError`` for checkpoints llama.cpp cannot reproduce faithfully: biases,
    Dense modules, unsupported pooling, unknown tensors.
    """
    if file_type not in FILE_TYPES:
        raise ValueError(f"file type {file_type!r} is not supported; choose one of {sorted(FILE_TYPES)}")
    report: Callable[..., None] = progress or (lambda status, completed=None, total=None: None)
    config = load_config(source)
    if problems := config.unsupported_features():
        raise ValueError(
            f"{source.name}: llama.cpp's modern-bert architecture cannot represent {', '.join(problems)}"
        )
    pipeline = load_embedding_pipeline(source, config)
    checkpoint = Checkpoint(source)
    plan = plan_tensors(checkpoint, config, file_type)
    tokenizer = tokenizer_metadata(source, config.vocab_size)

    writer = gguf.GGUFWriter(None, arch=ARCH)
    _add_model_metadata(writer, config, pipeline, file_type, source.name)
    for key, value in tokenizer.items():
        writer.add_key_value(key, value.value, value.type, value.sub_type)
    for item in plan:
        ggml_type, dtype = _GGML_TYPES[item.file_type]
        writer.add_tensor_info(item.gguf_name, item.shape, dtype, item.nbytes, raw_dtype=ggml_type)

    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    total = sum(item.nbytes for item in plan)
    done = 0
    try:
        writer.write_header_to_file(partial)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for item in plan:
            writer.write_tensor_data(encode_tensor(checkpoint, item.stored_name, item.file_type))
            done += item.nbytes
            report(f"converting {item.gguf_name}", completed=done, total=total)
        writer.close()
        os.replace(partial, destination)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    logger.info("wrote %s (%d tensors, %s)", destination, len(plan), file_type)
    return ConversionResult(model_path=destination, notes=_notes(pipeline))


def plan_tensors(checkpoint: Checkpoint, config: ModernBertConfig, file_type: str) -> list[TensorPlan]:
    """Map every backbone tensor to its GGUF name and type, checking names and shapes.

    Raises ``ValueError`` for bias tensors, unknown tensors, missing tensors and shape mismatches.
    """
    expected = _expected_shapes(config)
    biases: list[str] = []
    unknown: list[str] = []
    plans: list[TensorPlan] = []
    for name, stored in backbone_names(checkpoint):
        gguf_name = _gguf_name(name, config.num_hidden_layers)
        if gguf_name is None:
            (biases if name.endswith(".bias") else unknown).append(stored)
            continue
        shape = checkpoint.entries[stored].shape
        if shape != expected[gguf_name]:
            raise ValueError(f"tensor {stored!r} has shape {list(shape)}, expected {list(expected[gguf_name])}")
        kept_as = "F32" if len(shape) == 1 else file_type
        plans.append(TensorPlan(gguf_name, stored, shape, kept_as))
    if biases:
        raise ValueError(
            f"checkpoint has bias tensors ({', '.join(sorted(biases)[:4])}"
            f"{', ...' if len(biases) > 4 else ''}) that llama.cpp's modern-bert architecture does not load"
        )
    if unknown:
        raise ValueError(f"checkpoint has tensors this converter does not know: {', '.join(sorted(unknown)[:8])}")
    present = {p.gguf_name for p in plans}
    missing = [n for n in expected if n not in present and n != "blk.0.attn_norm.weight"]
    if missing:
        raise ValueError(f"checkpoint lacks tensors for {', '.join(missing[:8])}")
    rank = {gguf_name: i for i, gguf_name in enumerate(expected)}
    return sorted(plans, key=lambda p: rank[p.gguf_name])


def encode_tensor(checkpoint: Checkpoint, name: str, file_type: str) -> np.ndarray:
    """One checkpoint tensor in the GGUF storage type (F32/F16 arrays, BF16 as uint16 bit patterns).

    A tensor already stored in that type is returned memory-mapped; otherwise it is converted
    in chunks into one output array, so the extra memory is the output plus one chunk.
    Raises ``ValueError`` when narrowing produces non-finite values.
    """
    stored = checkpoint.entries[name].dtype
    raw = checkpoint.read(name)
    if stored == file_type:
        return raw
    out = np.empty(raw.shape, dtype=_GGML_TYPES[file_type][1])
    source, target = raw.reshape(-1), out.reshape(-1)
    for start in range(0, source.size, _CHUNK):
        values = _decode(source[start : start + _CHUNK], stored)
        if file_type == "F32":
            encoded = values
        else:
            with np.errstate(over="ignore"):
                encoded = values.astype(np.float16) if file_type == "F16" else _to_bf16(values)
            if not np.isfinite(encoded if file_type == "F16" else values).all():
                raise ValueError(f"tensor {name!r} has values that are not finite in {file_type}; convert at F32")
        target[start : start + _CHUNK] = encoded
    return out


def _decode(raw: np.ndarray, stored: str) -> np.ndarray:
    """float32 values of a flat slice of stored data (BF16 arrives as uint16 bit patterns)."""
    if stored == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def _to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 to bfloat16 bit patterns, rounding to nearest even (inputs are finite)."""
    bits = values.view(np.uint32)
    return ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)


def _gguf_name(name: str, layers: int) -> str | None:
    """The GGUF name of a backbone tensor, or ``None`` when the modern-bert architecture has no place for it."""
    if name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[name]
    match = _LAYER_NAME.fullmatch(name)
    if match and int(match.group(1)) < layers and match.group(2) in _LAYER_TENSORS:
        return f"blk.{int(match.group(1))}.{_LAYER_TENSORS[match.group(2)]}"
    return None


def _expected_shapes(config: ModernBertConfig) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name to its PyTorch-order shape, in writing order."""
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (config.vocab_size, h),
        "token_embd_norm.weight": (h,),
    }
    for layer in range(config.num_hidden_layers):
        shapes |= {
            f"blk.{layer}.attn_norm.weight": (h,),
            f"blk.{layer}.attn_qkv.weight": (3 * h, h),
            f"blk.{layer}.attn_output.weight": (h, h),
            f"blk.{layer}.ffn_norm.weight": (h,),
            f"blk.{layer}.ffn_up.weight": (2 * i, h),
            f"blk.{layer}.ffn_down.weight": (h, i),
        }
    shapes["output_norm.weight"] = (h,)
    return shapes


def _add_model_metadata(
    writer: gguf.GGUFWriter, config: ModernBertConfig, pipeline: EmbeddingPipeline, file_type: str, name: str
) -> None:
    """The ``general.*``, ``modern-bert.*`` and :data:`NORMALIZE_KEY` keys."""
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(FILE_TYPES[file_type])
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_attention_heads)
    writer.add_layer_norm_eps(config.norm_eps)
    writer.add_causal_attention(False)
    writer.add_sliding_window(config.local_attention)
    writer.add_sliding_window_pattern(list(config.sliding_layers))
    writer.add_rope_freq_base(config.global_rope_theta)
    writer.add_rope_freq_base_swa(config.local_rope_theta)
    writer.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    writer.add_pooling_type(POOLING_TYPES[pipeline.pooling])
    writer.add_vocab_size(config.vocab_size)
    writer.add_string(f"{ARCH}.hidden_activation", _GGUF_ACTIVATIONS.get(config.hidden_activation, "gelu"))
    writer.add_bool(NORMALIZE_KEY, pipeline.normalize)


def _notes(pipeline: EmbeddingPipeline) -> tuple[str, ...]:
    """Human-readable facts about the conversion that a user of the embeddings should know."""
    notes = [
        f"pooling: {pipeline.pooling} (from {pipeline.source}); "
        f"L2-normalised: {'yes' if pipeline.normalize else 'no'} ({NORMALIZE_KEY})"
    ]
    if pipeline.prompts:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(pipeline.prompts.items()))
        notes.append(f"the model expects prompt prefixes, added by the caller: {shown}")
    if pipeline.max_seq_length:
        notes.append(f"sentence-transformers truncates inputs to {pipeline.max_seq_length} tokens")
    return tuple(notes)
