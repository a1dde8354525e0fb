"""Frames exchanged between the server and a runner process.

Every frame is a msgspec Struct of a tagged union, encoded as msgpack and sent over a
stream socket with a 4-byte big-endian length prefix. Requests carry an ``id`` chosen by
the client; every answer to a request carries the same ``id``.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import msgspec

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30

ErrorKind = Literal["invalid", "internal"]
DoneReason = Literal["stop", "length"]
MediaKind = Literal["image", "audio"]


class Load(msgspec.Struct, tag="load", kw_only=True, omit_defaults=True):
    """Open a model. ``num_ctx`` is the window of one slot; the KV cache holds ``num_ctx * num_parallel``.

    ``tensor_split`` is the share of offloaded layers per GPU in llama.cpp's device order (empty:
    llama.cpp decides). ``num_thread`` 0 means the number of physical cores. ``use_mmap`` and
    ``flash_attn`` ``None`` mean llama.cpp's automatic choice. ``kv_cache_type`` is ``f16``,
    ``q8_0`` or ``q4_0``.
    ``embedding`` opens an embedding context only (no generation); ``pooling`` (``mean``,
    ``cls``, ``last``, ``rank``) overrides the GGUF's pooling type for embeddings.
    ``projector_path`` names a multimodal projector GGUF (llama.cpp's mmproj) that turns the
    images and audio of :class:`Generate` requests into embeddings.
    ``repack`` lets llama.cpp keep CPU weights in its extra buffer types: layouts repacked for
    the CPU's vector units and, where the build has them, AMX tiles.
    """

    model_path: str
    num_ctx: int = 2048
    num_parallel: int = 1
    num_batch: int = 512
    n_gpu_layers: int = -1
    main_gpu: int = 0
    tensor_split: list[float] = []
    num_thread: int = 0
    use_mmap: bool | None = None
    flash_attn: bool | None = None
    kv_cache_type: str = "f16"
    embedding: bool = False
    pooling: str | None = None
    projector_path: str | None = None
    lora_paths: list[str] = []
    lora_scales: list[float] = []
    repack: bool = True


class Options(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Sampling options with Ollama's defaults. ``seed`` -1 is random; ``temperature`` 0 is greedy;
    ``repeat_last_n`` -1 means the slot's window, 0 turns penalties off."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1


class Media(msgspec.Struct, kw_only=True):
    """One image or audio clip of a :class:`Generate`.

    ``image`` data is an encoded image file (PNG, JPEG, GIF or BMP); ``audio`` data is float32
    little-endian mono PCM at the projector's sample rate.
    """

    kind: MediaKind
    data: bytes


class Generate(msgspec.Struct, tag="generate", kw_only=True, omit_defaults=True):
    """Generate text for ``prompt`` (text, or token ids used as they are).

    ``media`` needs a text prompt holding llama.cpp's media marker (``<__media__>``) once per
    item, in order; the runner must have been loaded with a projector.

    ``format`` is ``"json"`` or a JSON schema object; ``grammar`` is a GBNF grammar (at most one
    of the two). ``num_predict`` -1 is unlimited (capped at 10 x ``num_ctx``), -2 fills the
    window. ``num_keep`` tokens at the start survive a context shift (-1: the whole prompt);
    ``shift`` false ends generation with ``length`` when the window is full instead. With
    ``truncate`` false an over-long prompt is an error, otherwise its middle is dropped.
    ``return_context`` asks for the prompt and generated token ids in :class:`Done`.
    ``logprobs`` asks for each generated token's log probability in the :class:`Token` frames,
    with the ``top_logprobs`` most likely tokens at each position.
    """

    prompt: str | list[int]
    id: int = 0
    add_special: bool = True
    parse_special: bool = True
    options: Options = msgspec.field(default_factory=Options)
    format: str | dict[str, Any] | None = None
    grammar: str | None = None
    stop: list[str] = []
    num_predict: int = -1
    num_keep: int = 4
    shift: bool = True
    truncate: bool = True
    return_context: bool = False
    media: list[Media] = []
    logprobs: bool = False
    top_logprobs: int = 0


class Embed(msgspec.Struct, tag="embed", kw_only=True, omit_defaults=True):
    """Pooled embeddings of each input (text, or token ids used as they are). Vectors are not normalised."""

    inputs: list[str | list[int]]
    id: int = 0
    truncate: bool = True


class Tokenize(msgspec.Struct, tag="tokenize", kw_only=True, omit_defaults=True):
    """Token ids of ``text``; ``add_special`` adds BOS/EOS as the model wants, ``parse_special`` reads markup tokens."""

    text: str
    id: int = 0
    add_special: bool = True
    parse_special: bool = True


class Detokenize(msgspec.Struct, tag="detokenize", kw_only=True, omit_defaults=True):
    """Text of ``tokens``; ``remove_special`` drops BOS/EOS, ``unparse_special`` renders markup tokens."""

    tokens: list[int]
    id: int = 0
    remove_special: bool = False
    unparse_special: bool = True


class Inspect(msgspec.Struct, tag="inspect", kw_only=True, omit_defaults=True):
    """Run ``tokens`` once through a fresh context with an f32 KV cache, to check a conversion.

    The answer holds what the model computed (the pooled embedding for embedding models, else
    the last position's logits) and each graph tensor named in ``tensors`` (llama.cpp's names,
    such as ``l_out-3``) that the graph computed.
    """

    tokens: list[int]
    tensors: list[str] = []
    id: int = 0


class Cancel(msgspec.Struct, tag="cancel"):
    """Stop request ``id`` now and free its slot; nothing more is sent for it."""

    id: int


class Shutdown(msgspec.Struct, tag="shutdown"):
    """Finish: the runner frees the model and exits."""


class Ready(msgspec.Struct, tag="ready", kw_only=True):
    """The model is loaded. ``n_ctx`` is the window of one slot; ``load_duration`` is in ns."""

    n_ctx: int
    n_ctx_train: int
    n_embd: int
    n_vocab: int
    num_parallel: int
    n_threads: int
    bos: int
    eos: int
    add_bos: bool
    embedding_only: bool
    pooling: str | None
    gpu_offload: bool
    load_duration: int


class TokenLogprob(msgspec.Struct):
    """A token's text, its natural-log probability and the bytes of its text (which may be part
    of a UTF-8 character; ``token`` then holds a replacement character)."""

    token: str
    logprob: float
    bytes: list[int]


class Logprob(TokenLogprob):
    """A generated token's :class:`TokenLogprob`, with the most likely tokens at its position."""

    top_logprobs: list[TokenLogprob] = []


