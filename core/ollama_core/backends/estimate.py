"""How much memory a model needs, read from its GGUF header.

The figures follow what llama.cpp allocates when the runner opens a model: the weights of
each repeating layer (``blk.N.*`` tensors), the output layer, the KV cache for
``num_ctx x num_parallel`` cells at the cache type (per layer, with sliding-window, shared-KV
and recurrent layers told apart from the metadata), and the compute graph. The graph is an
estimate from the model's shape (batch activations, attention scores unless flash attention
is on, and the logits), rounded up by an eighth; the real buffer is only known after a load.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ollama_core.gguf import GGUFFile, GGUFMetadata

CTX_PAD = 256
"""llama.cpp pads the context of every sequence, and the sliding-window cache, to this many cells."""

KV_CACHE_TYPES: dict[str, tuple[int, int]] = {"f16": (1, 2), "q8_0": (32, 34), "q4_0": (32, 18)}
"""KV cache types: (elements per block, bytes per block)."""

RECURRENT_STATE_BYTES = 4
"""Recurrent (SSM) state is always kept in f32."""

_ENCODERS = frozenset(
    {"bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "jina-bert-v3", "eurobert"}
)
"""Encoder architectures: no language-model head, so tied token embeddings are not loaded twice."""

_NO_KV_CACHE = _ENCODERS | {"wavtokenizer-dec", "gemma-embedding", "dream", "llada", "llada-moe", "rnd1"}
"""Architectures llama.cpp runs without a KV cache (encoders and diffusion models)."""

_NO_FLASH_ATTENTION = frozenset({"grok"})
"""Architectures llama.cpp never runs with flash attention."""

_SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "gemma-embedding": (6, False),
    "cohere2": (4, False),
    "llama4": (4, False),
    "gpt-oss": (2, False),
    "exaone4": (4, False),
    "olmo2": (4, False),
    "modern-bert": (3, True),
}
"""Sliding-window layout llama.cpp assumes per architecture when the GGUF gives none:
(period, whether the dense layer comes first in each period)."""

_KV_FROM_START = {"gemma3n": 20}
"""Architectures whose later layers reuse the KV cache of earlier ones: layers with their own cache."""

_BLOCK = re.compile(r"blk\.(\d+)\.")
_OUTPUT_PREFIXES = ("output.", "output_norm.", "cls.")


@dataclass(frozen=True)
class ModelShape:
    """The hyperparameters that size a model's KV cache and compute graph (per layer where they vary)."""

    architecture: str
    block_count: int
    embedding_length: int
    vocab_size: int
    feed_forward_length: int
    head_count: tuple[int, ...]
    head_count_kv: tuple[int, ...]
    key_length: tuple[int, ...]
    value_length: tuple[int, ...]
    sliding_window: int
    swa_layers: tuple[bool, ...]
    kv_layers: tuple[bool, ...]
    recurrent_state: tuple[int, ...]
    """f32 elements of recurrent state one sequence needs, per layer (0 for attention layers)."""

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> ModelShape:
        """Read the shape from ``gguf``'s metadata (defaults as llama.cpp applies them)."""
        meta = gguf.metadata
        arch = gguf.architecture
        n = _block_count(gguf)
        embd = _int(meta, f"{arch}.embedding_length")
        heads = _per_layer(meta, f"{arch}.attention.head_count", n, 0)
        heads_kv = _per_layer(meta, f"{arch}.attention.head_count_kv", n, None)
        heads_kv = tuple(h if h is not None else heads[i] for i, h in enumerate(heads_kv))
        head_dim = embd // max(heads) if heads and max(heads) else 0
        k_len = _int(meta, f"{arch}.attention.key_length", head_dim)
        v_len = _int(meta, f"{arch}.attention.value_length", k_len)
        k_swa = _int(meta, f"{arch}.attention.key_length_swa", k_len)
        v_swa = _int(meta, f"{arch}.attention.value_length_swa", v_len)
        if _int(meta, f"{arch}.attention.key_length_mla"):
            v_len = v_swa = 0
        window = _int(meta, f"{arch}.attention.sliding_window")
        swa = _swa_layers(meta, arch, n) if window else (False,) * n
        recurrent = _recurrent_state(meta, arch, heads_kv)
        kv_from = _int(meta, f"{arch}.attention.shared_kv_layers")
        first_shared = n - kv_from if kv_from else _KV_FROM_START.get(arch, n)
        has_kv = arch not in _NO_KV_CACHE
        kv_layers = tuple(has_kv and heads_kv[i] > 0 and not recurrent[i] and i < first_shared for i in range(n))
        ff = max(_per_layer(meta, f"{arch}.feed_forward_length", n, 0), default=0)
        ff = max(ff, _int(meta, f"{arch}.expert_feed_forward_length") * _int(meta, f"{arch}.expert_used_count"))
        return cls(
            architecture=arch,
            block_count=n,
            embedding_length=embd,
            vocab_size=_vocab_size(gguf),
            feed_forward_length=ff,
            head_count=heads,
            head_count_kv=heads_kv,
            key_length=tuple(k_swa if swa[i] else k_len for i in range(n)),
            value_length=tuple(v_swa if swa[i] else v_len for i in range(n)),
            sliding_window=window,
            swa_layers=swa,
            kv_layers=kv_layers,
            recurrent_state=recurrent,
        )

    def attention_layers(self) -> list[int]:
        """Indices of the layers that keep a KV cache of their own."""
        return [i for i, has in enumerate(self.kv_layers) if has]

    def supports_flash_attention(self) -> bool:
        """Whether flash attention applies: every cached layer has equal, non-zero K and V head sizes."""
        if self.architecture in _NO_FLASH_ATTENTION:
            return False
        layers = self.attention_layers()
        return bool(layers) and all(0 < self.key_length[i] == self.value_length[i] for i in layers)

    def supports_kv_cache_type(self, cache_type: str) -> bool:
        """Whether ``cache_type`` can hold this model's K and V rows (its blocks must divide the head sizes)."""
        if cache_type not in KV_CACHE_TYPES:
            return False
        block = KV_CACHE_TYPES[cache_type][0]
        layers = self.attention_layers()
        return all(self.key_length[i] % block == 0 and self.value_length[i] % block == 0 for i in layers)


