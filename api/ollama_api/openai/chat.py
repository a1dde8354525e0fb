"""``POST /v1/chat/completions``: a chat completion, whole or as server-sent chunks."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import post
from litestar.response import Response

from ollama_api.native.checks import check_top_logprobs
from ollama_api.openai.errors import error_body
from ollama_api.openai.generation import ChatJob, Events, collect, start_chat
from ollama_api.openai.mapping import (
    base64_data,
    format_from_response_format,
    image_data,
    parse_arguments,
    runtime_options,
    think_from_effort,
    tool_calls_out,
)
from ollama_api.openai.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageOut,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    ImageURLPart,
    InputAudioPart,
    Message,
    NamedToolChoice,
    TextPart,
    Usage,
)
from ollama_api.openai.sse import DONE, data_frame, event_stream, open_events
from ollama_api.openai.tool_choice import plan_tools
from ollama_api.wire import json_response
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.generation import Final


def _tool_name(messages: list[Message], call_id: str | None) -> str | None:
    """The function name of the latest earlier call with ``call_id``."""
    if not call_id:
        return None
    for message in reversed(messages):
        for call in message.tool_calls or ():
            if call.id == call_id:
                return call.function.name
    return None


def convert_message(message: Message, earlier: list[Message]) -> dict[str, Any]:
    """One OpenAI message as one native message; text parts are joined, images collected."""
    role = message.role.lower()
    item: dict[str, Any] = {"role": role, "content": ""}
    content = message.content
    if content is None:
        if not message.tool_calls:
            raise RequestError(400, "invalid message content type: <nil>")
    elif isinstance(content, str):
        item["content"] = content
    else:
        texts: list[str] = []
        images: list[bytes] = []
        for part in content:
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImageURLPart):
                url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
                images.append(image_data(url))
            elif isinstance(part, InputAudioPart):
                images.append(base64_data(part.input_audio.data))
        item["content"] = "\n\n".join(texts)
        if images:
            item["images"] = images
    thinking = message.reasoning or message.reasoning_content
    if thinking:
        item["thinking"] = thinking
    if message.tool_calls:
        item["tool_calls"] = [
            {
                **({"id": call.id} if call.id else {}),
                "function": {"index": i, "name": call.function.name,
                             "arguments": parse_arguments(call.function.arguments)},
            }
            for i, call in enumerate(message.tool_calls)
        ]
    if role == "tool":
        name = message.name or _tool_name(earlier, message.tool_call_id)
        if name:
            item["tool_name"] = name
    if message.tool_call_id:
        item["tool_call_id"] = message.tool_call_id
    return item


def chat_job(data: ChatCompletionRequest) -> ChatJob:
    """The chat a request asks for, in Ollama's terms."""
    if not data.messages:
        raise RequestError(400, "[] is too short - 'messages'")
    messages = [convert_message(m, data.messages[:i]) for i, m in enumerate(data.messages)]
    tools = [msgspec.to_builtins(t) for t in data.tools] if data.tools else None
    if isinstance(data.tool_choice, NamedToolChoice):
        plan = plan_tools(tools, None, data.tool_choice.function.name)
    else:
        plan = plan_tools(tools, data.tool_choice)
    check_top_logprobs(data.top_logprobs or 0)
    effort = data.reasoning.effort if data.reasoning is not None and data.reasoning.effort else data.reasoning_effort
    options = runtime_options(
        options=data.options,
        num_ctx=data.num_ctx,
        temperature=data.temperature,
        top_p=data.top_p,
        max_tokens=data.max_tokens if data.max_tokens is not None else data.max_completion_tokens,
        seed=data.seed,
        stop=data.stop,
        frequency_penalty=data.frequency_penalty,
        presence_penalty=data.presence_penalty,
    )
    return ChatJob(
        model=data.model,
        messages=messages,
        tools=plan,
        options=options,
        think=think_from_effort(effort),
        format=format_from_response_format(data.response_format),
        keep_alive=data.keep_alive,
        logprobs=bool(data.logprobs),
        top_logprobs=data.top_logprobs or 0,
    )


def _usage(final: Final) -> Usage:
    return Usage(prompt_tokens=final.prompt_eval_count, completion_tokens=final.eval_count,
                 total_tokens=final.prompt_eval_count + final.eval_count)


@post("/chat/completions", status_code=200)
async def chat_completions(data: ChatCompletionRequest, ctx: ServerContext) -> Response[Any]:
    """A chat completion; with ``stream`` a ``text/event-stream`` of chunks ending in ``[DONE]``."""
    job = chat_job(data)
    generation = await start_chat(ctx, job)
    completion_id = f"chatcmpl-{random.randrange(999)}"
    created = int(time.time())
    if not data.stream:
        outcome = await collect(generation.events)
        message = ChatMessageOut(
            role="assistant",
            content=outcome.content,
            reasoning=outcome.thinking or None,
            tool_calls=tool_calls_out(outcome.tool_calls) or None,
        )
        return json_response(
            ChatCompletion(
                id=completion_id,
                created=created,
                model=data.model,
                choices=[Choice(index=0, message=message, finish_reason=outcome.finish_reason,
                                logprobs=ChoiceLogprobs(outcome.logprobs) if job.logprobs else None)],
                usage=_usage(outcome.final),
            )
        )
    events = await open_events(generation.events)
    include_usage = data.stream_options is not None and data.stream_options.include_usage

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
        value = ChatCompletionChunk(id=completion_id, created=created, model=data.model, choices=choices)
        if usage is not None:
            value.usage = usage
        return data_frame(value)

    async def frames(stream: Events) -> AsyncGenerator[bytes, None]:
        called = False
        async with aclosing(stream):
            async for event in stream:
                if isinstance(event, Final):
                    reason = "tool_calls" if called else event.done_reason
                    yield chunk([ChunkChoice(index=0, delta=Delta(), finish_reason=reason)])
                    if include_usage:
                        yield chunk([], _usage(event))
                    yield DONE
                    return
                deltas = []
                if event.thinking:
                    deltas.append(Delta(role="assistant", content="", reasoning=event.thinking))
                if event.content or event.tool_calls or not deltas:
                    calls = tool_calls_out(event.tool_calls) or None
                    called = called or calls is not None
                    deltas.append(Delta(role="assistant", content=event.content, tool_calls=calls))
                # The event's log probabilities go with its last chunk.
                logprobs = ChoiceLogprobs(event.logprobs) if event.logprobs else None
                for i, delta in enumerate(deltas):
                    last = i == len(deltas) - 1
                    yield chunk([ChunkChoice(index=0, delta=delta, logprobs=logprobs if last else None)])

    return event_stream(frames(events), lambda exc: data_frame(error_body(exc.status, exc.message)))


ROUTES = [chat_completions]
