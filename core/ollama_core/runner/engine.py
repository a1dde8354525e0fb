"""The engine inside a runner process: one llama.cpp context, a slot per parallel sequence, one batch loop.

Every loop iteration builds one ``llama_batch`` holding the next token of each generating
sequence and prompt chunks of newly admitted ones, calls ``llama_decode`` once, samples each
sequence that has logits and queues the resulting frames, which go out in one write. With a
multimodal projector, the images and audio of a prompt are evaluated into their sequence between
batch steps (see :mod:`ollama_core.runner.multimodal`). Embedding requests run on a context of
their own (see :mod:`ollama_core.runner.embedding`).
"""

from __future__ import annotations

import bisect
import codecs
import ctypes
import logging
import os
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import llama_cpp
import numpy as np

from ollama_core.runner.protocol import (
    Cancel,
    Detokenize,
    Done,
    Embed,
    Embeddings,
    Error,
    ErrorKind,
    FrameEncoder,
    Generate,
    Inspect,
    Inspection,
    Load,
    Logprob,
    Metrics,
    Ready,
    Shutdown,
    Text,
    Token,
    TokenLogprob,
    Tokenize,
    Tokens,
    ToRunner,
)
from ollama_core.runner.batch import Batch
from ollama_core.runner.embedding import EmbeddingContext, EmbeddingError
from ollama_core.runner.inspect import inspect_pass
from ollama_core.runner.multimodal import MediaPrompt, Projector, ProjectorError, image_token_budget, is_media
from ollama_core.runner.sampling import GrammarError, Sampler, resolve_grammar

log = logging.getLogger(__name__)

INPUT_TOO_LONG = "the input length exceeds the context length"
KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
POOLING = {
    "none": llama_cpp.LLAMA_POOLING_TYPE_NONE,
    "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS,
    "last": llama_cpp.LLAMA_POOLING_TYPE_LAST,
    "rank": llama_cpp.LLAMA_POOLING_TYPE_RANK,
}
POOLING_NAMES = {value: name for name, value in POOLING.items()}
REUSE_WEIGHT = 10
"""How many cached tokens a reused prompt token is worth when choosing a slot: a request takes the free
slot that saves the most prompt work without discarding much more of another conversation's cache."""
SPLIT_PENALTY = 256 * REUSE_WEIGHT
"""What a slot choice that makes decode steps take one more llama.cpp micro-batch costs, in the units
of ``REUSE_WEIGHT``: as much as reusing 256 prompt tokens saves (see :meth:`Engine._admit`)."""


class LoadError(Exception):
    """The model or its context could not be set up."""


class RequestFailed(Exception):
    """A request cannot be served; ``kind`` ``invalid`` blames the input."""

    def __init__(self, message: str, kind: ErrorKind = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.kind: ErrorKind = kind


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads not counted)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            physical = core = ""
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                    cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(allowed, len(cores) or allowed))


class _Slot:
    __slots__ = ("cache", "last_used", "seq", "seq_id")

    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self.cache: list[int] = []
        self.seq: _Sequence | None = None
        self.last_used = 0


class _Sequence:
    """One generate request from admission to its Done frame."""

    __slots__ = (
        "decoder",
        "fill",
        "generated",
        "held",
        "id",
        "limit",
        "logprobs",
        "media",
        "metrics",
        "n_done",
        "n_keep",
        "out_index",
        "pending",
        "prompt",
        "return_context",
        "sampler",
        "shift",
        "slot",
        "stop_max",
        "stops",
        "t_prompt",
        "t_start",
        "temperature",
        "top_logprobs",
    )

    def __init__(self, req: Generate, prompt: list[int], sampler: Sampler, n_keep: int, limit: int) -> None:
        self.id = req.id
        self.prompt = prompt
        self.sampler = sampler
        self.slot: _Slot | None = None
        self.n_done = 0
        self.n_keep = n_keep
        self.limit = limit
        self.shift = req.shift
        self.fill = req.num_predict == -2
        self.stops = [s for s in req.stop if s]
        self.stop_max = max((len(s) for s in self.stops), default=0)
        self.held = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending: int | None = None
        self.out_index = -1
        self.generated: list[int] = []
        self.metrics = Metrics()
        self.t_start = 0
        self.t_prompt = 0
        self.return_context = req.return_context
        self.media: MediaPrompt | None = None
        self.logprobs: list[Logprob] | None = [] if req.logprobs else None
        self.top_logprobs = max(0, req.top_logprobs)
        self.temperature = req.options.temperature

    def close(self) -> None:
        """Free the sampler and any media chunks."""
        self.sampler.close()
        if self.media is not None:
            self.media.close()

    def text_prompt(self) -> list[int]:
        """The prompt's token ids without the positions of its media."""
        return [t for t in self.prompt if not is_media(t)] if self.media is not None else self.prompt


