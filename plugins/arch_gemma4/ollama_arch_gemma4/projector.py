"""Gemma 4 audio and vision towers -> the multimodal projector GGUF llama.cpp's mtmd loads.

One file (``general.architecture`` = ``clip``) carries both encoders, as mtmd expects: the vision
encoder as projector type ``gemma4v`` (``v.*`` and ``mm.input_projection``) and the audio encoder
as ``gemma4a`` (``a.*`` and ``mm.a.input_projection``). Every tensor is checked against the
tower configuration before anything is written, then streamed like the text model. Tensors
llama.cpp reads as float32 (norms, scales, convolution kernels, the position table and the
clamp bounds of clipped linears) stay F32 whatever the file type.

Besides the keys clip.cpp reads, ``clip.vision.image_max_tokens`` records the image processor's
``max_soft_tokens`` (mtmd does not read it; a runner passes it as ``image_max_tokens`` when it
creates the mtmd context, since mtmd's own default allows up to 1120 tokens per image).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from ollama_arch_gemma4.checkpoint import Checkpoint
from ollama_arch_gemma4.config import Gemma4TextConfig, UnsupportedCheckpoint
from ollama_arch_gemma4.gguf_stream import PlannedTensor, Q, Transform, map_sources
from ollama_arch_gemma4.projector_config import AudioTower, Towers, VisionTower, read_towers

ARCH = "clip"
VISION_PROJECTOR = "gemma4v"
AUDIO_PROJECTOR = "gemma4a"

_VISION_PREFIX = "model.vision_tower."
_AUDIO_PREFIX = "model.audio_tower."
_VISION_LAYERS = re.compile(r"model\.vision_tower\.encoder\.layers\.(\d+)\.(.+)")
_AUDIO_LAYERS = re.compile(r"model\.audio_tower\.layers\.(\d+)\.(.+)")
_EMBEDDERS = {
    "model.embed_vision.embedding_projection.weight": "mm.input_projection.weight",
    "model.embed_audio.embedding_projection.weight": "mm.a.input_projection.weight",
}
_VISION_GLOBAL = {
    "patch_embedder.input_proj.weight": "v.patch_embd.weight",
    "patch_embedder.position_embedding_table": "v.position_embd.weight",
    "std_bias": "v.std_bias",
    "std_scale": "v.std_scale",
}
_VISION_LAYER = {
    "input_layernorm.weight": "ln1.weight",
    "post_attention_layernorm.weight": "attn_post_norm.weight",
    "pre_feedforward_layernorm.weight": "ln2.weight",
    "post_feedforward_layernorm.weight": "ffn_post_norm.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "layer_scalar": "out_scale.weight",
}
_VISION_LINEARS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_out",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_AUDIO_GLOBAL = {
    "subsample_conv_projection.layer0.conv.weight": "a.conv1d.0.weight",
    "subsample_conv_projection.layer0.norm.weight": "a.conv1d.0.norm.weight",
    "subsample_conv_projection.layer1.conv.weight": "a.conv1d.1.weight",
    "subsample_conv_projection.layer1.norm.weight": "a.conv1d.1.norm.weight",
    "subsample_conv_projection.input_proj_linear.weight": "a.input_projection.weight",
    "output_proj.weight": "a.pre_encode.out.weight",
    "output_proj.bias": "a.pre_encode.out.bias",
}
# The conformer's two RMSNorms around the light convolution are stored crossed (conv_norm holds the
# pre-norm); llama.cpp's loader reads them back the same way.
_AUDIO_LAYER = {
    "feed_forward1.pre_layer_norm.weight": "ffn_norm.weight",
    "feed_forward1.post_layer_norm.weight": "ffn_post_norm.weight",
    "feed_forward2.pre_layer_norm.weight": "ffn_norm_1.weight",
    "feed_forward2.post_layer_norm.weight": "ffn_post_norm_1.weight",
    "self_attn.relative_k_proj.weight": "attn_k_rel.weight",
    "self_attn.per_dim_scale": "per_dim_scale.weight",
    "lconv1d.depthwise_conv1d.weight": "conv_dw.weight",
    "lconv1d.pre_layer_norm.weight": "conv_norm.weight",
    "lconv1d.conv_norm.weight": "norm_conv.weight",
    "norm_pre_attn.weight": "attn_pre_norm.weight",
    "norm_post_attn.weight": "attn_post_norm.weight",
    "norm_out.weight": "ln2.weight",
}
_AUDIO_LINEARS = {
    "feed_forward1.ffw_layer_1": "ffn_up",
    "feed_forward1.ffw_layer_2": "ffn_down",
    "feed_forward2.ffw_layer_1": "ffn_up_1",
    "feed_forward2.ffw_layer_2": "ffn_down_1",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.post": "attn_out",
    "lconv1d.linear_start": "conv_pw1",
    "lconv1d.linear_end": "conv_pw2",
}
_BOUNDS = ("input_min", "input_max", "output_min", "output_max")
_LINEAR = re.compile(r"(.+)\.(linear\.weight|" + "|".join(_BOUNDS) + ")")
_F32_TENSORS = frozenset({"v.position_embd.weight", "a.input_projection.weight"})
_PLACEHOLDER_IMAGE_SIZE = 224
"""``clip.vision.image_size`` is required by the loader but unused by ``gemma4v`` (images keep their size)."""
_AUDIO_NORM_EPS = 1e-6


@dataclass(frozen=True)
class _Slot:
    """What the checkpoint must hold for one GGUF tensor."""

    shape: tuple[int, ...]
    stored: tuple[int, ...]
    transform: Transform | None = None
    optional: bool = False


@dataclass(frozen=True)
class ProjectorPlan:
    """Everything needed to write the projector GGUF."""

    towers: Towers
    metadata: dict[str, Any]
    tensors: list[PlannedTensor]

    @property
    def modalities(self) -> str:
        """``"audio and vision"``, ``"vision"`` or ``"audio"``."""
        names = [n for n, tower in (("audio", self.towers.audio), ("vision", self.towers.vision)) if tower]
        return " and ".join(names)


def plan_projector(
    source: Path,
    config: Gemma4TextConfig,
    checkpoint: Checkpoint,
    matrix_type: gguf.GGMLQuantizationType,
    file_type: gguf.LlamaFileType,
) -> ProjectorPlan | None:
    """Check and plan the projector of a checkpoint; ``None`` when it has no audio or vision tower."""
    towers = read_towers(source, config)
    if towers is None:
        return None
    metadata = {
        "general.type": "mmproj",
        "general.name": source.resolve().name,
        "general.file_type": int(file_type),
        "general.quantization_version": gguf.GGML_QUANT_VERSION,
        **projector_metadata(towers),
    }
    return ProjectorPlan(towers, metadata, plan_tensors(towers, checkpoint, matrix_type))


def projector_metadata(towers: Towers) -> dict[str, Any]:
    """The ``clip.*`` keys llama.cpp's clip loader reads for ``gemma4v`` / ``gemma4a``, and the image token budget."""
    vision, audio = towers.vision, towers.audio
    meta: dict[str, Any] = {
        "clip.has_vision_encoder": vision is not None,
        "clip.has_audio_encoder": audio is not None,
    }
    if vision is not None:
        meta |= {
            "clip.use_gelu": True,
            "clip.vision.projector_type": VISION_PROJECTOR,
            "clip.vision.projection_dim": towers.text_hidden_size,
            "clip.vision.image_size": _PLACEHOLDER_IMAGE_SIZE,
            "clip.vision.patch_size": vision.patch_size,
            "clip.vision.embedding_length": vision.hidden_size,
            "clip.vision.feed_forward_length": vision.intermediate_size,
            "clip.vision.block_count": vision.num_hidden_layers,
            "clip.vision.attention.head_count": vision.num_attention_heads,
            "clip.vision.attention.head_count_kv": vision.num_key_value_heads,
            "clip.vision.attention.head_dim": vision.head_dim,
            "clip.vision.attention.layer_norm_epsilon": vision.rms_norm_eps,
            "clip.vision.image_mean": list(vision.image_mean),
            "clip.vision.image_std": list(vision.image_std),
            "clip.vision.projector.scale_factor": vision.pooling_kernel_size,
            "clip.vision.image_max_tokens": vision.max_soft_tokens,
        }
    if audio is not None:
        meta |= {
            "clip.audio.projector_type": AUDIO_PROJECTOR,
            "clip.audio.projection_dim": towers.text_hidden_size,
            "clip.audio.embedding_length": audio.hidden_size,
            "clip.audio.feed_forward_length": 4 * audio.hidden_size,
            "clip.audio.block_count": audio.num_hidden_layers,
            "clip.audio.attention.head_count": audio.num_attention_heads,
            "clip.audio.attention.layer_norm_epsilon": _AUDIO_NORM_EPS,
            "clip.audio.num_mel_bins": audio.num_mel_bins,
        }
    return meta


