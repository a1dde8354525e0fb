"""``POST /api/chat``: the next assistant message of a conversation (also loads and unloads models)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import post
from litestar.response import Response

from ollama_api.native.checks import check_format, check_think, check_top_logprobs, require
from ollama_api.native.generate import tool_calls
from ollama_api.native.inference_schemas import (
    ChatRequest,
    ChatResponse,
    ChatResponseMessage,
    DebugInfo,
    DebugRenderResponse,
)
from ollama_api.wire import inference_response, json_response, utc_now
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.generation import Chunk, Final
from ollama_core.inference import Target, parse_keep_alive


def conversation(target: Target, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Modelfile MESSAGEs, then the request's; the Modelfile SYSTEM first unless the chat starts with one."""
    model = target.model
    assembled = [dict(m) for m in model.messages] + messages
    if model.system and (not assembled or assembled[0].get("role") != "system"):
        assembled.insert(0, {"role": "system", "content": model.system})
    return assembled


@post("/api/chat", status_code=200)
async def chat(data: ChatRequest, ctx: ServerContext) -> Response[Any]:
    """Chat, streamed as NDJSON unless ``stream`` is false."""
    if not data.model:
        raise RequestError(400, "model is required")
    inference = ctx.inference
    target = inference.resolve(data.model, f"model '{data.model}' not found")
    keep_alive = parse_keep_alive(data.keep_alive)
    fmt = check_format(data.format)
    check_top_logprobs(data.top_logprobs)
    if not data.messages:
        empty = ChatResponseMessage(role="assistant", content="")
        if keep_alive == 0:
            await inference.unload(target)
            return json_response(ChatResponse(model=data.model, created_at=utc_now(), message=empty, done=True,
                                              done_reason="unload"))
        await inference.load(target, inference.options(target, data.options), keep_alive)
        return json_response(ChatResponse(model=data.model, created_at=utc_now(), message=empty, done=True,
                                          done_reason="load"))
    require(target, "completion", f'"{data.model}" does not support chat')
    tools = [msgspec.to_builtins(t) for t in data.tools] if data.tools else None
    if tools:
        require(target, "tools", f"{target.model.name.full()} does not support tools")
    think = check_think(target, data.think)
    options = inference.options(target, data.options)
    messages = []
    for message in data.messages:
        item = msgspec.to_builtins(message)
        item["role"] = message.role.lower()
        messages.append(item)
    chat_messages, rendered = await inference.render_chat(target, conversation(target, messages), tools=tools,
                                                          think=data.think if think else False, options=options,
                                                          truncate=data.truncate is not False)
    media = await inference.decode_media(target, chat_messages)
    if data.debug_render_only:
        return json_response(DebugRenderResponse(model=data.model, created_at=utc_now(),
                                                 debug_info=DebugInfo(rendered_template=rendered.text,
                                                                      image_count=len(media))))
    events = inference.generate(target, rendered.text, add_bos=rendered.add_bos, options=options,
                                keep_alive=keep_alive, parser=inference.parser(target, tools, think, rendered.text),
                                format=fmt, think=think,
                                shift=data.shift is not False, truncate=data.truncate is not False, media=media,
                                logprobs=data.logprobs, top_logprobs=data.top_logprobs)

    def encode(event: Chunk | Final) -> ChatResponse:
        if isinstance(event, Final):
            return ChatResponse(
                model=data.model, created_at=utc_now(), message=ChatResponseMessage(role="assistant", content=""),
                done=True, done_reason=event.done_reason, total_duration=event.total_duration,
                load_duration=event.load_duration, prompt_eval_count=event.prompt_eval_count,
                prompt_eval_duration=event.prompt_eval_duration, eval_count=event.eval_count,
                eval_duration=event.eval_duration,
            )
        message = ChatResponseMessage(role="assistant", content=event.content, thinking=event.thinking or None,
                                      tool_calls=tool_calls(event))
        return ChatResponse(model=data.model, created_at=utc_now(), message=message, done=False,
                            logprobs=event.logprobs or None)

    def combine(seen: list[Chunk | Final]) -> ChatResponse:
        final = encode(seen[-1])
        chunks = [e for e in seen if isinstance(e, Chunk)]
        calls = [call for c in chunks for call in (tool_calls(c) or [])]
        final.message = ChatResponseMessage(
            role="assistant",
            content="".join(c.content for c in chunks),
            thinking="".join(c.thinking for c in chunks) or None,
            tool_calls=calls or None,
        )
        final.logprobs = [entry for c in chunks for entry in c.logprobs] or None
        return final

    return await inference_response(events, stream=data.stream, encode=encode, combine=combine)


ROUTES = [chat]
