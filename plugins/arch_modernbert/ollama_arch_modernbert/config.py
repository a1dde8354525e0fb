"""Reading a ModernBERT checkpoint's configuration: ``config.json`` and sentence-transformers files.

``config.json`` comes in two forms: the legacy one (``global_rope_theta``, ``local_rope_theta``,
``global_attn_every_n_layers``) and the transformers-5 one (``rope_parameters`` per layer type,
``layer_types``). Both are normalised into :class:`ModernBertConfig`. The embedding pipeline
(pooling, normalisation) comes from ``modules.json`` and its Pooling module's ``config.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FULL_ATTENTION = "full_attention"
SLIDING_ATTENTION = "sliding_attention"

GELU_ERF = "gelu"
GELU_TANH = "gelu_tanh"
SILU = "silu"
RELU = "relu"

_ACTIVATIONS: dict[str, str] = {
    "gelu": GELU_ERF,
    "gelu_pytorch_tanh": GELU_TANH,
    "gelu_new": GELU_TANH,
    "silu": SILU,
    "swish": SILU,
    "relu": RELU,
}
"""HF ``hidden_activation`` values the GLU MLP can use, by the activation they compute."""

POOLING_MEAN = "mean"
POOLING_CLS = "cls"
POOLING_LAST = "last"

_ST_POOLING_FLAGS: dict[str, str] = {
    "pooling_mode_cls_token": POOLING_CLS,
    "pooling_mode_mean_tokens": POOLING_MEAN,
    "pooling_mode_lasttoken": POOLING_LAST,
}
_ST_UNSUPPORTED_POOLING_FLAGS = (
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
)
_ST_POOLING_MODES: dict[str, str] = {"cls": POOLING_CLS, "mean": POOLING_MEAN, "lasttoken": POOLING_LAST}


@dataclass(frozen=True)
class ModernBertConfig:
    """The hyper-parameters of a ModernBERT backbone, independent of the config.json form."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int
    norm_eps: float
    local_attention: int
    sliding_layers: tuple[bool, ...]
    global_rope_theta: float
    local_rope_theta: float
    hidden_activation: str
    norm_bias: bool
    attention_bias: bool
    mlp_bias: bool
    classifier_pooling: str

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    def unsupported_features(self) -> list[str]:
        """Features of this checkpoint that llama.cpp's ``modern-bert`` architecture cannot represent."""
        problems: list[str] = []
        if self.norm_bias:
            problems.append("LayerNorm biases (norm_bias=true)")
        if self.attention_bias:
            problems.append("attention biases (attention_bias=true)")
        if self.mlp_bias:
            problems.append("MLP biases (mlp_bias=true)")
        return problems


@dataclass(frozen=True)
class EmbeddingPipeline:
    """How token states become one embedding: pooling, optional L2 normalisation, and where that came from."""

    pooling: str
    normalize: bool
    source: str
    prompts: dict[str, str]
    max_seq_length: int | None


