"""Hook implementations of the ``ollama-arch-gemma4`` plugin.

Only cheap descriptors are built here; each factory imports its module (numpy, gguf, jinja2)
when the core first needs the object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollama_core.descriptors import (
    Architecture,
    ConverterSpec,
    ParserSpec,
    ReferenceSpec,
    RendererSpec,
    TokenizerSpec,
)
from ollama_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from ollama_arch_gemma4.convert import Gemma4Converter
    from ollama_arch_gemma4.parser import Gemma4Parser
    from ollama_arch_gemma4.reference import Gemma4Reference
    from ollama_arch_gemma4.renderer import Gemma4Renderer
    from ollama_arch_gemma4.tokenizer import Gemma4TokenizerConverter

OLLAMA_PLUGIN_API = 1

NAME = "gemma4"
GGUF_ARCHITECTURES = ("gemma4",)
HF_ARCHITECTURES = ("Gemma4ForCausalLM", "Gemma4ForConditionalGeneration")


def _converter() -> Gemma4Converter:
    from ollama_arch_gemma4.convert import Gemma4Converter

    return Gemma4Converter()


def _tokenizer() -> Gemma4TokenizerConverter:
    from ollama_arch_gemma4.tokenizer import Gemma4TokenizerConverter

    return Gemma4TokenizerConverter()


def _tool_grammar(tools: Sequence[Mapping[str, Any]]) -> str:
    from ollama_arch_gemma4.tool_grammar import tool_call_grammar

    return tool_call_grammar(tools)


def _reference(checkpoint_dir: Path) -> Gemma4Reference:
    from ollama_arch_gemma4.reference import Gemma4Reference

    return Gemma4Reference(checkpoint_dir)


def _renderer() -> Gemma4Renderer:
    from ollama_arch_gemma4.renderer import Gemma4Renderer

    return Gemma4Renderer()


def _parser(tools: Sequence[Mapping[str, Any]] | None, think: bool, *, prompt: str = "") -> Gemma4Parser:
    from ollama_arch_gemma4.parser import Gemma4Parser

    return Gemma4Parser(tools, think, prompt=prompt)


@hookimpl
def ollama_architectures() -> Sequence[Architecture]:
    """Gemma 4 models (GGUF ``gemma4``), rendered and parsed by this plugin; with a projector
    converted from their vision and audio towers they take images and audio."""
    return [
        Architecture(
            name=NAME,
            gguf_architectures=GGUF_ARCHITECTURES,
            hf_architectures=HF_ARCHITECTURES,
            renderer=NAME,
            parser=NAME,
            projector_capabilities=("vision", "audio"),
        )
    ]


@hookimpl
def ollama_converters() -> Sequence[ConverterSpec]:
    """HF Gemma 4 checkpoints to a text GGUF and, for audio/vision towers, a projector GGUF."""
    return [ConverterSpec(name=NAME, hf_architectures=HF_ARCHITECTURES, factory=_converter)]


@hookimpl
def ollama_tokenizers() -> Sequence[TokenizerSpec]:
    """Gemma 4 ``tokenizer.json`` to GGUF tokenizer metadata."""
    return [TokenizerSpec(name=NAME, architectures=GGUF_ARCHITECTURES, factory=_tokenizer)]


@hookimpl
def ollama_reference_models() -> Sequence[ReferenceSpec]:
    """A numpy forward pass of the text model, to verify conversions."""
    return [ReferenceSpec(name=NAME, hf_architectures=HF_ARCHITECTURES, factory=_reference)]


@hookimpl
def ollama_renderers() -> Sequence[RendererSpec]:
    """The Gemma 4 chat prompt renderer."""
    return [RendererSpec(name=NAME, factory=_renderer, architectures=GGUF_ARCHITECTURES)]


@hookimpl
def ollama_parsers() -> Sequence[ParserSpec]:
    """The Gemma 4 output parser: content, thinking and tool calls."""
    return [
        ParserSpec(
            name=NAME,
            factory=_parser,
            architectures=GGUF_ARCHITECTURES,
            capabilities=("tools", "thinking"),
            tool_grammar=_tool_grammar,
        )
    ]
