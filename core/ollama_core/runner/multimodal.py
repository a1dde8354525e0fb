"""Images and audio in a runner: llama.cpp's mtmd over the engine's model.

A prompt with media is tokenized by mtmd into text chunks and media chunks. The engine prefills
the text chunks in its shared batch like any prompt and evaluates each media chunk on its own
(projector encode, then a decode into that sequence's KV cache) between batch steps. In token
lists a media chunk stands as a negative id (see :func:`is_media`) once per position it takes,
derived from the media's content and the chunk's place in it: no real token has it, and a slot
that evaluated the same image at the same place matches it, so its cache is reused past it.
"""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from ollama_core.runner.protocol import Media


def is_media(token: int) -> bool:
    """Whether a position of a media prompt belongs to a media chunk."""
    return token < 0


def _media_token(media_id: bytes, ordinal: int) -> int:
    """The negative id that stands for the ``ordinal``-th chunk of the media item ``media_id``."""
    digest = hashlib.blake2b(media_id + ordinal.to_bytes(4, "little"), digest_size=8).digest()
    return -1 - (int.from_bytes(digest, "little") >> 1)


class ProjectorError(Exception):
    """A media request the projector cannot serve (bad input or unsupported modality)."""


def image_token_budget(path: str) -> int:
    """The most tokens one image may take (``clip.vision.image_max_tokens``), 0 when unrecorded."""
    from ollama_core.gguf import read_gguf

    value = read_gguf(Path(path)).metadata.scalar("clip.vision.image_max_tokens")
    return int(value) if isinstance(value, int) and value > 0 else 0


@dataclass(frozen=True)
class MediaChunk:
    """One media chunk of a prompt: where it starts, the positions and tokens it takes, its handle."""

    start: int
    n_pos: int
    n_tokens: int
    handle: Any


class MediaPrompt:
    """A tokenized media prompt: token ids with negative ids for media positions, and the chunks."""

    def __init__(self, chunks: Any, tokens: list[int], parts: list[MediaChunk]) -> None:
        self._chunks = chunks
        self.tokens = tokens
        self.parts = parts
        self.next = 0

    def text_end(self) -> int:
        """Where the current text run ends: at the next media chunk, or the prompt's end."""
        if self.next < len(self.parts):
            return self.parts[self.next].start
        return len(self.tokens)

    def resume(self, cached: int) -> int:
        """Take the first ``cached`` positions as evaluated, moved back to the start of a chunk they
        would split; the chunks before that count as evaluated. Returns the positions taken."""
        for part in self.parts:
            if part.start < cached < part.start + part.n_pos:
                cached = part.start
                break
        self.next = sum(1 for part in self.parts if part.start + part.n_pos <= cached)
        return cached

    def pending(self, n_done: int) -> MediaChunk | None:
        """The media chunk to evaluate now, when the prompt has been evaluated up to its start."""
        if self.next < len(self.parts) and self.parts[self.next].start == n_done:
            return self.parts[self.next]
        return None

    def close(self) -> None:
        """Free the chunks."""
        if self._chunks:
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_input_chunks_free(self._chunks)
            self._chunks = None


