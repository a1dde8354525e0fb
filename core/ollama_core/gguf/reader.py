"""Bounds-checked GGUF reader: header, metadata and tensor infos, validated against the file size.

Nothing is allocated from a declared count or length before that count or length has been
checked against the limits and against the bytes left in the file. Arrays longer than a small
threshold stay in the file and are decoded when their value is asked for.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ollama_core.gguf.ggml_types import (
    NUMPY_DTYPES,
    SCALAR_SIZES,
    TENSOR_TYPES,
    GGUFValueType,
)

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4

_INT64_MAX = (1 << 63) - 1
_HEADER_SIZE = 4 + 4 + 8 + 8
_MIN_KV_SIZE = 8 + 1 + 4 + 1
_MIN_TENSOR_INFO_SIZE = 8 + 1 + 4 + 4 + 8
_MIN_ELEMENT_SIZE = {**SCALAR_SIZES, GGUFValueType.STRING: 8, GGUFValueType.ARRAY: 4 + 8}
_CHUNK = 1 << 20
_EAGER_ARRAY_MAX_BYTES = 1 << 16
_VALUE_TYPES = frozenset(int(t) for t in GGUFValueType)

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<4sIQQ")
_DIMS = [struct.Struct(f"<{n}Q") for n in range(MAX_DIMS + 1)]
_SCALAR_STRUCTS: dict[GGUFValueType, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<B"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}


class GGUFError(ValueError):
    """The file is not a valid GGUF file, or it exceeds the reader's limits."""


class GGUFLimits(msgspec.Struct, frozen=True):
    """Caps applied while parsing, on top of the checks against the file size."""

    max_tensors: int = 65_536
    """Most tensors a file may declare."""
    max_kv: int = 65_536
    """Most metadata entries a file may declare."""
    max_key_length: int = 65_535
    """Longest metadata key, in bytes."""
    max_tensor_name_length: int = 4_096
    """Longest tensor name, in bytes."""
    max_string_length: int = 16 << 20
    """Longest string value, in bytes."""
    max_array_length: int = 1 << 22
    """Most elements in one array."""
    max_array_bytes: int = 256 << 20
    """Largest encoded size of one array."""
    max_array_depth: int = 4
    """Deepest nesting of arrays inside arrays (1: arrays of scalars or strings only)."""
    max_scanned_elements: int = 1 << 23
    """Most string elements and nested arrays walked across the whole file."""
    max_metadata_bytes: int = 64 << 20
    """Most bytes of keys, strings and tensor names held in memory after parsing."""
    lazy_array_threshold: int = 64
    """Arrays with more elements than this are decoded only when their value is asked for."""


DEFAULT_LIMITS = GGUFLimits()


class ArrayInfo(msgspec.Struct, frozen=True):
    """Element type and length of an array value."""

    element_type: GGUFValueType
    count: int


class _LazyArray(msgspec.Struct, frozen=True):
    """An array value left in the file, with the position and size of its payload."""

    element_type: GGUFValueType
    count: int
    offset: int
    nbytes: int


class TensorInfo(msgspec.Struct, frozen=True):
    """One tensor of a GGUF file; ``shape`` is in file order (innermost dimension first)."""

    name: str
    ggml_type: int
    type_name: str
    shape: tuple[int, ...]
    offset: int
    """Offset of the tensor's data from the start of the data section."""
    nbytes: int

    @property
    def n_elements(self) -> int:
        """Number of elements (the product of the shape)."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count


class _FileIdentity(msgspec.Struct, frozen=True):
    path: Path
    size: int
    mtime_ns: int
    inode: int


class GGUFMetadata(Mapping[str, Any]):
    """Metadata of a GGUF file in file order; lazily kept arrays are decoded on each access."""

    def __init__(
        self,
        source: _FileIdentity,
        values: dict[str, Any],
        types: dict[str, GGUFValueType],
        arrays: dict[str, ArrayInfo],
        limits: GGUFLimits,
    ) -> None:
        self._source = source
        self._values = values
        self._types = types
        self._arrays = arrays
        self._limits = limits

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if isinstance(value, _LazyArray):
            return _load_array(self._source, value, self._limits)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def scalar(self, key: str) -> Any:
        """The value of ``key`` unless it is missing or an array (then None); never reads the file."""
        if key in self._arrays:
            return None
        return self._values.get(key)

    def value_type(self, key: str) -> GGUFValueType:
        """The GGUF type of ``key``'s value (``ARRAY`` for arrays)."""
        return self._types[key]

    def array_info(self, key: str) -> ArrayInfo | None:
        """Element type and length of ``key`` if it is an array, without decoding it."""
        return self._arrays.get(key)

    def is_loaded(self, key: str) -> bool:
        """Whether ``key``'s value is held in memory (False for arrays decoded on access)."""
        return not isinstance(self._values[key], _LazyArray)


