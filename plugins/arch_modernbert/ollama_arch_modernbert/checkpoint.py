"""Lazy access to a safetensors checkpoint (single file or sharded) and ModernBERT's backbone tensors.

Only the JSON headers are read up front; each tensor is memory-mapped when asked for, so a
caller that handles one tensor at a time holds about one tensor in memory. BF16 is decoded
here because numpy has no bfloat16 type.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

_DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}
_MAX_HEADER = 100 * 1024 * 1024

_PREFIX = "model."
_DROPPED_PREFIXES = ("head.", "decoder.")
"""Masked-LM head tensors: not part of the embedding backbone."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: file, safetensors dtype, shape and absolute byte offset."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))


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

    def read(self, name: str) -> np.ndarray:
        """The tensor as it is stored (F32/F16 memory-mapped; BF16 as raw uint16)."""
        entry = self.entries[name]
        if entry.size == 0:
            return np.zeros(entry.shape, dtype=_DTYPES[entry.dtype])
        return np.memmap(entry.path, dtype=_DTYPES[entry.dtype], mode="r", offset=entry.offset, shape=entry.shape)

    def read_float32(self, name: str) -> np.ndarray:
        """The tensor as float32 (a memory map, without a copy, when stored as F32)."""
        data = self.read(name)
        if self.entries[name].dtype == "BF16":
            return (data.astype(np.uint32) << 16).view(np.float32)
        return data if data.dtype == np.float32 else data.astype(np.float32)


def backbone_names(checkpoint: Checkpoint) -> Iterator[tuple[str, str]]:
    """``(backbone name, stored name)`` for every backbone tensor.

    ``ModernBertForMaskedLM`` checkpoints prefix the backbone with ``model.`` and add an MLM
    head; the prefix is removed and the head is skipped.
    """
    for stored in checkpoint.entries:
        name = stored[len(_PREFIX):] if stored.startswith(_PREFIX) else stored
        if name.startswith(_DROPPED_PREFIXES):
            continue
        yield name, stored


def _shard_paths(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: from the shard index, else ``model.safetensors``."""
    index = directory / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        if not weight_map:
            raise ValueError(f"{index} has an empty weight_map")
        return [directory / name for name in dict.fromkeys(weight_map.values())]
    single = directory / SINGLE_FILE
    if single.is_file():
        return [single]
    found = sorted(directory.glob("*.safetensors"))
    if not found:
        raise FileNotFoundError(f"no safetensors weights in {directory}")
    return found


def _read_header(path: Path) -> list[TensorEntry]:
    """Parse a safetensors header and check every tensor lies inside the file."""
    file_size = path.stat().st_size
    with path.open("rb") as f:
        raw_len = f.read(8)
        if len(raw_len) != 8:
            raise ValueError(f"{path} is not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > min(_MAX_HEADER, file_size - 8):
            raise ValueError(f"{path} is not a safetensors file (header length {header_len})")
        header = json.loads(f.read(header_len))
    base = 8 + header_len
    entries: list[TensorEntry] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}; only F32, F16 and BF16 are supported")
        shape = tuple(int(d) for d in info["shape"])
        start, end = (int(x) for x in info["data_offsets"])
        expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize
        if end - start != expected or start < 0 or base + end > file_size:
            raise ValueError(f"{path}: tensor {name!r} has inconsistent offsets {start}..{end} for shape {shape}")
        entries.append(TensorEntry(name, path, dtype, shape, base + start))
    return entries
