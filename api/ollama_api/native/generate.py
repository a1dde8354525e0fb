"""``POST /api/generate``: completion from a prompt (also loads and unloads models)."""

from __future__ import annotations

from typing import Any

from litestar import post
from litestar.response import Response

from ollama_api.native.checks import check_format, check_think, check_top_logprobs, require, tool_call_id
from ollama_api.native.inference_schemas import (
    DebugInfo,
    DebugRenderResponse,
    GenerateRequest,
    GenerateResponse,
    ToolCall,
    ToolCallFunction,
)
from ollama_api.wire import inference_response, json_response, utc_now
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.generation import Chunk, Final
from ollama_core.inference import Target, parse_keep_alive
from ollama_core.media import place_raw_media


def tool_calls(chunk: Chunk) -> list[ToolCall] | None:
    if not chunk.tool_calls:
        return None
    return [
        ToolCall(
            id=tool_call_id(),
            function=ToolCallFunction(
                name=str(call["function"]["name"]),
                arguments=dict(call["function"].get("arguments") or {}),
                index=call["function"].get("index"),
            ),
        )
        for call in chunk.tool_calls
    ]


def _messages(target: Target, data: GenerateRequest) -> list[dict[str, Any]]:
    model = target.model
    messages: list[dict[str, Any]] = []
    system = data.system if data.system is not None else model.system
    if system:
        messages.append({"role": "system", "content": system})
    if not data.context:
        messages += [dict(m) for m in model.messages]
    user: dict[str, Any] = {"role": "user", "content": data.prompt}
    if data.images:
        user["images"] = data.images
    messages.append(user)
    return messages


@post("/api/generate", status_code=200)
async def generate(data: GenerateRequest, ctx: ServerContext) -> Response[Any]:
    """Generate a completion, streamed as NDJSON unless ``stream`` is false."""
    inference = ctx.inference
    target = inference.resolve(data.model, f"model '{data.model}' not found")
    if data.raw and (data.template is not None or data.system is not None or data.context):
        raise RequestError(400, "raw mode does not support template, system, or context")
    keep_alive = parse_keep_alive(data.keep_alive)
    fmt = check_format(data.format)
    check_top_logprobs(data.top_logprobs)
    created = utc_now()
    if not data.prompt and not data.suffix and not data.images:
        if keep_alive == 0:
            await inference.unload(target)
            return json_response(GenerateResponse(model=data.model, created_at=created, response="", done=True,
                                                  done_reason="unload"))
        await inference.load(target, inference.options(target, data.options), keep_alive)
        return json_response(GenerateResponse(model=data.model, created_at=utc_now(), response="", done=True,
                                              done_reason="load"))
    require(target, "completion", f'"{data.model}" does not support generate')
    if data.suffix:
        require(target, "insert", f"{target.model.name.full()} does not support insert")
    think = check_think(target, data.think)
    options = inference.options(target, data.options)
    media = await inference.decode_media(target, [{"images": data.images or []}])
    if data.raw:
        prompt, media = place_raw_media(data.prompt, media)
        add_bos = True
    else:
        rendered = inference.render(target, _messages(target, data), tools=None, think=data.think if think else False,
                                    template=data.template, suffix=data.suffix)
        prompt, add_bos = rendered.text, rendered.add_bos
        if data.context:
            prefix = await inference.detokenize(target, list(data.context), options)
            prompt = prefix + rendered.text
    if data.debug_render_only:
        return json_response(DebugRenderResponse(model=data.model, created_at=created,
                                                 debug_info=DebugInfo(rendered_template=prompt,
                                                                      image_count=len(data.images or []))))
    parser = None if data.raw else inference.parser(target, None, think, prompt)
    events = inference.generate(target, prompt, add_bos=add_bos, options=options, keep_alive=keep_alive,
                                parser=parser, format=fmt, think=think and parser is not None, shift=data.shift is not False,
                                truncate=data.truncate is not False, return_context=not data.raw, media=media,
                                logprobs=data.logprobs, top_logprobs=data.top_logprobs)

    def encode(event: Chunk | Final) -> GenerateResponse:
        if isinstance(event, Final):
            return GenerateResponse(
                model=data.model, created_at=utc_now(), response="", done=True, done_reason=event.done_reason,
                context=event.context, total_duration=event.total_duration, load_duration=event.load_duration,
                prompt_eval_count=event.prompt_eval_count, prompt_eval_duration=event.prompt_eval_duration,
                eval_count=event.eval_count, eval_duration=event.eval_duration,
            )
        return GenerateResponse(model=data.model, created_at=utc_now(), response=event.content, done=False,
                                thinking=event.thinking or None, tool_calls=tool_calls(event),
                                logprobs=event.logprobs or None)

    def combine(events_seen: list[Chunk | Final]) -> GenerateResponse:
        final = encode(events_seen[-1])
        chunks = [e for e in events_seen if isinstance(e, Chunk)]
        final.response = "".join(c.content for c in chunks)
        final.thinking = "".join(c.thinking for c in chunks) or None
        calls = [call for c in chunks for call in (tool_calls(c) or [])]
        final.tool_calls = calls or None
        final.logprobs = [entry for c in chunks for entry in c.logprobs] or None
        return final

    return await inference_response(events, stream=data.stream, encode=encode, combine=combine)


ROUTES = [generate]