@dataclass(frozen=True)
class LayerMemory:
    """One repeating layer: its weights and its share of the KV cache (or recurrent state)."""

    weights: int
    kv: int

    @property
    def total(self) -> int:
        """Bytes the layer needs on whichever device holds it."""
        return self.weights + self.kv


@dataclass(frozen=True)
class ModelMemory:
    """Bytes a model needs for one runner configuration, by where they can live.

    ``host`` (token embeddings and other tensors outside the layers) always stays in system
    memory. ``output`` is what the output layer needs on the device it is offloaded to, and
    ``host_output`` what it takes in system memory when it is not (less when the output shares
    the token embeddings). ``graph_full`` is the compute buffer per device when every layer is
    offloaded; ``graph_partial`` when layers are split (it also holds weights copied from the CPU
    for large batches). ``kv_cells`` is the cache size per sequence after padding.
    """

    architecture: str
    layers: tuple[LayerMemory, ...]
    output: int
    host: int
    host_output: int
    graph_full: int
    graph_partial: int
    projector: int
    kv_cells: int
    kv_cache_type: str
    flash_attention: bool

    @property
    def block_count(self) -> int:
        """Repeating layers; llama.cpp counts one more (the output layer) in ``n_gpu_layers``."""
        return len(self.layers)

    @property
    def weights(self) -> int:
        """Bytes of every tensor the runner loads (layers, output and host tensors, not the projector)."""
        return sum(layer.weights for layer in self.layers) + self.host + self.host_output

    @property
    def kv(self) -> int:
        """Bytes of the whole KV cache (and recurrent state)."""
        return sum(layer.kv for layer in self.layers)

    @property
    def cpu_total(self) -> int:
        """Bytes the runner needs when nothing is offloaded."""
        return self.weights + self.kv + self.graph_full + self.projector


