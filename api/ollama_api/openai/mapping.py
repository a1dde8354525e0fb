"""OpenAI request fields in Ollama's terms: runtime options, ``think``, ``format``, images, tool calls.

Sampling defaults follow Ollama's compatibility layer: an absent ``temperature`` or ``top_p`` is
sent as 1.0 (OpenAI's default), which overrides the Modelfile's value. Ollama's own ``options``
and a top-level ``num_ctx`` may be given too; the OpenAI fields win over ``options``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import msgspec

from ollama_api.native.checks import tool_call_id
from ollama_api.openai.schemas import FunctionCallOut, ResponseFormat, ToolCallOut
from ollama_core.errors import RequestError

REASONING_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}
"""``reasoning_effort`` values and the ``think`` value each becomes."""

IMAGE_PREFIXES = (
    "data:image/jpeg;base64,",
    "data:image/jpg;base64,",
    "data:image/png;base64,",
    "data:image/webp;base64,",
    "data:;base64,",
)


def runtime_options(
    *,
    options: Mapping[str, Any] | None = None,
    num_ctx: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    stop: str | list[str] | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
) -> dict[str, Any]:
    """The request's Ollama options: OpenAI's defaults, then ``options``, then the named fields."""
    merged: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0}
    merged.update(options or {})
    named = {
        "num_ctx": num_ctx,
        "temperature": temperature,
        "top_p": top_p,
        "num_predict": max_tokens,
        "seed": seed,
        "stop": [stop] if isinstance(stop, str) else (stop or None),
        "frequency_penalty": frequency_penalty,
        "presence_penalty": presence_penalty,
    }
    merged.update({key: value for key, value in named.items() if value is not None})
    return merged


def is_token_list(value: Any) -> bool:
    """Whether ``value`` is a non-empty list of token ids."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def think_from_effort(effort: str | None) -> bool | str | None:
    """``think`` for a ``reasoning_effort``: ``none`` turns thinking off, levels map to Ollama's."""
    if not effort:
        return None
    try:
        return REASONING_EFFORTS[effort]
    except KeyError:
        allowed = ", ".join(f'"{name}"' for name in REASONING_EFFORTS)
        raise RequestError(400, f"invalid reasoning value: '{effort}' (must be one of {allowed})") from None


def format_from_response_format(value: ResponseFormat | None) -> str | dict[str, Any] | None:
    """``format`` for ``response_format``: ``json_object`` is ``"json"``, ``json_schema`` its schema."""
    if value is None:
        return None
    kind = value.type.strip().lower()
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        if value.json_schema is None or value.json_schema.schema is None:
            raise RequestError(400, "response_format 'json_schema' needs 'json_schema.schema'")
        return value.json_schema.schema
    raise RequestError(
        400, f"invalid response_format type: '{value.type}' (expected 'text', 'json_object' or 'json_schema')"
    )


def image_data(url: str) -> bytes:
    """The decoded payload of an image data URI; remote URLs are refused."""
    if url.startswith(("http://", "https://")):
        raise RequestError(400, "image URLs are not currently supported, please use base64 encoded data instead")
    prefix = next((p for p in IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        raise RequestError(400, "invalid image input")
    return base64_data(url[len(prefix) :])


def base64_data(data: str) -> bytes:
    """``data`` decoded from base64, else 400."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "invalid message format") from None


def parse_arguments(arguments: str | Mapping[str, Any]) -> dict[str, Any]:
    """Tool-call arguments sent back by a client: a JSON object, usually as a string."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise RequestError(400, "invalid tool call arguments") from None
    if not isinstance(value, dict):
        raise RequestError(400, "invalid tool call arguments")
    return value


def format_arguments(arguments: Mapping[str, Any]) -> str:
    """Arguments as the compact JSON string ``/v1`` clients expect."""
    return msgspec.json.encode(arguments).decode()


def tool_calls_out(calls: list[dict[str, Any]]) -> list[ToolCallOut]:
    """Parsed tool calls (``{"function": {"index", "name", "arguments"}}``) with fresh ``call_`` ids."""
    out = []
    for position, call in enumerate(calls):
        function = call["function"]
        index = function.get("index")
        out.append(
            ToolCallOut(
                id=tool_call_id(),
                index=index if isinstance(index, int) else position,
                function=FunctionCallOut(
                    name=str(function["name"]), arguments=format_arguments(function.get("arguments") or {})
                ),
            )
        )
    return out
