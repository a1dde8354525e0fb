"""One forward pass in a throw-away context, keeping named intermediate tensors (``ollama create --verify``).

llama.cpp's graph scheduler offers an evaluation callback: asked about every node before it is
computed, it may claim the node, and is then handed it once computed. Claimed nodes are those
whose name (``l_out-3``: llama.cpp's name for layer 3's output) was asked for; their data is
copied out through ggml's backend API, which works whatever device holds the tensor.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import llama_cpp

GGML_TYPE_F32 = 0


def _ggml_base() -> ctypes.CDLL:
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    suffix = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
    names = ["ggml-base" + suffix, "libggml-base" + suffix]
    path = next((lib_dir / n for n in names if (lib_dir / n).exists()), None)
    lib = ctypes.CDLL(str(path) if path else "libggml-base" + suffix)
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return lib


class TensorCapture:
    """An evaluation callback that copies out the float32 graph tensors with the wanted names."""

    def __init__(self, names: Iterable[str]) -> None:
        self.wanted = {name.encode() for name in names}
        self.captured: dict[str, bytes] = {}
        self._ggml = _ggml_base() if self.wanted else None
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_node)

    def _on_node(self, tensor: int, ask: bool, _user: Any) -> bool:
        ggml = self._ggml
        if ggml is None:
            return False
        name = ggml.ggml_get_name(tensor)
        if ask:
            return name in self.wanted
        if name in self.wanted and ctypes.c_int32.from_address(tensor).value == GGML_TYPE_F32:
            size = ggml.ggml_nbytes(tensor)
            buffer = ctypes.create_string_buffer(size)
            ggml.ggml_backend_tensor_get(tensor, buffer, 0, size)
            self.captured[name.decode()] = buffer.raw
        return True


def inspect_pass(
    model: Any,
    params: Any,
    tokens: list[int],
    tensors: Iterable[str],
    *,
    embedding: bool,
    width: int,
) -> tuple[bytes, dict[str, bytes]]:
    """Decode ``tokens`` as one sequence in a new context made from ``params``.

    Returns the final output as float32 bytes (the pooled embedding of sequence 0 when
    ``embedding``, else the last position's logits) and the captured tensors.
    """
    capture = TensorCapture(tensors)
    n = len(tokens)
    params.n_ctx = max(n, 16)
    params.n_batch = params.n_ubatch = max(n, 1)
    params.n_seq_max = 1
    params.embeddings = embedding
    params.type_k = params.type_v = GGML_TYPE_F32
    params.cb_eval = capture.callback
    params.cb_eval_user_data = None
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise RuntimeError("unable to create the inspection context")
    batch = llama_cpp.llama_batch_init(n, 0, 1)
    try:
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if embedding or i == n - 1 else 0
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        if embedding:
            pointer = llama_cpp.llama_get_embeddings_seq(ctx, 0)
        else:
            pointer = llama_cpp.llama_get_logits_ith(ctx, n - 1)
        if not pointer:
            raise RuntimeError("the model produced no output")
        final = ctypes.string_at(pointer, width * 4)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return final, capture.captured