def read_json(path: Path) -> Any:
    """Parse a JSON file, naming the file when it is malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def load_config(checkpoint_dir: Path) -> ModernBertConfig:
    """Read ``config.json`` (legacy or transformers-5 form) into a :class:`ModernBertConfig`."""
    raw = read_json(checkpoint_dir / "config.json")
    if raw.get("model_type", "modernbert") != "modernbert":
        raise ValueError(f"config.json has model_type {raw.get('model_type')!r}, expected 'modernbert'")
    layers = int(raw.get("num_hidden_layers", 22))
    hidden = int(raw.get("hidden_size", 768))
    heads = int(raw.get("num_attention_heads", 12))
    if hidden % heads:
        raise ValueError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    activation = str(raw.get("hidden_activation", "gelu"))
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"hidden_activation {activation!r} is not supported; expected one of {sorted(_ACTIVATIONS)}"
        )
    global_theta, local_theta = _rope_thetas(raw)
    return ModernBertConfig(
        vocab_size=int(raw.get("vocab_size", 50368)),
        hidden_size=hidden,
        intermediate_size=int(raw.get("intermediate_size", 1152)),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=int(raw.get("max_position_embeddings", 8192)),
        norm_eps=float(raw.get("norm_eps", 1e-5)),
        local_attention=int(raw.get("local_attention", 128)),
        sliding_layers=_sliding_layers(raw, layers),
        global_rope_theta=global_theta,
        local_rope_theta=local_theta,
        hidden_activation=_ACTIVATIONS[activation],
        norm_bias=bool(raw.get("norm_bias", False)),
        attention_bias=bool(raw.get("attention_bias", False)),
        mlp_bias=bool(raw.get("mlp_bias", False)),
        classifier_pooling=str(raw.get("classifier_pooling", POOLING_CLS)),
    )


def _sliding_layers(raw: dict[str, Any], layers: int) -> tuple[bool, ...]:
    """Which layers use sliding-window attention: ``layer_types``, else ``global_attn_every_n_layers``."""
    layer_types = raw.get("layer_types")
    if layer_types is not None:
        if len(layer_types) != layers:
            raise ValueError(f"layer_types has {len(layer_types)} entries for {layers} layers")
        unknown = sorted(set(layer_types) - {FULL_ATTENTION, SLIDING_ATTENTION})
        if unknown:
            raise ValueError(f"layer_types has unsupported entries {unknown}")
        return tuple(kind == SLIDING_ATTENTION for kind in layer_types)
    every = int(raw.get("global_attn_every_n_layers", 3))
    if every <= 0:
        raise ValueError(f"global_attn_every_n_layers must be positive, got {every}")
    return tuple(i % every != 0 for i in range(layers))


def _rope_thetas(raw: dict[str, Any]) -> tuple[float, float]:
    """(global, local) RoPE bases from ``rope_parameters`` or the legacy ``*_rope_theta`` keys."""
    params = raw.get("rope_parameters")
    if params:
        if FULL_ATTENTION in params or SLIDING_ATTENTION in params:
            full = params.get(FULL_ATTENTION) or {}
            sliding = params.get(SLIDING_ATTENTION) or full
        else:
            full = sliding = params
        for kind, entry in ((FULL_ATTENTION, full), (SLIDING_ATTENTION, sliding)):
            rope_type = entry.get("rope_type", "default")
            if rope_type != "default":
                raise ValueError(f"rope_type {rope_type!r} for {kind} layers is not supported (only 'default')")
            if "rope_theta" not in entry:
                raise ValueError(f"rope_parameters for {kind} layers has no rope_theta")
        return float(full["rope_theta"]), float(sliding["rope_theta"])
    global_theta = float(raw.get("global_rope_theta", 160000.0))
    local = raw.get("local_rope_theta", 10000.0)
    return global_theta, global_theta if local is None else float(local)


def load_embedding_pipeline(checkpoint_dir: Path, config: ModernBertConfig) -> EmbeddingPipeline:
    """The pooling and normalisation of the embedding model.

    Taken from sentence-transformers' ``modules.json`` when present; otherwise from
    ``classifier_pooling`` in ``config.json``. Raises ``ValueError`` for pipelines llama.cpp
    cannot reproduce (Dense layers, max/weighted pooling, unknown modules).
    """
    modules_path = checkpoint_dir / "modules.json"
    if not modules_path.is_file():
        if config.classifier_pooling not in (POOLING_CLS, POOLING_MEAN):
            raise ValueError(f"classifier_pooling {config.classifier_pooling!r} is not supported (cls or mean)")
        logger.info("no modules.json in %s: pooling from classifier_pooling", checkpoint_dir)
        return EmbeddingPipeline(
            pooling=config.classifier_pooling,
            normalize=False,
            source="config.json classifier_pooling",
            prompts={},
            max_seq_length=None,
        )
    pooling: str | None = None
    normalize = False
    for module in read_json(modules_path):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer":
            continue
        if kind == "Pooling":
            pooling = _st_pooling(checkpoint_dir / str(module.get("path", "")) / "config.json")
        elif kind == "Normalize":
            normalize = True
        elif kind == "Dense":
            raise ValueError(
                f"sentence-transformers module {module.get('path')!r} is a Dense layer, which llama.cpp's "
                "modern-bert architecture cannot apply; this embedding model cannot be converted faithfully"
            )
        else:
            raise ValueError(f"sentence-transformers module type {module.get('type')!r} is not supported")
    if pooling is None:
        raise ValueError("modules.json has no Pooling module: token embeddings cannot be served as one vector")
    prompts, max_seq_length = _st_extras(checkpoint_dir)
    return EmbeddingPipeline(
        pooling=pooling,
        normalize=normalize,
        source="sentence-transformers modules.json",
        prompts=prompts,
        max_seq_length=max_seq_length,
    )


def _st_pooling(path: Path) -> str:
    """The pooling named by a sentence-transformers Pooling ``config.json``."""
    raw = read_json(path)
    if "pooling_mode" in raw:
        mode = raw["pooling_mode"]
        if mode not in _ST_POOLING_MODES:
            raise ValueError(f"{path}: pooling_mode {mode!r} is not supported (cls, mean or lasttoken)")
        return _ST_POOLING_MODES[mode]
    unsupported = [flag for flag in _ST_UNSUPPORTED_POOLING_FLAGS if raw.get(flag)]
    chosen = [mode for flag, mode in _ST_POOLING_FLAGS.items() if raw.get(flag)]
    if unsupported:
        raise ValueError(f"{path}: {', '.join(unsupported)} is not supported by llama.cpp (cls, mean or last token)")
    if len(chosen) != 1:
        raise ValueError(f"{path}: expected exactly one pooling mode, found {chosen or 'none'}")
    return chosen[0]


def _st_extras(checkpoint_dir: Path) -> tuple[dict[str, str], int | None]:
    """Prompts from ``config_sentence_transformers.json`` and ``max_seq_length`` from ``sentence_bert_config.json``."""
    prompts: dict[str, str] = {}
    st_config = checkpoint_dir / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = {str(k): str(v) for k, v in (read_json(st_config).get("prompts") or {}).items() if v}
    max_seq_length = None
    bert_config = checkpoint_dir / "sentence_bert_config.json"
    if bert_config.is_file():
        value = read_json(bert_config).get("max_seq_length")
        max_seq_length = int(value) if value is not None else None
    return prompts, max_seq_length