class Token(msgspec.Struct, tag="token", omit_defaults=True):
    """A piece of generated text (one or more tokens, whole UTF-8 characters), with the log
    probabilities of the tokens it completes when the request asked for them."""

    id: int
    text: str
    logprobs: list[Logprob] = []


class Metrics(msgspec.Struct, kw_only=True):
    """Per-request counts and durations (ns).

    ``prompt_eval_count`` counts prompt tokens evaluated; ``prompt_cached`` counts prompt tokens
    reused from the slot's cache. ``max_batch_seqs`` is the most sequences that shared one
    ``llama_decode`` with this request; ``context_shifts`` how often its window was shifted;
    ``slot`` the slot (llama.cpp sequence id) that served it.
    """

    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    prompt_cached: int = 0
    prompt_truncated: bool = False
    max_batch_seqs: int = 0
    context_shifts: int = 0
    slot: int = -1


class Done(msgspec.Struct, tag="done", kw_only=True):
    """Generation finished. ``tokens`` are the generated ids; ``context`` is prompt + generated ids
    when asked for."""

    id: int
    done_reason: DoneReason
    metrics: Metrics
    tokens: list[int]
    context: list[int] | None = None


class Error(msgspec.Struct, tag="error", kw_only=True):
    """Request ``id`` failed (``None``: the runner itself). ``kind`` ``invalid`` means bad input."""

    id: int | None
    message: str
    kind: ErrorKind = "internal"


class Embeddings(msgspec.Struct, tag="embeddings", kw_only=True):
    """One vector per input, the number of tokens each input used, and the duration in ns."""

    id: int
    embeddings: list[list[float]]
    token_counts: list[int]
    duration: int


class Inspection(msgspec.Struct, tag="inspection", kw_only=True):
    """The answer to :class:`Inspect`: float32 little-endian arrays; each tensor is rows of
    ``width`` values (one row per token the graph kept at that point)."""

    id: int
    final: bytes
    tensors: dict[str, bytes]
    width: int


class Tokens(msgspec.Struct, tag="tokens", kw_only=True):
    """The answer to :class:`Tokenize`."""

    id: int
    tokens: list[int]


class Text(msgspec.Struct, tag="text", kw_only=True):
    """The answer to :class:`Detokenize`."""

    id: int
    text: str


ToRunner = Load | Generate | Embed | Tokenize | Detokenize | Inspect | Cancel | Shutdown
FromRunner = Ready | Token | Done | Error | Embeddings | Tokens | Text | Inspection


class FrameError(Exception):
    """The byte stream does not hold a valid frame."""


class FrameEncoder:
    """Encodes frames with their length prefix."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()

    def encode(self, frame: msgspec.Struct) -> bytes:
        """One frame: length prefix and msgpack payload."""
        payload = self._encoder.encode(frame)
        return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frames of one union type, keeping incomplete data for later."""

    def __init__(self, frame_type: Any) -> None:
        self._decoder = msgspec.msgpack.Decoder(frame_type)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes and return every frame now complete."""
        buffer = self._buffer
        buffer += data
        frames: list[Any] = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (size,) = HEADER.unpack_from(buffer, start)
            if size > MAX_FRAME:
                raise FrameError(f"frame of {size} bytes exceeds the limit")
            if end - start - 4 < size:
                break
            body = memoryview(buffer)[start + 4 : start + 4 + size]
            try:
                frames.append(self._decoder.decode(body))
            except msgspec.DecodeError as exc:
                raise FrameError(f"invalid frame: {exc}") from exc
            finally:
                body.release()
            start += 4 + size
        if start:
            del buffer[:start]
        return frames