def plan_tensors(towers: Towers, checkpoint: Checkpoint, matrix_type: gguf.GGMLQuantizationType) -> list[PlannedTensor]:
    """Map, check and order every projector tensor; raise :class:`UnsupportedCheckpoint` on any mismatch."""
    slots = expected_slots(towers)
    sources, problems = map_sources(checkpoint.entries, target_name, slots, lambda t: slots[t].optional)
    for target, name in sources.items():
        stored, want = checkpoint.shape(name), slots[target].stored
        if stored != want:
            problems.append(f"{name}: shape {list(stored)}, expected {list(want)}")
    if problems:
        raise UnsupportedCheckpoint("audio/vision towers do not match config.json: " + "; ".join(problems))
    planned = [
        PlannedTensor(
            target,
            slots[target].shape,
            _tensor_type(target, slots[target].shape, matrix_type),
            source=name,
            transform=slots[target].transform,
        )
        for target, name in sources.items()
    ]
    return sorted(planned, key=lambda t: _order(t.name))


def target_name(name: str) -> str | None:
    """GGUF name of a tower tensor; ``None`` for tensors outside the towers; the name itself when unknown."""
    if name in _EMBEDDERS:
        return _EMBEDDERS[name]
    for prefix, tower, globals_, layers, layer_names, linears in (
        (_VISION_PREFIX, "v", _VISION_GLOBAL, _VISION_LAYERS, _VISION_LAYER, _VISION_LINEARS),
        (_AUDIO_PREFIX, "a", _AUDIO_GLOBAL, _AUDIO_LAYERS, _AUDIO_LAYER, _AUDIO_LINEARS),
    ):
        if not name.startswith(prefix):
            continue
        if name[len(prefix) :] in globals_:
            return globals_[name[len(prefix) :]]
        layer = layers.fullmatch(name)
        if layer is None:
            return name
        index, inner = layer[1], layer[2]
        if inner in layer_names:
            return f"{tower}.blk.{index}.{layer_names[inner]}"
        linear = _LINEAR.fullmatch(inner)
        if linear is None or linear[1] not in linears:
            return name
        suffix = "weight" if linear[2] == "linear.weight" else linear[2]
        return f"{tower}.blk.{index}.{linears[linear[1]]}.{suffix}"
    return None