class Engine:
    """Loads a model and serves frames until :class:`Shutdown`. Not thread-safe: one thread drives it."""

    def __init__(self, load: Load) -> None:
        started = time.perf_counter_ns()
        self.load = load
        self.n_threads = load.num_thread if load.num_thread > 0 else physical_cores()
        self._encoder = FrameEncoder()
        self._out: list[bytes] = []
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._waiting: deque[_Sequence] = deque()
        self._active: list[_Sequence] = []  # in slot order
        self._tick = 0
        self._loras: list[Any] = []
        self.ctx: Any = None
        self._embedder: EmbeddingContext | None = None
        self.projector: Projector | None = None
        if load.kv_cache_type not in KV_TYPES:
            raise LoadError(f"unsupported kv_cache_type {load.kv_cache_type!r}; use one of {', '.join(KV_TYPES)}")
        if load.pooling is not None and load.pooling not in POOLING:
            raise LoadError(f"unsupported pooling {load.pooling!r}; use one of {', '.join(POOLING)}")
        llama_cpp.llama_backend_init()
        self.model = self._load_model()
        try:
            self.vocab = llama_cpp.llama_model_get_vocab(self.model)
            self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
            self.n_embd = llama_cpp.llama_model_n_embd(self.model)
            self.pooling = self._pooling()
            self.embedding_only = load.embedding or self._gguf_pooling() not in (None, llama_cpp.LLAMA_POOLING_TYPE_NONE)
            self._load_loras()
            if self.embedding_only:
                self._embedder = self._embedding_context()
                self.n_ctx = max(4, load.num_ctx)
                self.slots: list[_Slot] = []
            else:
                self._generation_context()
            self._warm_up()
        except BaseException:
            self.close()
            raise
        self.ready = Ready(
            n_ctx=self.n_ctx,
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(self.model),
            n_embd=self.n_embd,
            n_vocab=self.n_vocab,
            num_parallel=len(self.slots) if self.slots else 1,
            n_threads=self.n_threads,
            bos=llama_cpp.llama_vocab_bos(self.vocab),
            eos=llama_cpp.llama_vocab_eos(self.vocab),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self.vocab)),
            embedding_only=self.embedding_only,
            pooling=POOLING_NAMES.get(self.pooling) if self.embedding_only or self._embedder else None,
            gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
            load_duration=time.perf_counter_ns() - started,
        )

    def _load_model(self) -> Any:
        load = self.load
        if not os.path.isfile(load.model_path):
            raise LoadError(f"model file not found: {load.model_path}")
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = load.n_gpu_layers
        params.main_gpu = load.main_gpu
        if load.tensor_split:
            split = list(load.tensor_split)[: llama_cpp.LLAMA_MAX_DEVICES]
            self._tensor_split = (ctypes.c_float * llama_cpp.LLAMA_MAX_DEVICES)(*split)
            params.tensor_split = self._tensor_split
        params.use_extra_bufts = load.repack
        if load.use_mmap is not None:
            params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if load.use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        model = llama_cpp.llama_model_load_from_file(load.model_path.encode(), params)
        if not model:
            raise LoadError(f"unable to load model: {load.model_path}")
        return model

    def _load_loras(self) -> None:
        load = self.load
        for path in load.lora_paths:
            adapter = llama_cpp.llama_adapter_lora_init(self.model, path.encode())
            if not adapter:
                raise LoadError(f"unable to load LoRA adapter: {path}")
            self._loras.append(adapter)

    def _apply_loras(self, ctx: Any) -> None:
        if not self._loras:
            return
        count = len(self._loras)
        scales = list(self.load.lora_scales) + [1.0] * (count - len(self.load.lora_scales))
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * count)(*self._loras)
        values = (ctypes.c_float * count)(*scales[:count])
        if llama_cpp.llama_set_adapters_lora(ctx, adapters, count, values) != 0:
            raise LoadError("unable to apply LoRA adapters")

    def _gguf_pooling(self) -> int | None:
        buf = ctypes.create_string_buffer(128)
        if llama_cpp.llama_model_meta_val_str(self.model, b"general.architecture", buf, len(buf)) < 0:
            return None
        key = buf.value + b".pooling_type"
        if llama_cpp.llama_model_meta_val_str(self.model, key, buf, len(buf)) < 0:
            return None
        try:
            return int(buf.value)
        except ValueError:
            return None

    def _pooling(self) -> int:
        if self.load.pooling is not None and self.load.pooling != "none":
            return POOLING[self.load.pooling]
        pooling = self._gguf_pooling()
        if pooling in (None, llama_cpp.LLAMA_POOLING_TYPE_NONE, llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED):
            return llama_cpp.LLAMA_POOLING_TYPE_MEAN
        return int(pooling)

    def _context_params(self) -> Any:
        load = self.load
        params = llama_cpp.llama_context_default_params()
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.no_perf = True
        if load.flash_attn is not None:
            params.flash_attn_type = (
                llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if load.flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        params.type_k = params.type_v = KV_TYPES[load.kv_cache_type]
        return params

    def _generation_context(self) -> None:
        load = self.load
        parallel = max(1, load.num_parallel)
        num_ctx = max(4, load.num_ctx)
        params = self._context_params()
        params.n_seq_max = parallel
        params.n_ctx = num_ctx * parallel
        n_batch = max(1, min(load.num_batch, num_ctx * parallel))
        image_tokens = image_token_budget(load.projector_path) if load.projector_path else 0
        # An image's tokens are decoded non-causally, so they must fit in one ubatch.
        params.n_batch = params.n_ubatch = max(n_batch, min(image_tokens, num_ctx * parallel))
        # A KV stream of num_ctx cells per slot, as llama-server and Ollama use: each sequence
        # attends over its own cells only, where a shared buffer makes every sequence scan the
        # cells of all of them. llama.cpp decodes a batch in one micro-batch only while its
        # sequences have consecutive ids, in order: the batch is built in slot order and
        # _admit prefers slots that keep the busy ones consecutive.
        params.kv_unified = False
        ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not ctx:
            raise LoadError("unable to create the llama context (out of memory?)")
        self.ctx = ctx
        self._apply_loras(ctx)
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.can_shift = bool(self.mem) and bool(llama_cpp.llama_memory_can_shift(self.mem))
        self.n_ctx = min(num_ctx, llama_cpp.llama_n_ctx_seq(ctx))
        self.n_batch = llama_cpp.llama_n_batch(ctx)
        self.slots = [_Slot(i) for i in range(parallel)]
        self._batch = Batch(max(self.n_batch, parallel))
        if load.projector_path:
            use_gpu = load.n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
            try:
                self.projector = Projector(load.projector_path, self.model, n_threads=self.n_threads,
                                           use_gpu=use_gpu, image_max_tokens=image_tokens)
            except ProjectorError as exc:
                raise LoadError(str(exc)) from exc

    def _embedding_context(self) -> EmbeddingContext:
        params = self._context_params()
        params.n_ctx = max(4, self.load.num_ctx)
        try:
            embedder = EmbeddingContext(self.model, params, self.pooling, self.n_embd)
        except EmbeddingError as exc:
            raise LoadError(str(exc)) from exc
        self._apply_loras(embedder.ctx)
        return embedder

    def _warm_up(self) -> None:
        """Decode two tokens and forget them, so that the load, not the first request, meets
        kernels that fail on this machine (the matrix kernels run on batches of two or more)."""
        if self._embedder is not None:
            try:
                self._embedder.embed([[0, 1]])
            except EmbeddingError as exc:
                raise LoadError(f"the warm-up failed: {exc}") from None
            return
        self._batch.add_run(0, [0, 1], 0, 0, False)
        self._batch.logits[1] = 1
        self._batch.struct.n_tokens = 2
        rc = llama_cpp.llama_decode(self.ctx, self._batch.struct)
        llama_cpp.llama_memory_seq_rm(self.mem, 0, -1, -1)
        if rc != 0:
            raise LoadError(f"the warm-up decode failed (llama_decode returned {rc})")

    def close(self) -> None:
        """Free every sequence, context and the model."""
        for seq in [*self._active, *self._waiting]:
            seq.close()
        self._active.clear()
        self._waiting.clear()
        if self.projector is not None:
            self.projector.close()
            self.projector = None
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            llama_cpp.llama_model_free(self.model)
            self.model = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, inbox: queue.SimpleQueue[ToRunner], send: Callable[[bytes], None]) -> None:
        """Serve frames from ``inbox`` until Shutdown; ``send`` writes encoded frames to the server."""
        while True:
            if not (self._active or self._waiting) and not self._handle(inbox.get()):
                break
            while not inbox.empty():
                if not self._handle(inbox.get_nowait()):
                    self._flush(send)
                    return
            if self._active or self._waiting:
                try:
                    self._step()
                except Exception as exc:
                    log.exception("batch step failed")
                    self._fail_all(f"runner error: {exc}")
            self._flush(send)
        self._flush(send)

    def _flush(self, send: Callable[[bytes], None]) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            send(data)

    def _emit(self, frame: Any) -> None:
        self._out.append(self._encoder.encode(frame))

    def _handle(self, frame: ToRunner) -> bool:
        """Act on one frame; False on Shutdown."""
        if isinstance(frame, Shutdown):
            return False
        if isinstance(frame, Cancel):
            self._cancel(frame.id)
            return True
        if isinstance(frame, Load):
            self._emit(Error(id=None, message="the model is already loaded", kind="invalid"))
            return True
        try:
            if isinstance(frame, Generate):
                self._submit(frame)
            elif isinstance(frame, Embed):
                self._emit(self._embed(frame))
            elif isinstance(frame, Tokenize):
                self._emit(Tokens(id=frame.id, tokens=self.tokenize(frame.text, frame.add_special, frame.parse_special)))
            elif isinstance(frame, Detokenize):
                text = self.detokenize(frame.tokens, frame.remove_special, frame.unparse_special)
                self._emit(Text(id=frame.id, text=text))
            elif isinstance(frame, Inspect):
                self._emit(self._inspect(frame))
        except RequestFailed as exc:
            self._emit(Error(id=frame.id, message=exc.message, kind=exc.kind))
        except Exception as exc:
            log.exception("request %s failed", frame.id)
            self._emit(Error(id=frame.id, message=str(exc) or type(exc).__name__, kind="internal"))
        return True

    def _inspect(self, req: Inspect) -> Inspection:
        """One pass over ``req.tokens`` in a throw-away context, for checking a conversion."""
        if not req.tokens or any(t < 0 or t >= self.n_vocab for t in req.tokens):
            raise RequestFailed("inspection needs a non-empty list of this model's token ids")
        params = self._context_params()
        embedding = self.embedding_only
        if embedding:
            params.pooling_type = self.pooling
        width = self._embedder.dim if self._embedder is not None and embedding else self.n_vocab
        final, tensors = inspect_pass(self.model, params, list(req.tokens), req.tensors, embedding=embedding,
                                      width=width)
        return Inspection(id=req.id, final=final, tensors=tensors, width=self.n_embd)

    # -- vocabulary -------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of ``text``."""
        data = text.encode()
        size = len(data) + 8
        buf = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, parse_special)
        if n < 0:
            size = -n
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, parse_special)
        if n < 0:
            raise RequestFailed("tokenization failed", "internal")
        return buf[:n]

    def detokenize(self, tokens: list[int], remove_special: bool = False, unparse_special: bool = True) -> str:
        """Text of ``tokens``."""
        if any(t < 0 or t >= self.n_vocab for t in tokens):
            raise RequestFailed("token id out of range")
        ids = (llama_cpp.llama_token * max(1, len(tokens)))(*tokens)
        size = max(64, len(tokens) * 8)
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self.vocab, ids, len(tokens), buf, size, remove_special, unparse_special)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            size = -n
        raise RequestFailed("detokenization failed", "internal")

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(256)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            piece = self._pieces[token] = buf.raw[: max(n, 0)]
        return piece

    def _is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return eog

    # -- generation -------------------------------------------------------------------------

    def _submit(self, req: Generate) -> None:
        if self.embedding_only:
            raise RequestFailed("this model does not support generate")
        media = self._media_prompt(req) if req.media else None
        try:
            self._queue(req, media)
        except BaseException:
            if media is not None:
                media.close()
            raise

    def _media_prompt(self, req: Generate) -> MediaPrompt:
        if self.projector is None:
            raise RequestFailed("this model does not support image or audio input")
        if not isinstance(req.prompt, str):
            raise RequestFailed("images and audio need a text prompt")
        try:
            return self.projector.tokenize(req.prompt, req.media, add_special=req.add_special,
                                           parse_special=req.parse_special, n_ubatch=self.n_batch)
        except ProjectorError as exc:
            raise RequestFailed(str(exc)) from exc

    def _queue(self, req: Generate, media: MediaPrompt | None) -> None:
        if media is not None:
            prompt = media.tokens
        elif isinstance(req.prompt, str):
            prompt = self.tokenize(req.prompt, req.add_special, req.parse_special)
        else:
            prompt = list(req.prompt)
            if any(t < 0 or t >= self.n_vocab for t in prompt):
                raise RequestFailed("token id out of range")
        if not prompt:
            bos = llama_cpp.llama_vocab_bos(self.vocab)
            if bos < 0:
                raise RequestFailed("the prompt is empty")
            prompt = [bos]
        n_ctx = self.n_ctx
        keep_limit = max(0, n_ctx - 4)
        n_keep = min(len(prompt) if req.num_keep < 0 else req.num_keep, keep_limit)
        truncated = False
        if len(prompt) > n_ctx:
            if not req.truncate or media is not None:
                raise RequestFailed(INPUT_TOO_LONG)
            prompt = prompt[:n_keep] + prompt[len(prompt) - (n_ctx - n_keep) :]
            truncated = True
        try:
            grammar = resolve_grammar(req.format, req.grammar)
            sampler = Sampler(self.vocab, req.options, n_ctx=n_ctx, grammar=grammar)
        except GrammarError as exc:
            raise RequestFailed(str(exc)) from exc
        limit = req.num_predict if req.num_predict > 0 else 10 * n_ctx
        seq = _Sequence(req, prompt, sampler, n_keep, limit)
        seq.media = media
        seq.metrics.prompt_truncated = truncated
        self._waiting.append(seq)

    def _cancel(self, request_id: int) -> None:
        for seq in self._waiting:
            if seq.id == request_id:
                self._waiting.remove(seq)
                seq.close()
                return
        for seq in self._active:
            if seq.id == request_id:
                self._release(seq)
                return

    def _admit(self) -> None:
        """Move waiting requests into free slots. A request takes the slot that reuses the most of
        its prompt's cached prefix (see ``REUSE_WEIGHT``), less ``SPLIT_PENALTY`` for each
        micro-batch the busy slots' decode steps would then take; ties go to the least recently used."""
        while self._waiting:
            free = [slot for slot in self.slots if slot.seq is None]
            if not free:
                return
            seq = self._waiting.popleft()
            prompt = seq.prompt
            busy = {s.slot.seq_id for s in self._active if s.slot is not None}
            best, best_len, best_score = free[0], 0, None
            for slot in free:
                n = _common_prefix(slot.cache, prompt)
                score = REUSE_WEIGHT * n - (len(slot.cache) - n) - SPLIT_PENALTY * _runs(busy | {slot.seq_id})
                if best_score is None or score > best_score or (score == best_score and slot.last_used < best.last_used):
                    best, best_len, best_score = slot, n, score
            reuse = min(best_len, len(prompt) - 1)
            if seq.media is not None:
                reuse = seq.media.resume(reuse)
            if reuse < len(best.cache):
                if not llama_cpp.llama_memory_seq_rm(self.mem, best.seq_id, reuse, -1):
                    llama_cpp.llama_memory_seq_rm(self.mem, best.seq_id, -1, -1)
                    reuse = 0
                del best.cache[reuse:]
            best.seq = seq
            seq.slot = best
            seq.n_done = reuse
            seq.metrics.prompt_cached = reuse
            seq.metrics.slot = best.seq_id
            seq.sampler.feed_prompt(seq.text_prompt())
            seq.t_start = time.perf_counter_ns()
            bisect.insort(self._active, seq, key=_slot_order)

    def _make_room(self) -> None:
        """Shift (or end) sequences whose next token would not fit their window."""
        n_ctx = self.n_ctx
        for seq in list(self._active):
            if seq.pending is None:
                continue
            slot = seq.slot
            assert slot is not None
            n_past = len(slot.cache)
            if n_past < n_ctx:
                continue
            if not seq.shift or seq.fill or not self.can_shift:
                self._finish(seq, "length")
                continue
            n_keep = seq.n_keep
            n_discard = max(1, (n_past - n_keep) // 2)
            llama_cpp.llama_memory_seq_rm(self.mem, slot.seq_id, n_keep, n_keep + n_discard)
            llama_cpp.llama_memory_seq_add(self.mem, slot.seq_id, n_keep + n_discard, n_past, -n_discard)
            del slot.cache[n_keep : n_keep + n_discard]
            seq.metrics.context_shifts += 1

    def _build(self, limit: int) -> tuple[int, list[_Sequence], list[tuple[_Sequence, int, int]]]:
        """Fill the batch with at most ``limit`` tokens, in slot order: the next token of each
        generating sequence, and prompt chunks in the room those leave."""
        batch = self._batch
        token, pos, seq_ids, logits = batch.token, batch.pos, batch.seq, batch.logits
        active = self._active
        room = limit - sum(1 for seq in active if seq.pending is not None)
        n = 0
        decoding: list[_Sequence] = []
        prefilling: list[tuple[_Sequence, int, int]] = []
        for seq in active:
            if n >= limit:
                break
            slot = seq.slot
            assert slot is not None
            if seq.pending is not None:
                token[n] = seq.pending
                pos[n] = len(slot.cache)
                seq_ids[n] = slot.seq_id
                logits[n] = 1
                seq.out_index = n
                decoding.append(seq)
                n += 1
                continue
            start = seq.n_done
            stop = seq.media.text_end() if seq.media is not None else len(seq.prompt)
            if room <= 0 or stop <= start:
                continue
            end = min(stop, start + room)
            room -= end - start
            batch.add_run(n, seq.prompt[start:end], start, slot.seq_id, False)
            n += end - start
            if end == len(seq.prompt):
                logits[n - 1] = 1
                seq.out_index = n - 1
            else:
                seq.out_index = -1
            prefilling.append((seq, start, end))
        batch.struct.n_tokens = n
        return n, decoding, prefilling

    def _step(self) -> None:
        self._admit()
        self._make_room()
        if self.projector is not None:
            self._evaluate_media()
        if not self._active:
            return
        limit = self.n_batch
        while True:
            n, decoding, prefilling = self._build(limit)
            if n == 0:
                return
            now = time.perf_counter_ns()
            for seq, _, _ in prefilling:
                if seq.t_prompt == 0:
                    seq.t_prompt = now
            rc = llama_cpp.llama_decode(self.ctx, self._batch.struct)
            if rc == 0:
                break
            if rc == 1 and limit > 1:
                limit = max(1, limit // 2)
                log.warning("no KV slot for a batch of %d tokens; retrying with at most %d", n, limit)
                continue
            message = "the context size was exceeded" if rc == 1 else f"llama_decode failed ({rc})"
            self._fail([*decoding, *(seq for seq, _, _ in prefilling)], message)
            return
        self._tick += 1
        n_seqs = len(decoding) + len(prefilling)
        for seq in decoding:
            slot = seq.slot
            assert slot is not None and seq.pending is not None
            slot.cache.append(seq.pending)
            seq.pending = None
            if n_seqs > seq.metrics.max_batch_seqs:
                seq.metrics.max_batch_seqs = n_seqs
        ready = decoding
        for seq, start, end in prefilling:
            slot = seq.slot
            assert slot is not None
            slot.cache.extend(seq.prompt[start:end])
            seq.n_done = end
            seq.metrics.prompt_eval_count += end - start
            if n_seqs > seq.metrics.max_batch_seqs:
                seq.metrics.max_batch_seqs = n_seqs
            if seq.out_index >= 0:
                ready.append(seq)
        self._sample(ready)

    def _evaluate_media(self) -> None:
        """Evaluate the media chunk each prefilling sequence has reached, one sequence at a time."""
        projector = self.projector
        assert projector is not None
        for seq in list(self._active):
            chunk = seq.media.pending(seq.n_done) if seq.media is not None and seq.pending is None else None
            if chunk is None:
                continue
            slot = seq.slot
            assert slot is not None and seq.media is not None
            last = chunk.start + chunk.n_pos == len(seq.prompt)
            seq.t_prompt = seq.t_prompt or time.perf_counter_ns()
            if not projector.evaluate(self.ctx, chunk, slot.seq_id, self.n_batch, last):
                self._fail([seq], "unable to evaluate the image or audio")
                continue
            seq.media.next += 1
            slot.cache.extend(seq.prompt[chunk.start : chunk.start + chunk.n_pos])
            seq.n_done = chunk.start + chunk.n_pos
            seq.metrics.prompt_eval_count += chunk.n_tokens
            if last:
                seq.out_index = -1
                self._sample([seq])

    def _sample(self, ready: list[_Sequence]) -> None:
        ctx = self.ctx
        for seq in ready:
            token = seq.sampler.sample(ctx, seq.out_index)
            now = time.perf_counter_ns()
            metrics = seq.metrics
            if metrics.eval_count == 0:
                metrics.prompt_eval_duration = now - (seq.t_prompt or seq.t_start)
                seq.t_prompt = now
            metrics.eval_count += 1
            if self._is_eog(token):
                self._finish(seq, "stop")
                continue
            if seq.logprobs is not None:
                seq.logprobs.append(self._logprob(seq, token))
            seq.generated.append(token)
            text = seq.decoder.decode(self._piece(token))
            if text and self._send_text(seq, text):
                self._finish(seq, "stop", flush=False)
            elif metrics.eval_count >= seq.limit:
                self._finish(seq, "length")
            else:
                seq.pending = token

    def _logprob(self, seq: _Sequence, token: int) -> Logprob:
        """``token``'s log probability at the sequence's output, from the logits scaled by the
        temperature as the sampler saw them, with the ``top_logprobs`` most likely tokens."""
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, seq.out_index), (self.n_vocab,))
        logits = row.astype(np.float64)
        if seq.temperature > 0:
            logits /= seq.temperature
        top = logits.max()
        logprobs = logits - (top + np.log(np.exp(logits - top).sum()))
        alternatives: list[TokenLogprob] = []
        count = min(seq.top_logprobs, self.n_vocab)
        if count:
            best = np.argpartition(logprobs, -count)[-count:]
            for other in best[np.argsort(-logprobs[best], kind="stable")]:
                piece = self._piece(int(other))
                alternatives.append(TokenLogprob(piece.decode("utf-8", "replace"), float(logprobs[other]), list(piece)))
        piece = self._piece(token)
        return Logprob(token=piece.decode("utf-8", "replace"), logprob=float(logprobs[token]), bytes=list(piece),
                       top_logprobs=alternatives)

    def _emit_text(self, seq: _Sequence, text: str) -> None:
        """Send ``text`` with the log probabilities gathered since the last piece."""
        logprobs = seq.logprobs
        if logprobs:
            self._emit(Token(seq.id, text, list(logprobs)))
            logprobs.clear()
        elif text:
            self._emit(Token(seq.id, text))

    def _send_text(self, seq: _Sequence, text: str) -> bool:
        """Stream ``text``, holding back what may start a stop sequence; True when a stop sequence matched."""
        if not seq.stops:
            self._emit_text(seq, text)
            return False
        text = seq.held + text
        cut = -1
        for stop in seq.stops:
            at = text.find(stop)
            if at >= 0 and (cut < 0 or at < cut):
                cut = at
        if cut >= 0:
            seq.held = ""
            if seq.logprobs:
                _drop_stopped(seq.logprobs, len(text), cut)
            self._emit_text(seq, text[:cut])
            return True
        hold = 0
        for size in range(min(len(text), seq.stop_max - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in seq.stops):
                hold = size
                break
        seq.held = text[len(text) - hold :]
        if hold < len(text):
            self._emit_text(seq, text[: len(text) - hold])
        return False

    def _finish(self, seq: _Sequence, reason: str, flush: bool = True) -> None:
        held, seq.held = seq.held, ""
        if flush:
            self._emit_text(seq, held)
        metrics = seq.metrics
        if metrics.eval_count:
            metrics.eval_duration = time.perf_counter_ns() - seq.t_prompt
        context = None
        if seq.return_context:
            context = seq.text_prompt() + seq.generated
        self._emit(Done(id=seq.id, done_reason=reason, metrics=metrics, tokens=seq.generated, context=context))  # type: ignore[arg-type]
        self._release(seq)

    def _release(self, seq: _Sequence) -> None:
        self._active.remove(seq)
        seq.close()
        slot = seq.slot
        if slot is not None:
            slot.seq = None
            slot.last_used = self._tick
            self._tick += 1
        seq.slot = None

    def _fail(self, seqs: list[_Sequence], message: str) -> None:
        """End ``seqs`` with an error and forget what their slots hold."""
        for seq in seqs:
            slot = seq.slot
            self._emit(Error(id=seq.id, message=message, kind="internal"))
            self._release(seq)
            if slot is not None:
                llama_cpp.llama_memory_seq_rm(self.mem, slot.seq_id, -1, -1)
                slot.cache.clear()

    def _fail_all(self, message: str) -> None:
        self._fail(list(self._active), message)
        for seq in self._waiting:
            self._emit(Error(id=seq.id, message=message, kind="internal"))
            seq.close()
        self._waiting.clear()

    # -- embeddings -------------------------------------------------------------------------

    def _embed(self, req: Embed) -> Embeddings:
        started = time.perf_counter_ns()
        if self._embedder is None:
            try:
                self._embedder = self._embedding_context()
            except LoadError as exc:
                raise RequestFailed(str(exc), "internal") from exc
        embedder = self._embedder
        limit = min(embedder.n_batch, max(4, self.load.num_ctx))
        inputs = [self._embed_tokens(item, limit, req.truncate) for item in req.inputs]
        try:
            vectors = embedder.embed(inputs)
        except EmbeddingError as exc:
            raise RequestFailed(str(exc), "internal") from exc
        return Embeddings(
            id=req.id,
            embeddings=vectors,
            token_counts=[len(t) for t in inputs],
            duration=time.perf_counter_ns() - started,
        )

    def _embed_tokens(self, item: str | list[int], limit: int, truncate: bool) -> list[int]:
        if isinstance(item, list):
            tokens = list(item)
            if any(t < 0 or t >= self.n_vocab for t in tokens):
                raise RequestFailed("token id out of range")
            if len(tokens) > limit:
                if not truncate:
                    raise RequestFailed(INPUT_TOO_LONG)
                tokens = tokens[:limit]
        else:
            tokens = self.tokenize(item, True, False)
            if len(tokens) > limit:
                if not truncate:
                    raise RequestFailed(INPUT_TOO_LONG)
                tokens = self._truncate_keeping_specials(item, tokens, limit)
        if not tokens:
            bos = llama_cpp.llama_vocab_bos(self.vocab)
            tokens = [bos if bos >= 0 else 0]
        return tokens

    def _truncate_keeping_specials(self, text: str, tokens: list[int], limit: int) -> list[int]:
        """Cut the text part of ``tokens`` to fit ``limit``, keeping the special tokens the model adds around it."""
        plain = self.tokenize(text, False, False)
        extra = len(tokens) - len(plain)
        for head in range(extra + 1):
            if tokens[head : head + len(plain)] == plain:
                prefix, suffix = tokens[:head], tokens[head + len(plain) :]
                room = max(0, limit - len(prefix) - len(suffix))
                return prefix + plain[:room] + suffix
        return tokens[:limit]


def _drop_stopped(logprobs: list[Logprob], length: int, cut: int) -> None:
    """Forget the tokens of ``logprobs``, the last of a text ``length`` characters long, that start
    at or after ``cut``, where a stop sequence begins."""
    start = length - sum(len(entry.token) for entry in logprobs)
    keep = 0
    while keep < len(logprobs) and start < cut:
        start += len(logprobs[keep].token)
        keep += 1
    del logprobs[keep:]


def _slot_order(seq: _Sequence) -> int:
    """Where ``seq`` goes in the active list, which is kept in slot order."""
    assert seq.slot is not None
    return seq.slot.seq_id


def _runs(ids: set[int]) -> int:
    """How many runs of consecutive numbers ``ids`` holds: the micro-batches a decode step takes."""
    return sum(1 for i in ids if i - 1 not in ids)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
