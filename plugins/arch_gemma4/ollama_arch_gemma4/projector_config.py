"""The audio and vision towers of ``Gemma4ForConditionalGeneration``, as the projector converter needs them.

Read from ``config.json`` (``audio_config``, ``vision_config``) and the processor configuration
(``processor_config.json``, else ``preprocessor_config.json``). llama.cpp's ``gemma4a`` and
``gemma4v`` graphs and mtmd's audio front end hard-code several sizes; :func:`read_towers`
refuses a tower that differs from them instead of writing a projector that would compute
something else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollama_arch_gemma4.config import CONDITIONAL_GENERATION, Gemma4TextConfig, UnsupportedCheckpoint

PROCESSOR_FILE = "processor_config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"

CAUSAL_VISION_WIDTHS = (1536, 2560)
"""Text widths for which mtmd decodes image tokens causally (E2B, E4B); it decodes all others bidirectionally."""

_AUDIO_CONSTANTS: dict[str, float] = {
    "attention_chunk_size": 12,
    "attention_context_left": 13,
    "attention_context_right": 0,
    "attention_logit_cap": 50.0,
    "conv_kernel_size": 5,
    "residual_weight": 0.5,
    "rms_norm_eps": 1e-6,
}
_FEATURE_CONSTANTS: dict[str, float] = {
    "sampling_rate": 16000,
    "frame_length": 320,
    "hop_length": 160,
    "fft_length": 512,
    "min_frequency": 0.0,
    "max_frequency": 8000.0,
    "mel_floor": 1e-3,
    "preemphasis": 0.0,
    "input_scale_factor": 1.0,
}
_VISION_ROPE_THETA = 100.0
_VISION_ROPE_TYPES = ("default", "axial")
_WARMUP_TOKENS_PER_SIDE = 16
_RESCALE_FACTOR = 1 / 255
_GELU_TANH = ("gelu_pytorch_tanh", "gelu_tanh")
_DEFAULT_MEL_BINS = 128
_DEFAULT_MAX_SOFT_TOKENS = 280


@dataclass(frozen=True)
class VisionTower:
    """The SigLIP-style vision encoder and its image preprocessing."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    patch_size: int
    pooling_kernel_size: int
    position_embedding_size: int
    rms_norm_eps: float
    standardize: bool
    use_clipped_linears: bool
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    max_soft_tokens: int


@dataclass(frozen=True)
class AudioTower:
    """The USM conformer audio encoder and its mel front end."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    subsampling_conv_channels: tuple[int, int]
    conv_kernel_size: int
    output_proj_dims: int | None
    num_mel_bins: int
    use_clipped_linears: bool

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @property
    def output_size(self) -> int:
        """Width of the tower's output (after ``output_proj`` when there is one)."""
        return self.output_proj_dims or self.hidden_size


@dataclass(frozen=True)
class Towers:
    """The towers a checkpoint has (either may be absent) and the text width they project to."""

    text_hidden_size: int
    vision: VisionTower | None
    audio: AudioTower | None


def read_towers(source: Path, text: Gemma4TextConfig) -> Towers | None:
    """The checkpoint's towers, checked against llama.cpp; ``None`` when it has none."""
    if text.architecture != CONDITIONAL_GENERATION:
        return None
    raw = json.loads((source / "config.json").read_text(encoding="utf-8"))
    processor = _processor_config(source)
    vision_raw, audio_raw = raw.get("vision_config"), raw.get("audio_config")
    vision = _vision(vision_raw, processor) if isinstance(vision_raw, Mapping) else None
    audio = _audio(audio_raw, processor) if isinstance(audio_raw, Mapping) else None
    if vision is None and audio is None:
        return None
    if vision is not None:
        _check_image_attention(text)
    return Towers(text_hidden_size=text.hidden_size, vision=vision, audio=audio)