class GGUFFile(msgspec.Struct, frozen=True):
    """The parsed, validated header of a GGUF file."""

    path: Path
    version: int
    metadata: GGUFMetadata
    tensors: list[TensorInfo]
    data_offset: int
    """Absolute file offset of the data section (tensor offsets are relative to it)."""
    file_size: int
    alignment: int

    @property
    def architecture(self) -> str:
        """``general.architecture``, or ``""`` when missing or not a string."""
        value = self.metadata.scalar("general.architecture")
        return value if isinstance(value, str) else ""


def read_gguf(path: Path, *, limits: GGUFLimits = DEFAULT_LIMITS) -> GGUFFile:
    """Parse and validate the header, metadata and tensor infos of the GGUF file at ``path``.

    Raises ``GGUFError`` for anything malformed or over ``limits``; ``OSError`` only when the
    file cannot be opened or read at all.
    """
    fd = _open_regular(Path(path))
    try:
        st = os.fstat(fd)
        identity = _FileIdentity(Path(path), st.st_size, st.st_mtime_ns, st.st_ino)
        return _Parser(_Reader(fd, st.st_size), identity, limits).parse()
    finally:
        os.close(fd)


def _open_regular(path: Path) -> int:
    """Open ``path`` read-only without blocking on FIFOs; refuse anything but a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GGUFError("invalid GGUF: not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    parts: list[bytes] = []
    remaining = n
    while remaining:
        chunk = os.pread(fd, remaining, offset + n - remaining)
        if not chunk:
            raise GGUFError("invalid GGUF: file is shorter than it was when opened")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class _Reader:
    """Sequential reads over a file through a window, never past the size it had when opened."""

    __slots__ = ("_buf", "_buf_start", "_fd", "context", "pos", "size")

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size
        self.pos = 0
        self.context = "header"
        self._buf = b""
        self._buf_start = 0

    def past_end(self) -> GGUFError:
        return GGUFError(f"invalid GGUF: {self.context} extends past end of file")

    def remaining(self) -> int:
        return self.size - self.pos

    def _window(self, n: int) -> tuple[bytes, int]:
        pos = self.pos
        if n > self.size - pos:
            raise self.past_end()
        rel = pos - self._buf_start
        buf = self._buf
        if rel < 0 or rel + n > len(buf):
            buf = _pread_exact(self._fd, min(max(n, _CHUNK), self.size - pos), pos)
            self._buf, self._buf_start, rel = buf, pos, 0
        return buf, rel

    def take(self, n: int) -> bytes:
        buf, rel = self._window(n)
        self.pos += n
        return buf[rel : rel + n]

    def unpack(self, st: struct.Struct) -> tuple[Any, ...]:
        buf, rel = self._window(st.size)
        self.pos += st.size
        return st.unpack_from(buf, rel)

    def u32(self) -> int:
        value: int = self.unpack(_U32)[0]
        return value

    def u64(self) -> int:
        value: int = self.unpack(_U64)[0]
        return value

    def skip(self, n: int) -> None:
        if n > self.size - self.pos:
            raise self.past_end()
        self.pos += n

    def walk_strings(self, count: int, max_length: int) -> None:
        """Skip ``count`` length-prefixed strings, checking every length."""
        unpack = _U64.unpack_from
        size = self.size
        pos = self.pos
        buf = self._buf
        start = self._buf_start
        end = start + len(buf)
        for _ in range(count):
            if pos + 8 > end:
                self.pos = pos
                buf, _ = self._window(8)
                start = self._buf_start
                end = start + len(buf)
            (length,) = unpack(buf, pos - start)
            if length > max_length:
                raise GGUFError(
                    f"invalid GGUF: {self.context} has a string of {length} bytes (limit {max_length})"
                )
            pos += 8 + length
            if pos > size:
                self.pos = pos
                raise self.past_end()
        self.pos = pos


class _Parser:
    def __init__(self, reader: _Reader, identity: _FileIdentity, limits: GGUFLimits) -> None:
        self.r = reader
        self.identity = identity
        self.limits = limits
        self.scanned = 0
        self.held_bytes = 0

    def parse(self) -> GGUFFile:
        r = self.r
        limits = self.limits
        if r.size < _HEADER_SIZE:
            raise GGUFError(f"invalid GGUF: file of {r.size} bytes is too short for a GGUF header")
        magic, version, tensor_count, kv_count = r.unpack(_HEADER)
        if magic != GGUF_MAGIC:
            raise GGUFError("invalid GGUF: bad magic (not a GGUF file)")
        if version not in SUPPORTED_VERSIONS:
            if int.from_bytes(version.to_bytes(4, "little"), "big") in (1, 2, 3):
                raise GGUFError("invalid GGUF: big-endian GGUF files are not supported")
            raise GGUFError(f"invalid GGUF: unsupported version {version}")
        if tensor_count > limits.max_tensors:
            raise GGUFError(f"invalid GGUF: tensor count {tensor_count} exceeds limit {limits.max_tensors}")
        if kv_count > limits.max_kv:
            raise GGUFError(f"invalid GGUF: metadata count {kv_count} exceeds limit {limits.max_kv}")
        if kv_count * _MIN_KV_SIZE + tensor_count * _MIN_TENSOR_INFO_SIZE > r.remaining():
            raise GGUFError(
                f"invalid GGUF: {kv_count} metadata entries and {tensor_count} tensors cannot fit in the file"
            )

        values: dict[str, Any] = {}
        types: dict[str, GGUFValueType] = {}
        arrays: dict[str, ArrayInfo] = {}
        for index in range(kv_count):
            r.context = f"metadata entry #{index}"
            key = self._read_name(limits.max_key_length, "metadata key")
            if key in values:
                raise GGUFError(f"invalid GGUF: duplicate metadata key {key!r}")
            r.context = f"metadata value {key!r}"
            value_type = self._read_type(key)
            if value_type is GGUFValueType.ARRAY:
                value, arrays[key] = self._read_array(key)
            else:
                value = self._read_scalar(value_type)
            values[key] = value
            types[key] = value_type

        alignment = _alignment(values, types)
        tensors = self._read_tensor_infos(tensor_count)
        data_offset = _align(r.pos, alignment)
        self._check_tensor_layout(tensors, data_offset, alignment)

        logger.debug(
            "read GGUF %s: version %d, %d metadata entries, %d tensors, data at %d",
            self.identity.path,
            version,
            kv_count,
            tensor_count,
            data_offset,
        )
        return GGUFFile(
            path=self.identity.path,
            version=version,
            metadata=GGUFMetadata(self.identity, values, types, arrays, limits),
            tensors=tensors,
            data_offset=data_offset,
            file_size=r.size,
            alignment=alignment,
        )

    def _hold(self, n: int) -> None:
        self.held_bytes += n
        if self.held_bytes > self.limits.max_metadata_bytes:
            raise GGUFError(f"invalid GGUF: metadata exceeds {self.limits.max_metadata_bytes} bytes")

    def _read_name(self, max_length: int, what: str) -> str:
        length = self.r.u64()
        if length == 0:
            raise GGUFError(f"invalid GGUF: empty {what} in {self.r.context}")
        if length > max_length:
            raise GGUFError(f"invalid GGUF: {what} of {length} bytes in {self.r.context} (limit {max_length})")
        if length > self.r.remaining():
            raise self.r.past_end()
        self._hold(length)
        raw = self.r.take(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"invalid GGUF: {what} in {self.r.context} is not valid UTF-8") from None

    def _read_type(self, key: str) -> GGUFValueType:
        type_id = self.r.u32()
        if type_id not in _VALUE_TYPES:
            raise GGUFError(f"invalid GGUF: metadata {key!r} has unknown value type {type_id}")
        return GGUFValueType(type_id)

    def _read_scalar(self, value_type: GGUFValueType) -> Any:
        if value_type is GGUFValueType.STRING:
            length = self.r.u64()
            if length > self.limits.max_string_length:
                raise GGUFError(
                    f"invalid GGUF: {self.r.context} is a string of {length} bytes "
                    f"(limit {self.limits.max_string_length})"
                )
            if length > self.r.remaining():
                raise self.r.past_end()
            self._hold(length)
            return self.r.take(length).decode("utf-8", "replace")
        (value,) = self.r.unpack(_SCALAR_STRUCTS[value_type])
        if value_type is GGUFValueType.BOOL:
            return value != 0
        if value_type is GGUFValueType.FLOAT32:
            return _shortest_float32(value)
        return value

    def _read_array_header(self, key: str, depth: int) -> tuple[GGUFValueType, int]:
        limits = self.limits
        if depth > limits.max_array_depth:
            raise GGUFError(f"invalid GGUF: arrays in {key!r} are nested deeper than {limits.max_array_depth}")
        element_type = self._read_type(key)
        count = self.r.u64()
        if count > limits.max_array_length:
            raise GGUFError(
                f"invalid GGUF: array {key!r} has {count} elements (limit {limits.max_array_length})"
            )
        if count * _MIN_ELEMENT_SIZE[element_type] > self.r.remaining():
            raise GGUFError(f"invalid GGUF: array {key!r} of {count} elements extends past end of file")
        return element_type, count

    def _walk_array_payload(self, key: str, element_type: GGUFValueType, count: int, depth: int) -> None:
        size = SCALAR_SIZES.get(element_type)
        if size is not None:
            self.r.skip(count * size)
            return
        self.scanned += count
        if self.scanned > self.limits.max_scanned_elements:
            raise GGUFError(
                f"invalid GGUF: more than {self.limits.max_scanned_elements} array elements to scan"
            )
        if element_type is GGUFValueType.STRING:
            self.r.walk_strings(count, self.limits.max_string_length)
            return
        for _ in range(count):
            inner_type, inner_count = self._read_array_header(key, depth + 1)
            self._walk_array_payload(key, inner_type, inner_count, depth + 1)

    def _read_array(self, key: str) -> tuple[list[Any] | _LazyArray, ArrayInfo]:
        element_type, count = self._read_array_header(key, 1)
        start = self.r.pos
        self._walk_array_payload(key, element_type, count, 1)
        nbytes = self.r.pos - start
        if nbytes > self.limits.max_array_bytes:
            raise GGUFError(
                f"invalid GGUF: array {key!r} takes {nbytes} bytes (limit {self.limits.max_array_bytes})"
            )
        info = ArrayInfo(element_type, count)
        if (
            count > self.limits.lazy_array_threshold
            or element_type is GGUFValueType.ARRAY
            or nbytes > _EAGER_ARRAY_MAX_BYTES
        ):
            return _LazyArray(element_type, count, start, nbytes), info
        self._hold(nbytes)
        end = self.r.pos
        self.r.pos = start
        data = self.r.take(nbytes)
        self.r.pos = end
        values, _ = _decode_array(data, 0, element_type, count, 1, self.limits)
        return values, info

    def _read_tensor_infos(self, tensor_count: int) -> list[TensorInfo]:
        r = self.r
        tensors: list[TensorInfo] = []
        seen: set[str] = set()
        for index in range(tensor_count):
            r.context = f"tensor info #{index}"
            name = self._read_name(self.limits.max_tensor_name_length, "tensor name")
            if name in seen:
                raise GGUFError(f"invalid GGUF: duplicate tensor name {name!r}")
            seen.add(name)
            r.context = f"tensor info {name!r}"
            n_dims = r.u32()
            if n_dims > MAX_DIMS:
                raise GGUFError(f"invalid GGUF: tensor {name!r} has {n_dims} dimensions (limit {MAX_DIMS})")
            shape: tuple[int, ...] = r.unpack(_DIMS[n_dims])
            n_elements = 1
            for dim in shape:
                n_elements *= dim
                if n_elements > _INT64_MAX or dim > _INT64_MAX:
                    raise GGUFError(f"invalid GGUF: tensor {name!r} has too many elements {list(shape)}")
            type_id = r.u32()
            tensor_type = TENSOR_TYPES.get(type_id)
            if tensor_type is None:
                raise GGUFError(f"invalid GGUF: tensor {name!r} has unknown type {type_id}")
            offset = r.u64()
            row = shape[0] if shape else 1
            if row % tensor_type.block_size:
                raise GGUFError(
                    f"invalid GGUF: tensor {name!r} rows of {row} elements are not a multiple of "
                    f"the {tensor_type.name} block size {tensor_type.block_size}"
                )
            nbytes = n_elements // tensor_type.block_size * tensor_type.type_size
            tensors.append(TensorInfo(name, type_id, tensor_type.name, tuple(shape), offset, nbytes))
        return tensors

    def _check_tensor_layout(self, tensors: list[TensorInfo], data_offset: int, alignment: int) -> None:
        size = self.r.size
        for tensor in tensors:
            if tensor.offset % alignment:
                raise GGUFError(
                    f"invalid GGUF: tensor {tensor.name!r} offset {tensor.offset} is not a multiple of "
                    f"the alignment {alignment}"
                )
            if data_offset + tensor.offset + tensor.nbytes > size:
                raise GGUFError(f"invalid GGUF: tensor {tensor.name!r} extends past end of file")
        previous: TensorInfo | None = None
        for tensor in sorted((t for t in tensors if t.nbytes), key=lambda t: t.offset):
            if previous is not None and tensor.offset < previous.offset + previous.nbytes:
                raise GGUFError(f"invalid GGUF: tensors {previous.name!r} and {tensor.name!r} overlap")
            previous = tensor


def _alignment(values: dict[str, Any], types: dict[str, GGUFValueType]) -> int:
    if "general.alignment" not in values:
        return DEFAULT_ALIGNMENT
    if types["general.alignment"] is not GGUFValueType.UINT32:
        raise GGUFError("invalid GGUF: general.alignment must be a uint32")
    alignment: int = values["general.alignment"]
    if alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"invalid GGUF: general.alignment {alignment} is not a power of two")
    return alignment


def _align(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)


def _shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(value)))


def _decode_array(
    data: bytes, pos: int, element_type: GGUFValueType, count: int, depth: int, limits: GGUFLimits
) -> tuple[list[Any], int]:
    """Decode ``count`` elements of ``element_type`` from ``data`` at ``pos``, re-checking every bound."""
    size = SCALAR_SIZES.get(element_type)
    if size is not None:
        end = pos + count * size
        if end > len(data):
            raise GGUFError("invalid GGUF: array extends past its recorded size")
        array = np.frombuffer(data, dtype=NUMPY_DTYPES[element_type], count=count, offset=pos)
        if element_type is GGUFValueType.BOOL:
            return (array != 0).tolist(), end
        if element_type is GGUFValueType.FLOAT32:
            return [float(s) for s in array.astype(str)], end
        return array.tolist(), end
    if element_type is GGUFValueType.STRING:
        return _decode_strings(data, pos, count, limits.max_string_length)
    if depth >= limits.max_array_depth:
        raise GGUFError(f"invalid GGUF: arrays nested deeper than {limits.max_array_depth}")
    items: list[Any] = []
    for _ in range(count):
        if pos + 12 > len(data):
            raise GGUFError("invalid GGUF: array extends past its recorded size")
        inner_id = _U32.unpack_from(data, pos)[0]
        inner_count = _U64.unpack_from(data, pos + 4)[0]
        if inner_id not in _VALUE_TYPES or inner_count > limits.max_array_length:
            raise GGUFError("invalid GGUF: malformed nested array")
        inner, pos = _decode_array(data, pos + 12, GGUFValueType(inner_id), inner_count, depth + 1, limits)
        items.append(inner)
    return items, pos


def _decode_strings(data: bytes, pos: int, count: int, max_length: int) -> tuple[list[str], int]:
    unpack = _U64.unpack_from
    limit = len(data)
    out: list[str] = []
    append = out.append
    for _ in range(count):
        if pos + 8 > limit:
            raise GGUFError("invalid GGUF: array extends past its recorded size")
        (length,) = unpack(data, pos)
        pos += 8
        if length > max_length or pos + length > limit:
            raise GGUFError("invalid GGUF: array extends past its recorded size")
        append(data[pos : pos + length].decode("utf-8", "replace"))
        pos += length
    return out, pos


def _load_array(source: _FileIdentity, array: _LazyArray, limits: GGUFLimits) -> list[Any]:
    """Read and decode an array left in the file, if the file is still the one that was parsed."""
    try:
        fd = _open_regular(source.path)
    except OSError as exc:
        raise GGUFError(f"invalid GGUF: cannot reopen the file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (source.size, source.mtime_ns, source.inode):
            raise GGUFError("invalid GGUF: file changed since it was read")
        data = _pread_exact(fd, array.nbytes, array.offset)
    finally:
        os.close(fd)
    values, end = _decode_array(data, 0, array.element_type, array.count, 1, limits)
    if end != len(data):
        raise GGUFError("invalid GGUF: array does not match its recorded size")
    return values
