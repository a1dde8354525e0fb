"""GGUF value types, GGML tensor types with their block layouts, and llama.cpp file type names."""

from __future__ import annotations

import enum

import msgspec


class GGUFValueType(enum.IntEnum):
    """Type id of a GGUF metadata value."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


SCALAR_SIZES: dict[GGUFValueType, int] = {
    GGUFValueType.UINT8: 1,
    GGUFValueType.INT8: 1,
    GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4,
    GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4,
    GGUFValueType.BOOL: 1,
    GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}
"""Byte size of every fixed-size value type."""

NUMPY_DTYPES: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "<u1",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}
"""Little-endian NumPy dtype of every fixed-size value type."""

INTEGER_TYPES: frozenset[GGUFValueType] = frozenset(
    {
        GGUFValueType.UINT8,
        GGUFValueType.INT8,
        GGUFValueType.UINT16,
        GGUFValueType.INT16,
        GGUFValueType.UINT32,
        GGUFValueType.INT32,
        GGUFValueType.UINT64,
        GGUFValueType.INT64,
    }
)


class TensorType(msgspec.Struct, frozen=True):
    """A GGML tensor type: ``block_size`` elements are stored in ``type_size`` bytes."""

    id: int
    name: str
    block_size: int
    type_size: int


_QK_K = 256

TENSOR_TYPES: dict[int, TensorType] = {
    t.id: t
    for t in (
        TensorType(0, "F32", 1, 4),
        TensorType(1, "F16", 1, 2),
        TensorType(2, "Q4_0", 32, 2 + 16),
        TensorType(3, "Q4_1", 32, 2 + 2 + 16),
        TensorType(6, "Q5_0", 32, 2 + 4 + 16),
        TensorType(7, "Q5_1", 32, 2 + 2 + 4 + 16),
        TensorType(8, "Q8_0", 32, 2 + 32),
        TensorType(9, "Q8_1", 32, 2 + 2 + 32),
        TensorType(10, "Q2_K", _QK_K, 2 + 2 + _QK_K // 16 + _QK_K // 4),
        TensorType(11, "Q3_K", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + 12),
        TensorType(12, "Q4_K", _QK_K, 2 + 2 + _QK_K // 2 + 12),
        TensorType(13, "Q5_K", _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 8 + 12),
        TensorType(14, "Q6_K", _QK_K, 2 + _QK_K // 2 + _QK_K // 4 + _QK_K // 16),
        TensorType(15, "Q8_K", _QK_K, 4 + _QK_K + _QK_K // 8),
        TensorType(16, "IQ2_XXS", _QK_K, 2 + _QK_K // 4),
        TensorType(17, "IQ2_XS", _QK_K, 2 + _QK_K // 4 + _QK_K // 32),
        TensorType(18, "IQ3_XXS", _QK_K, 2 + _QK_K // 4 + _QK_K // 8),
        TensorType(19, "IQ1_S", _QK_K, 2 + _QK_K // 8 + _QK_K // 16),
        TensorType(20, "IQ4_NL", 32, 2 + 16),
        TensorType(21, "IQ3_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4),
        TensorType(22, "IQ2_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 16),
        TensorType(23, "IQ4_XS", _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 64),
        TensorType(24, "I8", 1, 1),
        TensorType(25, "I16", 1, 2),
        TensorType(26, "I32", 1, 4),
        TensorType(27, "I64", 1, 8),
        TensorType(28, "F64", 1, 8),
        TensorType(29, "IQ1_M", _QK_K, _QK_K // 8 + _QK_K // 16 + _QK_K // 32),
        TensorType(30, "BF16", 1, 2),
        TensorType(34, "TQ1_0", _QK_K, 2 + 4 * 13),
        TensorType(35, "TQ2_0", _QK_K, 2 + 64),
        TensorType(39, "MXFP4", 32, 1 + 16),
        TensorType(40, "NVFP4", 64, 4 + 32),
        TensorType(41, "Q1_0", 128, 2 + 16),
    )
}
"""Tensor types that may appear in a GGUF file; ids retired from GGML (4, 5, 31-33, 36-38) are absent."""

FILE_TYPE_NAMES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}
"""Names of llama.cpp file types (``general.file_type``), spelled as Ollama reports them."""

FILE_TYPE_OF_TENSOR_TYPE: dict[int, str] = {
    0: "F32",
    1: "F16",
    30: "BF16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    10: "Q2_K",
    11: "Q3_K_M",
    12: "Q4_K_M",
    13: "Q5_K_M",
    14: "Q6_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    29: "IQ1_M",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4_MOE",
    40: "NVFP4",
    41: "Q1_0",
}
"""File type name guessed from the most common tensor type, as llama.cpp guesses a missing file type."""

UNKNOWN_FILE_TYPE = "unknown"
