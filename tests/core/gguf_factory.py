"""Small GGUF files for tests: valid ones written with ``gguf.GGUFWriter``, hostile ones byte by byte."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import msgspec
import numpy as np

VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType


class TensorSpec(msgspec.Struct, frozen=True):
    """A tensor to write: ``shape`` in GGUF order (innermost dimension first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int = int(QT.F32)


class Typed(msgspec.Struct, frozen=True):
    """A metadata value with an explicit GGUF type (and element type for arrays)."""

    value: Any
    type: int
    element_type: int | None = None


DEFAULT_TENSORS: tuple[TensorSpec, ...] = (
    TensorSpec("token_embd.weight", (64, 16), int(QT.Q8_0)),
    TensorSpec("blk.0.attn_norm.weight", (64,), int(QT.F32)),
    TensorSpec("blk.0.attn_q.weight", (64, 64), int(QT.Q4_1)),
    TensorSpec("output_norm.weight", (64,), int(QT.F32)),
)


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    metadata: Mapping[str, Any] | None = None,
    tensors: Sequence[TensorSpec] = DEFAULT_TENSORS,
    seed: int = 0,
) -> Path:
    """Write a valid GGUF to ``path``: ``general.architecture`` = ``arch``, then ``metadata`` in order.

    Plain values are typed like this: bool → BOOL, int → UINT32, float → FLOAT32, str → STRING,
    list → ARRAY of the first element's type; wrap a value in ``Typed`` to choose its type.
    """
    writer = gguf.GGUFWriter(path, arch)
    for key, value in (metadata or {}).items():
        if isinstance(value, Typed):
            sub = VT(value.element_type) if value.element_type is not None else None
            writer.add_key_value(key, value.value, VT(value.type), sub_type=sub)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_key_value(key, value, VT.STRING)
        else:
            writer.add_array(key, value)
    rng = np.random.default_rng(seed)
    for spec in tensors:
        block_size, type_size = gguf.GGML_QUANT_SIZES[QT(spec.ggml_type)]
        rows = list(reversed(spec.shape[1:]))
        byte_shape = (*rows, spec.shape[0] // block_size * type_size)
        data = rng.integers(0, 256, size=byte_shape, dtype=np.uint8)
        writer.add_tensor(spec.name, data, raw_dtype=QT(spec.ggml_type))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_string(value: str | bytes) -> bytes:
    """A GGUF string: u64 length, then the bytes."""
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("<Q", len(raw)) + raw


def header(n_tensors: int, n_kv: int, *, version: int = 3, magic: bytes = b"GGUF") -> bytes:
    """A GGUF header."""
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def kv(key: str | bytes, value_type: int, payload: bytes) -> bytes:
    """A metadata entry with a raw, already encoded payload."""
    return gguf_string(key) + struct.pack("<I", value_type) + payload


def kv_u32(key: str, value: int) -> bytes:
    """A UINT32 metadata entry."""
    return kv(key, VT.UINT32, struct.pack("<I", value))


def kv_str(key: str, value: str | bytes) -> bytes:
    """A STRING metadata entry."""
    return kv(key, VT.STRING, gguf_string(value))


def array_payload(element_type: int, count: int, items: bytes) -> bytes:
    """The payload of an ARRAY value: element type, declared count, encoded items."""
    return struct.pack("<IQ", element_type, count) + items


def tensor_info(name: str | bytes, dims: Sequence[int], ggml_type: int, offset: int) -> bytes:
    """A tensor info record."""
    return (
        gguf_string(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def build(
    kvs: Sequence[bytes] = (),
    tensors: Sequence[bytes] = (),
    data: bytes = b"",
    *,
    n_kv: int | None = None,
    n_tensors: int | None = None,
    version: int = 3,
    magic: bytes = b"GGUF",
    alignment: int = 32,
) -> bytes:
    """A whole GGUF file from raw parts; counts default to the number of parts given."""
    body = header(
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kv is None else n_kv,
        version=version,
        magic=magic,
    )
    body += b"".join(kvs) + b"".join(tensors)
    if data:
        body += b"\0" * (-len(body) % alignment) + data
    return body


def arch_kv(arch: str = "llama") -> bytes:
    """The ``general.architecture`` entry."""
    return kv_str("general.architecture", arch)
