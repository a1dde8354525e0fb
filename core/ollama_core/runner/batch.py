"""A reusable ``llama_batch`` over numpy arrays that the engine fills in place."""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np


class Batch:
    """A reusable ``llama_batch`` over numpy arrays, one sequence id per token."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, np.int32)
        self.pos = np.zeros(capacity, np.int32)
        self.n_seq_id = np.ones(capacity, np.int32)
        self.seq = np.zeros(capacity, np.int32)
        self.logits = np.zeros(capacity, np.int8)
        int_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_rows = (int_p * capacity)(*[ctypes.cast(base + 4 * i, int_p) for i in range(capacity)])
        self.struct = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(int_p),
            embd=None,
            pos=self.pos.ctypes.data_as(int_p),
            n_seq_id=self.n_seq_id.ctypes.data_as(int_p),
            seq_id=ctypes.cast(self._seq_rows, ctypes.POINTER(int_p)),
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    def add_run(self, at: int, tokens: list[int], pos: int, seq_id: int, all_logits: bool) -> None:
        """Place ``tokens`` of one sequence at batch index ``at``, positions from ``pos``."""
        end = at + len(tokens)
        self.token[at:end] = tokens
        self.pos[at:end] = np.arange(pos, pos + len(tokens), dtype=np.int32)
        self.seq[at:end] = seq_id
        self.logits[at:end] = 1 if all_logits else 0