class Projector:
    """An mtmd context for one model; not thread-safe, like the engine that owns it."""

    def __init__(self, path: str, model: Any, *, n_threads: int, use_gpu: bool, image_max_tokens: int) -> None:
        from llama_cpp import mtmd_cpp

        self.mtmd = mtmd_cpp
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        if image_max_tokens > 0:
            params.image_max_tokens = image_max_tokens
        self.ctx = mtmd_cpp.mtmd_init_from_file(path.encode(), model, params)
        if not self.ctx:
            raise ProjectorError(f"unable to load the multimodal projector {path}")
        self.vision = bool(mtmd_cpp.mtmd_support_vision(self.ctx))
        self.audio = bool(mtmd_cpp.mtmd_support_audio(self.ctx))
        # M-RoPE models need several positions per text token, which the engine's batch does not carry.
        self.mrope = bool(mtmd_cpp.mtmd_decode_use_mrope(self.ctx))

    def tokenize(
        self, text: str, media: list[Media], *, add_special: bool, parse_special: bool, n_ubatch: int
    ) -> MediaPrompt:
        """Chunks of ``text`` with each marker standing for the next item of ``media``."""
        if self.mrope:
            raise ProjectorError("images and audio are not supported for models with M-RoPE positions")
        mtmd = self.mtmd
        bitmaps: list[Any] = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            for item in media:
                bitmaps.append(self._bitmap(item))
                digest = hashlib.blake2b(item.kind.encode() + b"\0" + item.data, digest_size=16).hexdigest()
                mtmd.mtmd_bitmap_set_id(bitmaps[-1], digest.encode())
            encoded = text.encode()
            prompt = mtmd.mtmd_input_text(encoded, len(encoded), add_special, parse_special)
            array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(prompt), array, len(bitmaps))
            if rc != 0:
                reason = "the prompt's media markers do not match the media" if rc == 1 else "preprocessing failed"
                raise ProjectorError(f"cannot read the images or audio: {reason}")
            return self._layout(chunks, n_ubatch)
        except BaseException:
            mtmd.mtmd_input_chunks_free(chunks)
            raise
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def _bitmap(self, item: Media) -> Any:
        mtmd = self.mtmd
        if item.kind == "audio":
            if not self.audio:
                raise ProjectorError("this model does not support audio input")
            samples = np.frombuffer(item.data, dtype="<f4")
            if not samples.size:
                raise ProjectorError("the audio is empty")
            bitmap = mtmd.mtmd_bitmap_init_from_audio(
                samples.size, samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            )
        else:
            if not self.vision:
                raise ProjectorError("this model does not support image input")
            buffer = (ctypes.c_uint8 * len(item.data)).from_buffer_copy(item.data)
            bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.ctx, buffer, len(item.data), False)
            if bitmap and mtmd.mtmd_bitmap_is_audio(bitmap):
                mtmd.mtmd_bitmap_free(bitmap)
                bitmap = None
        if not bitmap:
            raise ProjectorError(f"unable to decode the {item.kind}")
        return bitmap

    def _layout(self, chunks: Any, n_ubatch: int) -> MediaPrompt:
        mtmd = self.mtmd
        tokens: list[int] = []
        parts: list[MediaChunk] = []
        ordinals: dict[bytes, int] = {}
        for index in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, index)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens.extend(ids[: count.value])
                continue
            n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            if n_tokens > n_ubatch and mtmd.mtmd_decode_use_non_causal(self.ctx, chunk):
                raise ProjectorError(
                    f"an image takes {n_tokens} tokens, more than the batch size {n_ubatch}; raise num_batch"
                )
            n_pos = mtmd.mtmd_input_chunk_get_n_pos(chunk)
            parts.append(MediaChunk(start=len(tokens), n_pos=n_pos, n_tokens=n_tokens, handle=chunk))
            media_id = mtmd.mtmd_input_chunk_get_id(chunk) or b""
            ordinal = ordinals[media_id] = ordinals.get(media_id, -1) + 1
            tokens.extend([_media_token(media_id, ordinal)] * n_pos)
        return MediaPrompt(chunks, tokens, parts)

    def evaluate(self, ctx: Any, chunk: MediaChunk, seq_id: int, n_batch: int, logits_last: bool) -> bool:
        """Encode ``chunk`` and decode it into ``seq_id`` at its start position; False on failure."""
        n_past = llama_cpp.llama_pos(0)
        rc = self.mtmd.mtmd_helper_eval_chunk_single(
            self.ctx, ctx, chunk.handle, chunk.start, seq_id, n_batch, logits_last, ctypes.byref(n_past)
        )
        return rc == 0 and n_past.value == chunk.start + chunk.n_pos

    def close(self) -> None:
        """Free the mtmd context."""
        if self.ctx:
            self.mtmd.mtmd_free(self.ctx)
            self.ctx = None
