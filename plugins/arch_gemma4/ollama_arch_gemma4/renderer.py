"""Gemma 4 chat prompts: the model's own Jinja chat template, rendered as transformers renders it.

The template is the GGUF's ``tokenizer.chat_template`` when the model has one, else the bundled
canonical template of the model's variant (small E2B/E4B or large 26B/31B, told apart by the GGUF
metadata in the request). Ollama messages are mapped onto the fields the template reads:
``thinking`` -> ``reasoning``, ``tool_name`` -> ``name``, JSON-string tool arguments -> objects,
``images`` -> image or audio content parts (each item sniffed), which the template writes as
``<|image|>`` / ``<|audio|>``; :attr:`RenderedPrompt.media` lists those tokens in item order. Tool results are tied to their calls by ``tool_call_id`` when
given, else by ``tool_name``, else by position after the calls.

The prompt is rendered without the leading ``<bos>``; :class:`RenderedPrompt` ``add_bos`` tells
the tokenizer to add it, so it is present exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from ollama_core.descriptors import RenderedPrompt, RenderRequest
from ollama_core.media import media_kind

from ollama_arch_gemma4.chat_templates import bundled_template, variant_from_metadata
from ollama_arch_gemma4.think import thinking_requested


MEDIA_TOKENS = {"image": "<|image|>", "audio": "<|audio|>"}


class Gemma4Renderer:
    """Renders chats for Gemma 4 models."""

    def render(self, request: RenderRequest) -> RenderedPrompt:
        """The prompt for ``request`` (text without BOS, ``add_bos=True``)."""
        template = compile_template(template_source(request.chat_template, request.metadata))
        try:
            text = template.render(
                messages=template_messages(request.messages),
                tools=[dict(tool) for tool in request.tools] if request.tools else None,
                enable_thinking=thinking_requested(request.think),
                add_generation_prompt=request.add_generation_prompt,
                bos_token="",
                eos_token=request.eos_token,
            )
        except jinja2.TemplateError as exc:
            raise ValueError(f"Gemma 4 chat template: {exc}") from exc
        media = tuple(MEDIA_TOKENS[media_kind(item)] for m in request.messages for item in m.get("images") or ())
        return RenderedPrompt(text=text, add_bos=True, media=media)


def template_source(chat_template: str | None, metadata: Mapping[str, Any]) -> str:
    """The model's chat template if it has one, else the bundled template of its variant."""
    if chat_template and chat_template.strip():
        return chat_template
    return bundled_template(variant_from_metadata(metadata))


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ollama chat messages -> the message dicts the HF Gemma 4 template reads."""
    converted: list[dict[str, Any]] = []
    call_ids: list[str] = []
    answered = 0
    for position, message in enumerate(messages):
        item = {k: v for k, v in message.items() if k not in ("thinking", "tool_name", "images", "tool_calls")}
        if message.get("thinking") and not item.get("reasoning"):
            item["reasoning"] = message["thinking"]
        images = message.get("images") or []
        if images:
            parts: list[dict[str, Any]] = [{"type": media_kind(image)} for image in images]
            if message.get("content"):
                parts.append({"type": "text", "text": message["content"]})
            item["content"] = parts
        if message.get("tool_calls"):
            item["tool_calls"] = [
                _tool_call(call, f"call_{position}_{k}") for k, call in enumerate(message["tool_calls"])
            ]
            call_ids = [call["id"] for call in item["tool_calls"]]
            answered = 0
        if message.get("role") == "tool":
            if message.get("tool_name") and not item.get("name"):
                item["name"] = message["tool_name"]
            if not item.get("tool_call_id") and not item.get("name") and answered < len(call_ids):
                item["tool_call_id"] = call_ids[answered]
            answered += 1
        converted.append(item)
    return converted


def _tool_call(call: Mapping[str, Any], fallback_id: str) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise ValueError(f"tool call {function.get('name')!r}: arguments are not a JSON object") from exc
    return {
        "id": call.get("id") or fallback_id,
        "type": "function",
        "function": {"name": function.get("name", ""), "arguments": arguments},
    }


class _GenerationBlock(Extension):
    """``{% generation %}…{% endgeneration %}`` as transformers accepts it; renders its body."""

    tags = {"generation"}  # noqa: RUF012 - jinja2's Extension declares tags as a plain attribute

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return str(caller())


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strftime_now(date_format: str) -> str:
    return datetime.now().strftime(date_format)


@lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in an environment configured as transformers configures it."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)
