"""Hook implementations of the ``arch_modernbert`` plugin; imports nothing heavy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ollama_core.descriptors import Architecture, ConverterSpec, ReferenceSpec, TokenizerSpec
from ollama_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from ollama_arch_modernbert.convert import ModernBertConverter
    from ollama_arch_modernbert.reference import ModernBertReference
    from ollama_arch_modernbert.tokenizer import ModernBertTokenizerConverter

OLLAMA_PLUGIN_API = 1

NAME = "modernbert"
GGUF_ARCHITECTURE = "modern-bert"
HF_ARCHITECTURES = ("ModernBertModel", "ModernBertForMaskedLM")


def _converter() -> ModernBertConverter:
    from ollama_arch_modernbert.convert import ModernBertConverter

    return ModernBertConverter()


def _tokenizer() -> ModernBertTokenizerConverter:
    from ollama_arch_modernbert.tokenizer import ModernBertTokenizerConverter

    return ModernBertTokenizerConverter()


def _reference(checkpoint_dir: Path) -> ModernBertReference:
    from ollama_arch_modernbert.reference import ModernBertReference

    return ModernBertReference(checkpoint_dir)


@hookimpl
def ollama_architectures() -> Sequence[Architecture]:
    """ModernBERT encoders, served as embedding models."""
    return [
        Architecture(
            name=NAME,
            gguf_architectures=(GGUF_ARCHITECTURE,),
            hf_architectures=HF_ARCHITECTURES,
            capabilities=("embedding",),
        )
    ]


@hookimpl
def ollama_converters() -> Sequence[ConverterSpec]:
    """safetensors to GGUF for ModernBERT backbones (masked-LM heads are dropped)."""
    return [ConverterSpec(name=NAME, hf_architectures=HF_ARCHITECTURES, factory=_converter)]


@hookimpl
def ollama_tokenizers() -> Sequence[TokenizerSpec]:
    """ModernBERT's byte-level BPE ``tokenizer.json`` to GGUF tokenizer metadata."""
    return [TokenizerSpec(name=NAME, architectures=(NAME, GGUF_ARCHITECTURE), factory=_tokenizer)]


@hookimpl
def ollama_reference_models() -> Sequence[ReferenceSpec]:
    """A numpy forward pass of ModernBERT with sentence-transformers pooling."""
    return [ReferenceSpec(name=NAME, hf_architectures=HF_ARCHITECTURES, factory=_reference)]
