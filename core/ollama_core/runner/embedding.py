"""Pooled embeddings on a llama.cpp context of their own.

Inputs are decoded in groups that never exceed the context's micro-batch (llama.cpp aborts the
process otherwise) nor its sequence limit; each input is one sequence, pooled as the GGUF says.
"""

from __future__ import annotations

from typing import Any

import llama_cpp

from ollama_core.runner.batch import Batch

MAX_EMBED_SEQS = 64


class EmbeddingError(Exception):
    """The context could not be created, or a decode failed."""


class EmbeddingContext:
    """A context with pooling over ``params`` (whose ``n_ctx`` is the longest input); ``dim`` is the
    length of its vectors."""

    def __init__(self, model: Any, params: Any, pooling: int, n_embd: int) -> None:
        params.embeddings = True
        params.pooling_type = pooling
        params.n_batch = params.n_ubatch = params.n_ctx
        params.n_seq_max = min(MAX_EMBED_SEQS, llama_cpp.llama_max_parallel_sequences())
        params.kv_unified = True
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            raise EmbeddingError("unable to create the embedding context (out of memory?)")
        self.ctx = ctx
        self.n_batch: int = llama_cpp.llama_n_ubatch(ctx)
        self.n_seq: int = params.n_seq_max
        self._batch = Batch(self.n_batch)
        out_dim = llama_cpp.llama_model_n_cls_out(model) if pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK else 0
        self.dim: int = out_dim or n_embd

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """The pooled vector of each token list (none longer than ``n_batch``), in order."""
        vectors: list[list[float]] = []
        group: list[list[int]] = []
        used = 0
        for tokens in inputs:
            if group and (used + len(tokens) > self.n_batch or len(group) >= self.n_seq):
                vectors.extend(self._embed_group(group))
                group, used = [], 0
            group.append(tokens)
            used += len(tokens)
        if group:
            vectors.extend(self._embed_group(group))
        return vectors

    def close(self) -> None:
        """Free the context."""
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def _embed_group(self, group: list[list[int]]) -> list[list[float]]:
        ctx = self.ctx
        batch = self._batch
        mem = llama_cpp.llama_get_memory(ctx)
        if mem:
            llama_cpp.llama_memory_clear(mem, True)
        n = 0
        for seq_id, tokens in enumerate(group):
            batch.add_run(n, tokens, 0, seq_id, True)
            n += len(tokens)
        batch.struct.n_tokens = n
        rc = llama_cpp.llama_decode(ctx, batch.struct)
        if rc != 0:
            raise EmbeddingError(f"embedding failed (llama_decode returned {rc})")
        vectors: list[list[float]] = []
        for seq_id in range(len(group)):
            ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq_id)
            if not ptr:
                raise EmbeddingError("the model produced no pooled embedding")
            vectors.append(ptr[: self.dim])
        return vectors