def expected_slots(towers: Towers) -> dict[str, _Slot]:
    """What every projector tensor must look like in the checkpoint, by GGUF name."""
    slots: dict[str, _Slot] = {}
    if towers.vision is not None:
        slots |= _vision_slots(towers.vision, towers.text_hidden_size)
    if towers.audio is not None:
        slots |= _audio_slots(towers.audio, towers.text_hidden_size)
    return slots


def _vision_slots(vision: VisionTower, text_hidden: int) -> dict[str, _Slot]:
    hidden, patch = vision.hidden_size, vision.patch_size
    q_width = vision.num_attention_heads * vision.head_dim
    kv_width = vision.num_key_value_heads * vision.head_dim
    ffn = vision.intermediate_size
    slots = {
        "v.patch_embd.weight": _Slot(
            (hidden, 3, patch, patch), (hidden, 3 * patch * patch), transform=_channels_first(patch)
        ),
        "v.position_embd.weight": _Slot(
            (2, vision.position_embedding_size, hidden), (2, vision.position_embedding_size, hidden)
        ),
        "mm.input_projection.weight": _Slot((text_hidden, hidden), (text_hidden, hidden)),
    }
    if vision.standardize:
        slots["v.std_bias"] = _Slot((hidden,), (hidden,))
        slots["v.std_scale"] = _Slot((hidden,), (hidden,))
    linears = {
        "attn_q": (q_width, hidden),
        "attn_k": (kv_width, hidden),
        "attn_v": (kv_width, hidden),
        "attn_out": (hidden, q_width),
        "ffn_gate": (ffn, hidden),
        "ffn_up": (ffn, hidden),
        "ffn_down": (hidden, ffn),
    }
    for i in range(vision.num_hidden_layers):
        layer = {
            "ln1.weight": _Slot((hidden,), (hidden,)),
            "attn_post_norm.weight": _Slot((hidden,), (hidden,)),
            "ln2.weight": _Slot((hidden,), (hidden,)),
            "ffn_post_norm.weight": _Slot((hidden,), (hidden,)),
            "attn_q_norm.weight": _Slot((vision.head_dim,), (vision.head_dim,)),
            "attn_k_norm.weight": _Slot((vision.head_dim,), (vision.head_dim,)),
            "out_scale.weight": _Slot((1,), (1,), optional=True),
            **_linear_slots(linears, vision.use_clipped_linears),
        }
        slots |= {f"v.blk.{i}.{name}": slot for name, slot in layer.items()}
    return slots


