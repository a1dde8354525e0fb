"""Streaming GGUF writer shared by the text and projector converters.

The header (metadata and tensor infos) is written first; the tensor data follows tensor by
tensor, large tensors in slices along their first axis, read from memory-mapped safetensors.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gguf
import numpy as np
from ollama_core.descriptors import ProgressCallback

from ollama_arch_gemma4.checkpoint import Checkpoint, bf16_to_float32, float32_to_bf16

Q = gguf.GGMLQuantizationType

_ITEM_SIZE = {Q.F32: 4, Q.F16: 2, Q.BF16: 2}
_INFO_DTYPE: dict[gguf.GGMLQuantizationType, np.dtype[Any]] = {
    Q.F32: np.dtype(np.float32),
    Q.F16: np.dtype(np.float16),
    Q.BF16: np.dtype(np.uint16),
}
_CHUNK_BYTES = 64 * 1024 * 1024

Transform = Callable[[np.ndarray], np.ndarray]
"""Rewrites a float32 slice (first-axis rows, viewed in the GGUF shape) into the GGUF layout."""


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: its name, numpy-order shape, GGML type and where its data comes from.

    The data is either ``values`` or the checkpoint tensor ``source`` (its first ``shape[0]``
    rows, optionally passed through ``transform`` slice by slice).
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: gguf.GGMLQuantizationType
    source: str | None = None
    values: np.ndarray | None = None
    transform: Transform | None = None

    @property
    def nbytes(self) -> int:
        """Size of the tensor data in the GGUF."""
        return int(np.prod(self.shape, dtype=np.int64)) * _ITEM_SIZE[self.ggml_type]


def map_sources(
    entries: Iterable[str],
    target_name: Callable[[str], str | None],
    expected: Collection[str],
    optional: Callable[[str], bool],
) -> tuple[dict[str, str], list[str]]:
    """Match checkpoint tensor names to GGUF names; also the problems found (unexpected or missing tensors).

    ``target_name`` gives a checkpoint name's GGUF name (``None`` to skip it); a GGUF name not in
    ``expected``, or claimed twice, is unexpected; an expected name no tensor maps to is missing
    unless ``optional`` says so.
    """
    sources: dict[str, str] = {}
    unexpected: list[str] = []
    for name in entries:
        target = target_name(name)
        if target is None:
            continue
        if target not in expected or target in sources:
            unexpected.append(name)
            continue
        sources[target] = name
    missing = [t for t in expected if t not in sources and not optional(t)]
    problems: list[str] = []
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(sorted(unexpected)[:8])}")
    if missing:
        problems.append(f"missing tensors: {', '.join(sorted(missing)[:8])}")
    return sources, problems


def add_metadata(writer: gguf.GGUFWriter, key: str, value: Any) -> None:
    """Write one KV pair: ints as uint32, floats as float32, bools, strings, lists as arrays."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, list):
        writer.add_array(key, value)
    else:
        raise TypeError(f"{key}: cannot write a {type(value).__name__} to GGUF")


def write_gguf(
    path: Path,
    architecture: str,
    metadata: Mapping[str, Any],
    plan: Sequence[PlannedTensor],
    checkpoint: Checkpoint,
    progress: ProgressCallback,
) -> None:
    """Write a GGUF: ``metadata`` in order after ``general.architecture``, then every planned tensor."""
    writer = gguf.GGUFWriter(None, architecture)
    for key, value in metadata.items():
        add_metadata(writer, key, value)
    for tensor in plan:
        writer.add_tensor_info(
            tensor.name, tensor.shape, _INFO_DTYPE[tensor.ggml_type], tensor.nbytes, raw_dtype=tensor.ggml_type
        )
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()

    total = sum(t.nbytes for t in plan)
    done = 0
    alignment = writer.data_alignment
    with path.open("ab") as out:
        _pad(out, alignment)
        for tensor in plan:
            progress(f"converting {tensor.name}", completed=done, total=total)
            written = 0
            for chunk in _tensor_chunks(tensor, checkpoint):
                chunk.tofile(out)
                written += chunk.nbytes
            if written != tensor.nbytes:
                raise RuntimeError(f"{tensor.name}: wrote {written} bytes, expected {tensor.nbytes}")
            _pad(out, alignment)
            done += tensor.nbytes
    progress("converted tensors", completed=total, total=total)


def _pad(out: BinaryIO, alignment: int) -> None:
    remainder = out.tell() % alignment
    if remainder:
        out.write(b"\x00" * (alignment - remainder))


def _tensor_chunks(tensor: PlannedTensor, checkpoint: Checkpoint) -> Iterator[np.ndarray]:
    """The tensor's data in the GGUF type, in slices along the first axis."""
    if tensor.values is not None:
        yield _cast(tensor.values, False, tensor.ggml_type)
        return
    assert tensor.source is not None
    data = checkpoint.raw(tensor.source).reshape(-1, *tensor.shape[1:])[: tensor.shape[0]]
    bf16 = checkpoint.is_bf16(tensor.source)
    row_bytes = max(1, int(np.prod(tensor.shape[1:], dtype=np.int64)) * 4)
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, len(data), step):
        rows = data[start : start + step]
        if tensor.transform is None:
            yield _cast(rows, bf16, tensor.ggml_type)
        else:
            values = bf16_to_float32(rows) if bf16 else np.asarray(rows, dtype=np.float32)
            yield _cast(np.ascontiguousarray(tensor.transform(values), dtype=np.float32), False, tensor.ggml_type)


def _cast(data: np.ndarray, bf16: bool, target: gguf.GGMLQuantizationType) -> np.ndarray:
    if target == Q.BF16 and bf16:
        return np.ascontiguousarray(data)
    values = bf16_to_float32(data) if bf16 else np.asarray(data, dtype=np.float32)
    if target == Q.F32:
        return np.ascontiguousarray(values)
    if target == Q.F16:
        return values.astype(np.float16)
    return float32_to_bf16(values)