def _processor_config(source: Path) -> dict[str, Mapping[str, Any]]:
    """``image_processor`` and ``feature_extractor`` settings (empty where the checkpoint has none)."""
    path = source / PROCESSOR_FILE
    if path.is_file():
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            "image": raw.get("image_processor") or {},
            "audio": raw.get("feature_extractor") or {},
        }
    path = source / PREPROCESSOR_FILE
    if path.is_file():
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {"image": raw, "audio": raw.get("feature_extractor") or {}}
    return {"image": {}, "audio": {}}


def _vision(raw: Mapping[str, Any], processor: Mapping[str, Mapping[str, Any]]) -> VisionTower:
    _check_vision_graph(raw)
    hidden = int(_required(raw, "hidden_size", "vision"))
    heads = int(_required(raw, "num_attention_heads", "vision"))
    pooling = int(raw.get("pooling_kernel_size", 3))
    positions = int(raw.get("position_embedding_size", 10240))
    if pooling < 1:
        raise UnsupportedCheckpoint(f"vision pooling_kernel_size {pooling} must be at least 1")
    if positions < _WARMUP_TOKENS_PER_SIDE * pooling:
        raise UnsupportedCheckpoint(
            f"vision position_embedding_size {positions} is below {_WARMUP_TOKENS_PER_SIDE * pooling}: llama.cpp "
            f"warms the encoder up with an image {_WARMUP_TOKENS_PER_SIDE * pooling} patches wide"
        )
    image = processor["image"]
    patch = int(raw.get("patch_size", image.get("patch_size", 16)))
    for key, value in (("patch_size", patch), ("pooling_kernel_size", pooling)):
        if int(image.get(key, value)) != value:
            raise UnsupportedCheckpoint(
                f"image processor {key} {image.get(key)} differs from vision_config {key} {value}"
            )
    mean, std = _normalization(image)
    return VisionTower(
        hidden_size=hidden,
        intermediate_size=int(_required(raw, "intermediate_size", "vision")),
        num_hidden_layers=int(_required(raw, "num_hidden_layers", "vision")),
        num_attention_heads=heads,
        num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=int(raw.get("head_dim") or hidden // heads),
        patch_size=patch,
        pooling_kernel_size=pooling,
        position_embedding_size=positions,
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        standardize=bool(raw.get("standardize", False)),
        use_clipped_linears=bool(raw.get("use_clipped_linears", False)),
        image_mean=mean,
        image_std=std,
        max_soft_tokens=int(image.get("max_soft_tokens") or image.get("image_seq_length") or _DEFAULT_MAX_SOFT_TOKENS),
    )


def _check_vision_graph(raw: Mapping[str, Any]) -> None:
    """What llama.cpp's ``gemma4v`` graph hard-codes: tanh GELU, no biases, 2-D RoPE with theta 100."""
    activation = str(raw.get("hidden_activation") or raw.get("hidden_act") or "gelu_pytorch_tanh")
    if activation not in _GELU_TANH:
        raise UnsupportedCheckpoint(
            f"vision_config hidden_activation {activation!r}: llama.cpp's gemma4v graph runs tanh GELU only"
        )
    if raw.get("attention_bias"):
        raise UnsupportedCheckpoint("vision_config attention_bias is true: llama.cpp's gemma4v graph has no biases")
    rope = raw.get("rope_parameters") or {}
    rope_type = str(rope.get("rope_type", "default"))
    theta = float(rope.get("rope_theta", _VISION_ROPE_THETA))
    if rope_type not in _VISION_ROPE_TYPES or theta != _VISION_ROPE_THETA:
        raise UnsupportedCheckpoint(
            f"vision rope {rope_type!r} with theta {theta:g}: llama.cpp hard-codes 2-D RoPE with theta "
            f"{_VISION_ROPE_THETA:g}"
        )


def _normalization(image: Mapping[str, Any]) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std llama.cpp applies after scaling pixels by 1/255 (identity unless normalizing)."""
    if not image.get("do_rescale", True):
        raise UnsupportedCheckpoint("image do_rescale is false: llama.cpp always scales pixels by 1/255")
    if not math.isclose(float(image.get("rescale_factor", _RESCALE_FACTOR)), _RESCALE_FACTOR):
        raise UnsupportedCheckpoint(
            f"image rescale_factor {image.get('rescale_factor')}: llama.cpp always scales pixels by 1/255"
        )
    if not image.get("do_normalize", False):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return _triple(image.get("image_mean", 0.0), "image_mean"), _triple(image.get("image_std", 1.0), "image_std")


def _audio(raw: Mapping[str, Any], processor: Mapping[str, Mapping[str, Any]]) -> AudioTower:
    activation = str(raw.get("hidden_act", "silu"))
    if activation != "silu":
        raise UnsupportedCheckpoint(f"audio_config hidden_act {activation!r}: llama.cpp's gemma4a graph uses SiLU")
    for key, want in _AUDIO_CONSTANTS.items():
        value = raw.get(key, want)
        if value is None or not math.isclose(float(value), want):
            raise UnsupportedCheckpoint(f"audio_config {key} = {value}: llama.cpp's gemma4a graph hard-codes {want:g}")
    features = processor["audio"]
    for key, want in _FEATURE_CONSTANTS.items():
        value = features.get(key, want)
        if value is None or not math.isclose(float(value), want):
            raise UnsupportedCheckpoint(
                f"audio feature extractor {key} = {value}: llama.cpp's Gemma 4 mel front end hard-codes {want:g}"
            )
    for key in ("per_bin_mean", "per_bin_stddev"):
        if features.get(key) is not None:
            raise UnsupportedCheckpoint(
                f"audio feature extractor {key} is set: llama.cpp's Gemma 4 mel front end does no per-bin normalization"
            )
    if features.get("fft_overdrive"):
        raise UnsupportedCheckpoint("audio feature extractor fft_overdrive is set: llama.cpp's FFT size is fixed")
    mel_bins = int(features.get("feature_size") or _DEFAULT_MEL_BINS)
    hidden = int(_required(raw, "hidden_size", "audio"))
    heads = int(_required(raw, "num_attention_heads", "audio"))
    if hidden % heads:
        raise UnsupportedCheckpoint(f"audio hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    channels = [int(c) for c in raw.get("subsampling_conv_channels") or (128, 32)]
    if len(channels) != 2:
        raise UnsupportedCheckpoint(f"audio subsampling_conv_channels {channels}: llama.cpp expects two convolutions")
    if channels[0] != mel_bins:
        raise UnsupportedCheckpoint(
            f"audio subsampling_conv_channels[0] = {channels[0]}: the subsampling projection only lines up with the "
            f"{mel_bins} mel bins when the first convolution has {mel_bins} channels"
        )
    output = raw.get("output_proj_dims", 1536)
    return AudioTower(
        hidden_size=hidden,
        num_hidden_layers=int(_required(raw, "num_hidden_layers", "audio")),
        num_attention_heads=heads,
        subsampling_conv_channels=(channels[0], channels[1]),
        conv_kernel_size=int(raw.get("conv_kernel_size", 5)),
        output_proj_dims=int(output) if output else None,
        num_mel_bins=mel_bins,
        use_clipped_linears=bool(raw.get("use_clipped_linears", True)),
    )


def _check_image_attention(text: Gemma4TextConfig) -> None:
    """mtmd picks causal or bidirectional image decoding by text width, not by the config."""
    bidirectional = text.use_bidirectional_attention == "vision"
    if bidirectional == (text.hidden_size in CAUSAL_VISION_WIDTHS):
        mtmd = "causally" if text.hidden_size in CAUSAL_VISION_WIDTHS else "bidirectionally"
        raise UnsupportedCheckpoint(
            f"use_bidirectional_attention is {text.use_bidirectional_attention!r} but llama.cpp decodes the image "
            f"tokens of a model with hidden_size {text.hidden_size} {mtmd}"
        )


def _required(raw: Mapping[str, Any], key: str, tower: str) -> Any:
    if raw.get(key) is None:
        raise UnsupportedCheckpoint(f"config.json {tower}_config has no {key!r}")
    return raw[key]


def _triple(values: Any, key: str) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        values = [values] * 3
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise UnsupportedCheckpoint(f"image processor {key} {values!r}: expected three channel values")
    return (float(values[0]), float(values[1]), float(values[2]))
