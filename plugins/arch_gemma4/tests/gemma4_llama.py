"""Running a converted Gemma 4 GGUF in llama.cpp (llama-cpp-python) for parity checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

GGML_TYPE_F32 = 0


class LlamaRunner:
    """A llama.cpp model with an f32 KV cache: tokenize, last-position logits, greedy decoding.

    One thread: the test models are tiny, and spinning worker threads only slow a busy machine.
    """

    def __init__(self, model_path: Path, n_ctx: int = 256) -> None:
        from llama_cpp import Llama

        self.llama = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_threads=1,
            n_threads_batch=1,
            logits_all=False,
            verbose=False,
            type_k=GGML_TYPE_F32,
            type_v=GGML_TYPE_F32,
            seed=0,
        )

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of ``text``, special tokens parsed."""
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` as a completion would show it (CONTROL tokens omitted)."""
        return self.llama.detokenize(list(ids)).decode("utf-8", errors="replace")

    def last_logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits after evaluating ``ids`` from an empty context."""
        self.llama.reset()
        self.llama.eval(list(ids))
        return self._logits()

    def greedy(self, ids: Sequence[int], steps: int) -> list[int]:
        """``steps`` greedily chosen tokens after ``ids``."""
        self.llama.reset()
        self.llama.eval(list(ids))
        out: list[int] = []
        for _ in range(steps):
            token = int(np.argmax(self._logits()))
            out.append(token)
            self.llama.eval([token])
        return out

    def close(self) -> None:
        """Free the model."""
        self.llama.close()

    def _logits(self) -> np.ndarray:
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llama.n_vocab(),)).astype(np.float64)