@dataclass(frozen=True)
class _TensorGroups:
    """Tensor bytes by placement: per layer, output layer, host-only; ``tied`` is the token-embedding
    copy the output layer needs on a device when the model has no output tensor of its own."""

    layers: tuple[int, ...]
    output: int
    host: int
    tied: int
    largest: int

    @classmethod
    def of(cls, gguf: GGUFFile, block_count: int, *, lm_head: bool) -> _TensorGroups:
        layers = [0] * block_count
        output = host = largest = token_embd = 0
        has_output = False
        for tensor in gguf.tensors:
            match = _BLOCK.match(tensor.name)
            if match and int(match.group(1)) < block_count:
                layers[int(match.group(1))] += tensor.nbytes
                largest = max(largest, tensor.nbytes)
            elif tensor.name.startswith(_OUTPUT_PREFIXES):
                output += tensor.nbytes
                largest = max(largest, tensor.nbytes)
                has_output = has_output or tensor.name.startswith("output.")
            else:
                host += tensor.nbytes
                if tensor.name == "token_embd.weight":
                    token_embd = tensor.nbytes
        tied = token_embd if lm_head and not has_output else 0
        return cls(tuple(layers), output, host, tied, max(largest, tied))


def kv_cells(num_ctx: int, num_parallel: int) -> int:
    """KV cells one sequence gets: llama.cpp pads the whole context, splits it, and pads each share."""
    parallel = max(1, num_parallel)
    total = _pad(max(1, num_ctx) * parallel, CTX_PAD)
    return _pad(total // parallel, CTX_PAD)


def row_bytes(cache_type: str, elements: int) -> int:
    """Bytes of one cache row of ``elements`` values at ``cache_type``."""
    block, size = KV_CACHE_TYPES[cache_type]
    return -(-elements // block) * size


def estimate_memory(
    gguf: GGUFFile,
    *,
    num_ctx: int,
    num_parallel: int = 1,
    num_batch: int = 512,
    kv_cache_type: str = "f16",
    flash_attention: bool = False,
    swa_full: bool = True,
    projector: GGUFFile | None = None,
    shape: ModelShape | None = None,
) -> ModelMemory:
    """What the runner needs for ``gguf`` opened with these settings.

    ``num_ctx`` is the window of one sequence and ``num_parallel`` the number of sequences
    (the cache holds both); ``num_batch`` is the micro-batch the runner uses. ``swa_full``
    keeps full-size caches on sliding-window layers, as llama.cpp does unless told otherwise.
    ``projector`` adds a multimodal projector's weights.
    """
    shape = shape or ModelShape.from_gguf(gguf)
    if kv_cache_type not in KV_CACHE_TYPES:
        raise ValueError(f"unknown KV cache type {kv_cache_type!r}; use one of {', '.join(KV_CACHE_TYPES)}")
    parallel = max(1, num_parallel)
    cells = kv_cells(num_ctx, parallel)
    ubatch = max(1, min(num_batch, max(1, num_ctx) * parallel))
    swa_cells = cells if swa_full else min(cells, _pad(shape.sliding_window + ubatch, CTX_PAD))
    groups = _TensorGroups.of(gguf, shape.block_count, lm_head=shape.architecture not in _ENCODERS)
    v_max = max((shape.value_length[i] * shape.head_count_kv[i] for i in shape.attention_layers()), default=0)
    layers = []
    for i in range(shape.block_count):
        kv = 0
        if shape.kv_layers[i]:
            k_row = row_bytes(kv_cache_type, shape.key_length[i] * shape.head_count_kv[i])
            v_elements = shape.value_length[i] * shape.head_count_kv[i] if flash_attention else v_max
            v_row = row_bytes(kv_cache_type, v_elements) if shape.value_length[i] else 0
            kv = (k_row + v_row) * (swa_cells if shape.swa_layers[i] else cells) * parallel
        kv += shape.recurrent_state[i] * RECURRENT_STATE_BYTES * parallel
        layers.append(LayerMemory(groups.layers[i], kv))
    graph = _graph(shape, ubatch, cells, flash_attention)
    return ModelMemory(
        architecture=shape.architecture,
        layers=tuple(layers),
        output=groups.output + groups.tied,
        host=groups.host,
        host_output=groups.output,
        graph_full=graph,
        graph_partial=graph + groups.largest,
        projector=sum(t.nbytes for t in projector.tensors) if projector is not None else 0,
        kv_cells=cells,
        kv_cache_type=kv_cache_type,
        flash_attention=flash_attention,
    )


def _graph(shape: ModelShape, ubatch: int, cells: int, flash_attention: bool) -> int:
    """Compute buffer: f32 activations of one micro-batch, the larger of the layer pass and the logits."""
    heads = max(shape.head_count, default=0)
    scores = cells if flash_attention else cells * (1 + heads)
    layer_pass = 4 * shape.embedding_length + 2 * shape.feed_forward_length + scores
    logits = 2 * shape.embedding_length + shape.vocab_size
    graph = 4 * ubatch * max(layer_pass, logits)
    return graph + graph // 8


def _block_count(gguf: GGUFFile) -> int:
    declared = _int(gguf.metadata, f"{gguf.architecture}.block_count")
    if declared:
        return declared
    indices = [int(m.group(1)) for t in gguf.tensors if (m := _BLOCK.match(t.name))]
    return max(indices) + 1 if indices else 0


def _vocab_size(gguf: GGUFFile) -> int:
    for tensor in gguf.tensors:
        if tensor.name == "token_embd.weight" and len(tensor.shape) == 2:
            return tensor.shape[1]
    declared = _int(gguf.metadata, f"{gguf.architecture}.vocab_size")
    if declared:
        return declared
    tokens = gguf.metadata.array_info("tokenizer.ggml.tokens")
    return tokens.count if tokens is not None else 0


def _swa_layers(meta: GGUFMetadata, arch: str, n: int) -> tuple[bool, ...]:
    key = f"{arch}.attention.sliding_window_pattern"
    if key in meta and meta.array_info(key) is not None:
        flags = [bool(v) for v in meta[key]][:n]
        return tuple(flags + [False] * (n - len(flags)))
    if key not in meta and arch not in _SWA_PATTERNS:
        return (False,) * n
    period, dense_first = _SWA_PATTERNS.get(arch, (0, False))
    period = _int(meta, key, period)
    if period <= 0:
        return (True,) * n
    if dense_first:
        return tuple(i % period != 0 for i in range(n))
    return tuple(i % period < period - 1 for i in range(n))


def _recurrent_state(meta: GGUFMetadata, arch: str, heads_kv: Sequence[int]) -> tuple[int, ...]:
    d_state = _int(meta, f"{arch}.ssm.state_size")
    if not d_state:
        return (0,) * len(heads_kv)
    d_inner = _int(meta, f"{arch}.ssm.inner_size")
    d_conv = _int(meta, f"{arch}.ssm.conv_kernel")
    groups = _int(meta, f"{arch}.ssm.group_count")
    conv = (d_conv - 1) * (d_inner + 2 * groups * d_state) if d_conv > 0 else 0
    state = conv + d_state * d_inner
    return tuple(state if h == 0 else 0 for h in heads_kv)


def _int(meta: GGUFMetadata, key: str, default: int = 0) -> int:
    value = meta.scalar(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _per_layer(meta: GGUFMetadata, key: str, n: int, default: Any) -> tuple[Any, ...]:
    """A per-layer value: a scalar repeated, or an array (padded with its last value)."""
    if key not in meta:
        return (default,) * n
    if meta.array_info(key) is None:
        scalar = meta.scalar(key)
        return (int(scalar) if isinstance(scalar, (int, float)) else default,) * n
    values = [int(v) for v in meta[key]][:n]
    pad = values[-1] if values else default
    return tuple(values + [pad] * (n - len(values)))


def _pad(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
