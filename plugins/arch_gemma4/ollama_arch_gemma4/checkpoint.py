"""Lazy, memory-mapped access to the tensors of a safetensors checkpoint (single file or sharded).

Only the JSON headers are read up front; a tensor is memory-mapped when asked for, so a caller
working one tensor (or one slice of a tensor) at a time holds about that much in memory. BF16
is exposed as raw ``uint16`` because numpy has no bfloat16 type.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_FILE = "model.safetensors.index.json"

_STORAGE: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: file, safetensors dtype, shape and absolute byte offset."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int


class Checkpoint:
    """The tensors of a safetensors checkpoint directory, read lazily by name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.entries: dict[str, TensorEntry] = {}
        for path in _shard_paths(directory):
            for entry in _read_header(path):
                if entry.name in self.entries:
                    raise ValueError(f"tensor {entry.name!r} appears in more than one safetensors file")
                self.entries[entry.name] = entry

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of a tensor."""
        return self.entries[name].shape

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored: a read-only memory map (BF16 as ``uint16``)."""
        entry = self.entries[name]
        dtype = _STORAGE[entry.dtype]
        if 0 in entry.shape:
            return np.zeros(entry.shape, dtype=dtype)
        return np.memmap(entry.path, dtype=dtype, mode="r", offset=entry.offset, shape=entry.shape)

    def is_bf16(self, name: str) -> bool:
        """Whether the tensor is stored as bfloat16."""
        return self.entries[name].dtype == "BF16"


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bits (``uint16``) to float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 bits (``uint16``), to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def _shard_paths(directory: Path) -> list[Path]:
    index = directory / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return [directory / name for name in sorted(set(weight_map.values()))]
    paths = sorted(directory.glob("*.safetensors"))
    if not paths:
        raise FileNotFoundError(f"no *.safetensors files in {directory}")
    return paths


def _read_header(path: Path) -> list[TensorEntry]:
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path.name}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER:
            raise ValueError(f"{path.name}: safetensors header of {length} bytes is too large")
        header = json.loads(f.read(length))
    data_start = 8 + length
    file_size = path.stat().st_size
    entries: list[TensorEntry] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in _STORAGE:
            raise ValueError(f"{path.name}: tensor {name!r} has unsupported dtype {dtype}")
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(v) for v in info["data_offsets"])
        expected = int(np.prod(shape, dtype=np.int64)) * _STORAGE[dtype].itemsize
        if end - begin != expected or data_start + end > file_size:
            raise ValueError(f"{path.name}: tensor {name!r} has inconsistent offsets")
        entries.append(TensorEntry(name, path, dtype, shape, data_start + begin))
    return entries
