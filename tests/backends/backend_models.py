"""GGUF headers shaped like real models, written sparse, and recorded device descriptions.

A model's tensor data is never written: the file is extended to its full length with
``truncate``, so a 40 GB "70B" header costs a few kilobytes of disk. Byte figures in the tests
are worked out by hand from the shapes below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from ollama_core.descriptors import Device

QT = gguf.GGMLQuantizationType
MiB = 1 << 20
GiB = 1 << 30
ALIGN = 32

BLOCKS = {QT.F32: (1, 4), QT.F16: (1, 2), QT.Q4_0: (32, 18), QT.Q4_1: (32, 20), QT.Q8_0: (32, 34)}


@dataclass(frozen=True)
class Tensor:
    """A tensor to declare: ``shape`` in GGUF order (innermost dimension first)."""

    name: str
    shape: tuple[int, ...]
    type: QT = QT.Q4_0

    @property
    def nbytes(self) -> int:
        elements = int(np.prod(self.shape))
        block, size = BLOCKS[self.type]
        return elements // block * size


def write_sparse_gguf(path: Path, arch: str, metadata: Mapping[str, Any], tensors: Sequence[Tensor]) -> Path:
    """Write the header of a GGUF whose tensor data is a hole of the right length."""
    writer = gguf.GGUFWriter(path, arch)
    for key, value in metadata.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, list(value))
    for t in tensors:
        writer.add_tensor_info(t.name, tuple(reversed(t.shape)), np.dtype(np.float32), t.nbytes, raw_dtype=t.type)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    data = sum(-(-t.nbytes // ALIGN) * ALIGN for t in tensors)
    header = -(-path.stat().st_size // ALIGN) * ALIGN
    with open(path, "r+b") as f:
        f.truncate(header + data)
    return path


@dataclass(frozen=True)
class Dense:
    """A llama-style decoder: ``layers`` blocks of attention (GQA) and a gated FFN, Q4_0 weights."""

    layers: int
    embd: int
    heads: int
    heads_kv: int
    ff: int
    vocab: int
    arch: str = "llama"
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.embd // self.heads

    def tensors(self) -> list[Tensor]:
        kv = self.heads_kv * self.head_dim
        out = [Tensor("token_embd.weight", (self.embd, self.vocab))]
        for i in range(self.layers):
            out += [
                Tensor(f"blk.{i}.attn_norm.weight", (self.embd,), QT.F32),
                Tensor(f"blk.{i}.attn_q.weight", (self.embd, self.embd)),
                Tensor(f"blk.{i}.attn_k.weight", (self.embd, kv)),
                Tensor(f"blk.{i}.attn_v.weight", (self.embd, kv)),
                Tensor(f"blk.{i}.attn_output.weight", (self.embd, self.embd)),
                Tensor(f"blk.{i}.ffn_norm.weight", (self.embd,), QT.F32),
                Tensor(f"blk.{i}.ffn_gate.weight", (self.embd, self.ff)),
                Tensor(f"blk.{i}.ffn_up.weight", (self.embd, self.ff)),
                Tensor(f"blk.{i}.ffn_down.weight", (self.ff, self.embd)),
            ]
        out.append(Tensor("output_norm.weight", (self.embd,), QT.F32))
        if not self.tied:
            out.append(Tensor("output.weight", (self.embd, self.vocab)))
        return out

    def metadata(self, **extra: Any) -> dict[str, Any]:
        a = self.arch
        return {
            f"{a}.block_count": self.layers,
            f"{a}.context_length": 32768,
            f"{a}.embedding_length": self.embd,
            f"{a}.feed_forward_length": self.ff,
            f"{a}.attention.head_count": self.heads,
            f"{a}.attention.head_count_kv": self.heads_kv,
            **extra,
        }

    def write(self, path: Path, **extra: Any) -> Path:
        return write_sparse_gguf(path, self.arch, self.metadata(**extra), self.tensors())


MISTRAL_7B = Dense(layers=32, embd=4096, heads=32, heads_kv=8, ff=14336, vocab=32000)
"""Mistral-7B's shape at Q4_0: about 3.9 GiB of weights."""

LLAMA_70B = Dense(layers=80, embd=8192, heads=64, heads_kv=8, ff=28672, vocab=128256)
"""Llama-3-70B's shape at Q4_0: about 37 GiB of weights."""


def cuda(index: int, name: str, total_mib: int, free_mib: int, uuid: str, compute: str = "8.9") -> Device:
    """An NVIDIA GPU as the CUDA backend reports it (457 MiB runtime reserve)."""
    return Device(
        backend="cuda",
        id=uuid,
        name=name,
        total_memory=total_mib * MiB,
        free_memory=free_mib * MiB,
        index=index,
        compute=compute,
        driver="550.54.15",
        runtime="12.4",
        reserved=457 * MiB,
    )


def apple(name: str, memory_gib: int, fraction: tuple[int, int]) -> Device:
    """An Apple Silicon GPU whose working set is ``fraction`` of unified memory, all of it free."""
    working_set = memory_gib * GiB * fraction[0] // fraction[1]
    return Device(
        backend="metal",
        id="metal",
        name=name,
        total_memory=working_set,
        free_memory=working_set,
        compute="apple9",
        driver="14.5",
        reserved=512 * MiB,
        unified=True,
    )


RTX_3070 = cuda(0, "NVIDIA GeForce RTX 3070", 8192, 7800, "GPU-3070aaaa-0000-0000-0000-000000000000", "8.6")
"""8 GiB; 7800 MiB free (the desktop holds the rest)."""
RTX_4090 = cuda(0, "NVIDIA GeForce RTX 4090", 24564, 23900, "GPU-4090bbbb-0000-0000-0000-000000000000")
"""24 GiB."""
H100 = cuda(0, "NVIDIA H100 80GB HBM3", 81559, 81000, "GPU-h100cccc-0000-0000-0000-000000000000", "9.0")
"""80 GiB."""
RTX_3060 = cuda(1, "NVIDIA GeForce RTX 3060", 12288, 12000, "GPU-3060dddd-0000-0000-0000-000000000000", "8.6")
"""12 GiB, second in a box with the 4090."""
M_16 = apple("Apple M2", 16, (2, 3))
"""16 GiB Mac: GPU working set 2/3 of RAM."""
M_64 = apple("Apple M3 Max", 64, (3, 4))
"""64 GiB Mac: working set 3/4 of RAM."""
M_128 = apple("Apple M4 Max", 128, (3, 4))
"""128 GiB Mac: working set 3/4 of RAM."""
