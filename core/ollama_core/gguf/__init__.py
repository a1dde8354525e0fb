"""GGUF files: a bounds-checked reader, the details Ollama reports, and model capabilities."""

from ollama_core.gguf.capabilities import derive_capabilities
from ollama_core.gguf.details import (
    GGUFDetails,
    human_number,
    model_details,
    model_info,
    parameter_count,
    quantization_level,
    tensor_list,
)
from ollama_core.gguf.ggml_types import GGUFValueType
from ollama_core.gguf.reader import (
    DEFAULT_LIMITS,
    ArrayInfo,
    GGUFError,
    GGUFFile,
    GGUFLimits,
    GGUFMetadata,
    TensorInfo,
    read_gguf,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ArrayInfo",
    "GGUFDetails",
    "GGUFError",
    "GGUFFile",
    "GGUFLimits",
    "GGUFMetadata",
    "GGUFValueType",
    "TensorInfo",
    "derive_capabilities",
    "human_number",
    "model_details",
    "model_info",
    "parameter_count",
    "quantization_level",
    "read_gguf",
    "tensor_list",
]
