"""What /api/tags and /api/show report about a GGUF model: details, model_info and tensors."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import msgspec

from ollama_core.gguf.ggml_types import (
    FILE_TYPE_NAMES,
    FILE_TYPE_OF_TENSOR_TYPE,
    INTEGER_TYPES,
    UNKNOWN_FILE_TYPE,
)
from ollama_core.gguf.reader import GGUFFile

UNKNOWN_ARCHITECTURE = "unknown"
SHOW_HIDDEN_KEYS = ("general.name", "tokenizer.chat_template")
SHOW_MAX_ARRAY_LENGTH = 5


class GGUFDetails(msgspec.Struct, frozen=True):
    """Model facts derived from a GGUF header, in the form Ollama reports them."""

    architecture: str
    family: str
    families: list[str]
    parameter_count: int
    parameter_size: str
    quantization_level: str
    context_length: int | None
    embedding_length: int | None
    chat_template: str | None


def human_number(n: int) -> str:
    """Format a count as Ollama does: ``134.52M``, ``8.0B``, ``3B``, ``125M``, ``1K``, ``999``."""
    for divisor, suffix, decimals in ((1_000_000_000, "B", 1), (1_000_000, "M", 2)):
        if n >= divisor:
            number = n / divisor
            if number == math.floor(number):
                return f"{number:.0f}{suffix}"
            return f"{number:.{decimals}f}{suffix}"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


def parameter_count(gguf: GGUFFile) -> int:
    """Number of parameters: the elements of all tensors, as Ollama counts them."""
    return sum(tensor.n_elements for tensor in gguf.tensors)


def quantization_level(gguf: GGUFFile) -> str:
    """Name of ``general.file_type``; without a known one, guessed from the most common weight type."""
    file_type = _integer(gguf, "general.file_type")
    if file_type is not None and file_type in FILE_TYPE_NAMES:
        return FILE_TYPE_NAMES[file_type]
    weights = [t.ggml_type for t in gguf.tensors if len(t.shape) >= 2] or [t.ggml_type for t in gguf.tensors]
    if not weights:
        return UNKNOWN_FILE_TYPE
    most_common = Counter(weights).most_common(1)[0][0]
    return FILE_TYPE_OF_TENSOR_TYPE.get(most_common, UNKNOWN_FILE_TYPE)


def model_details(gguf: GGUFFile) -> GGUFDetails:
    """Architecture, size, quantization, context and embedding length of a GGUF model."""
    architecture = gguf.architecture or UNKNOWN_ARCHITECTURE
    count = parameter_count(gguf)
    template = gguf.metadata.scalar("tokenizer.chat_template")
    return GGUFDetails(
        architecture=architecture,
        family=architecture,
        families=[architecture],
        parameter_count=count,
        parameter_size=human_number(count),
        quantization_level=quantization_level(gguf),
        context_length=_integer(gguf, f"{architecture}.context_length"),
        embedding_length=_integer(gguf, f"{architecture}.embedding_length"),
        chat_template=template if isinstance(template, str) else None,
    )


def model_info(gguf: GGUFFile, *, verbose: bool) -> dict[str, Any]:
    """The ``model_info`` object of /api/show, keys sorted.

    All metadata except ``general.name`` and ``tokenizer.chat_template``; arrays longer than five
    elements become ``[]`` unless ``verbose`` (and are then not read from the file);
    ``general.parameter_count`` is the tensor element count, as Ollama reports it.
    """
    metadata = gguf.metadata
    info: dict[str, Any] = {}
    for key in metadata:
        if key in SHOW_HIDDEN_KEYS:
            continue
        array = metadata.array_info(key)
        if array is not None and array.count > SHOW_MAX_ARRAY_LENGTH and not verbose:
            info[key] = []
        else:
            info[key] = metadata[key]
    info["general.parameter_count"] = parameter_count(gguf)
    return dict(sorted(info.items()))


def tensor_list(gguf: GGUFFile) -> list[dict[str, Any]]:
    """The ``tensors`` list of /api/show: name, type name and shape of every tensor."""
    return [{"name": t.name, "type": t.type_name, "shape": list(t.shape)} for t in gguf.tensors]


def _integer(gguf: GGUFFile, key: str) -> int | None:
    """A non-negative integer metadata value, or None when missing or of another type."""
    if key not in gguf.metadata or gguf.metadata.value_type(key) not in INTEGER_TYPES:
        return None
    value: int = gguf.metadata.scalar(key)
    return value if value >= 0 else None
