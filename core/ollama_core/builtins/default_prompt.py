"""The default renderer and parser, used when no plugin claims a model's architecture.

The renderer uses the Modelfile's Go ``TEMPLATE`` when the model has one, else the GGUF's own
Jinja chat template rendered as transformers renders it. The parser splits ``<think>`` sections
and common tool-call formats out of generated text; it starts inside a thought when the rendered
prompt ends with ``<think>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ollama_core.descriptors import ParserSpec, RendererSpec
from ollama_core.hookspecs import hookimpl


def _renderer() -> Any:
    from ollama_core.prompt.default_renderer import DefaultRenderer

    return DefaultRenderer()


def _parser(tools: Sequence[Mapping[str, Any]] | None, think: bool, prompt: str = "") -> Any:
    from ollama_core.prompt.parser import DEFAULT_THINKING_TAGS, DefaultParser

    opened = prompt.rstrip().endswith(DEFAULT_THINKING_TAGS[0])
    return DefaultParser(tools=tools, think=think, thinking_open=opened)


@hookimpl
def ollama_renderers() -> Sequence[RendererSpec]:
    return [RendererSpec(name="default", factory=_renderer)]


@hookimpl
def ollama_parsers() -> Sequence[ParserSpec]:
    return [ParserSpec(name="default", factory=_parser)]
