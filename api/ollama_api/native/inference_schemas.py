"""Wire types of the native inference endpoints: generate, chat, embed, embeddings, ps."""

from __future__ import annotations

from typing import Any

import msgspec

from ollama_api.native.schemas import ModelDetails
from ollama_core.generation import Logprob

KeepAlive = str | float | None
Think = bool | str | None
Format = str | dict[str, Any] | None


class ToolCallFunction(msgspec.Struct, omit_defaults=True):
    name: str
    arguments: dict[str, Any] = {}
    index: int | None = None


class ToolCall(msgspec.Struct, omit_defaults=True):
    function: ToolCallFunction
    id: str | None = None


class ToolFunction(msgspec.Struct, omit_defaults=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


class Tool(msgspec.Struct, omit_defaults=True):
    function: ToolFunction
    type: str = "function"


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class GenerateRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    format: Format = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: Think = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    stream: bool = True
    debug_render_only: bool = msgspec.field(default=False, name="_debug_render_only")


class ChatRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    messages: list[ChatMessage] | None = None
    tools: list[Tool] | None = None
    format: Format = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: Think = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    stream: bool = True
    debug_render_only: bool = msgspec.field(default=False, name="_debug_render_only")


class Metrics(msgspec.Struct, omit_defaults=True):
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class GenerateResponse(msgspec.Struct, omit_defaults=True):
    model: str
    created_at: str
    response: str
    done: bool
    thinking: str | None = None
    done_reason: str | None = None
    context: list[int] | None = None
    tool_calls: list[ToolCall] | None = None
    logprobs: list[Logprob] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class ChatResponseMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatResponse(msgspec.Struct, omit_defaults=True):
    model: str
    created_at: str
    message: ChatResponseMessage
    done: bool
    done_reason: str | None = None
    logprobs: list[Logprob] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class DebugInfo(msgspec.Struct):
    rendered_template: str
    image_count: int = 0


class DebugRenderResponse(msgspec.Struct):
    model: str
    created_at: str
    debug_info: DebugInfo = msgspec.field(name="_debug_info")


class EmbedRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    input: str | list[Any] | None = None
    truncate: bool = True
    dimensions: int | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class EmbedResponse(msgspec.Struct, omit_defaults=True):
    model: str
    embeddings: list[list[float]]
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None


class EmbeddingsRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class EmbeddingsResponse(msgspec.Struct):
    embedding: list[float]


class RunningModel(msgspec.Struct, omit_defaults=True):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int


class PsResponse(msgspec.Struct):
    models: list[RunningModel]