def _audio_slots(audio: AudioTower, text_hidden: int) -> dict[str, _Slot]:
    hidden, kernel = audio.hidden_size, audio.conv_kernel_size
    first, second = audio.subsampling_conv_channels
    slots = {
        "a.conv1d.0.weight": _Slot((first, 1, 3, 3), (first, 1, 3, 3)),
        "a.conv1d.0.norm.weight": _Slot((first,), (first,)),
        "a.conv1d.1.weight": _Slot((second, first, 3, 3), (second, first, 3, 3)),
        "a.conv1d.1.norm.weight": _Slot((second,), (second,)),
        "a.input_projection.weight": _Slot((hidden, first // 4 * second), (hidden, first // 4 * second)),
        "mm.a.input_projection.weight": _Slot((text_hidden, audio.output_size), (text_hidden, audio.output_size)),
    }
    if audio.output_proj_dims:
        out = audio.output_proj_dims
        slots["a.pre_encode.out.weight"] = _Slot((out, hidden), (out, hidden))
        slots["a.pre_encode.out.bias"] = _Slot((out,), (out,))
    linears = {
        "ffn_up": (4 * hidden, hidden),
        "ffn_down": (hidden, 4 * hidden),
        "ffn_up_1": (4 * hidden, hidden),
        "ffn_down_1": (hidden, 4 * hidden),
        "attn_q": (hidden, hidden),
        "attn_k": (hidden, hidden),
        "attn_v": (hidden, hidden),
        "attn_out": (hidden, hidden),
        "conv_pw1": (2 * hidden, hidden),
        "conv_pw2": (hidden, hidden),
    }
    norms = (
        "ffn_norm",
        "ffn_post_norm",
        "ffn_norm_1",
        "ffn_post_norm_1",
        "conv_norm",
        "norm_conv",
        "attn_pre_norm",
        "attn_post_norm",
        "ln2",
    )
    for i in range(audio.num_hidden_layers):
        layer = {
            **{f"{norm}.weight": _Slot((hidden,), (hidden,)) for norm in norms},
            "attn_k_rel.weight": _Slot((hidden, hidden), (hidden, hidden)),
            "per_dim_scale.weight": _Slot((audio.head_dim,), (audio.head_dim,), transform=_softplus),
            "conv_dw.weight": _Slot((hidden, kernel), (hidden, 1, kernel)),
            **_linear_slots(linears, audio.use_clipped_linears),
        }
        slots |= {f"a.blk.{i}.{name}": slot for name, slot in layer.items()}
    return slots


def _linear_slots(linears: Mapping[str, tuple[int, int]], clipped: bool) -> dict[str, _Slot]:
    """Weights of (clippable) linears and, when clipped, their four 0-d bounds as 1-element tensors."""
    slots = {f"{name}.weight": _Slot(shape, shape) for name, shape in linears.items()}
    if clipped:
        slots |= {f"{name}.{bound}": _Slot((1,), ()) for name in linears for bound in _BOUNDS}
    return slots


def _channels_first(patch: int) -> Transform:
    """Patch-embedding rows stored as (height, width, channel) pixels -> (channel, height, width)."""

    def reorder(rows: np.ndarray) -> np.ndarray:
        return rows.reshape(len(rows), patch, patch, 3).transpose(0, 3, 1, 2)

    return reorder


def _softplus(values: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)``: llama.cpp multiplies by the scale transformers derives from ``per_dim_scale``."""
    return np.asarray(np.logaddexp(np.float32(0.0), values), dtype=np.float32)


def _tensor_type(
    name: str, shape: tuple[int, ...], matrix_type: gguf.GGMLQuantizationType
) -> gguf.GGMLQuantizationType:
    """F32 where clip computes in float32; F16 or F32 for the patch kernel; the chosen type elsewhere."""
    if len(shape) < 2 or name in _F32_TENSORS or name.startswith("a.conv1d.") or name.endswith(".conv_dw.weight"):
        return Q.F32
    if name == "v.patch_embd.weight":
        return Q.F16 if matrix_type == Q.F16 else Q.F32
    return matrix_type


def _order(name: str) -> tuple[str, int, str]:
    match = re.match(r"(\w+)\.blk\.(\d+)\.(.+)", name)
    if match is None:
        return (name.split(".")[0], -1, name)
    return (match[1], int(match[2]), match[3])
