"""``POST /v1/completions``: legacy text completion of one or several prompts.

A prompt may be a string, a list of strings, a token list or a list of token lists; each prompt
becomes one choice (``index`` in prompt order), generated one after another.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from litestar import post
from litestar.response import Response

from ollama_api.native.checks import check_top_logprobs
from ollama_api.openai.errors import error_body
from ollama_api.openai.generation import Generation, collect, start_completion
from ollama_api.openai.mapping import is_token_list, runtime_options
from ollama_api.openai.schemas import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, Usage
from ollama_api.openai.sse import DONE, data_frame, event_stream, open_events
from ollama_api.wire import json_response
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.generation import Final, Logprob

Prompt = str | list[int]


def legacy_logprobs(entries: list[Logprob], offset: int) -> CompletionLogprobs:
    """Log probabilities in the legacy completion shape; ``offset`` is where the first token's
    text starts in the choice's text."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return CompletionLogprobs(
        tokens=[entry.token for entry in entries],
        token_logprobs=[entry.logprob for entry in entries],
        top_logprobs=[{alt.token: alt.logprob for alt in entry.top_logprobs} for entry in entries],
        text_offset=offsets,
    )


def prompts(value: str | list[Any]) -> list[Prompt]:
    """The prompts a request holds, each a string or a token list."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(p, str) for p in value):
        return list(value)
    if is_token_list(value):
        return [list(value)]
    if value and all(is_token_list(p) for p in value):
        return [list(p) for p in value]
    raise RequestError(400, "invalid type for 'prompt' field: expected a string, strings, or token arrays")


async def _echo(ctx: ServerContext, generation: Generation, prompt: Prompt) -> str:
    """The prompt as text (a token prompt detokenized by the model)."""
    if isinstance(prompt, str):
        return prompt
    return await ctx.inference.detokenize(generation.target, prompt, generation.options)


@post("/completions", status_code=200)
async def completions(data: CompletionRequest, ctx: ServerContext) -> Response[Any]:
    """Complete each prompt; with ``stream`` a ``text/event-stream`` of chunks ending in ``[DONE]``."""
    items = prompts(data.prompt)
    check_top_logprobs(data.logprobs or 0)
    options = runtime_options(
        options=data.options,
        num_ctx=data.num_ctx,
        temperature=data.temperature,
        top_p=data.top_p,
        max_tokens=data.max_tokens,
        seed=data.seed,
        stop=data.stop,
        frequency_penalty=data.frequency_penalty,
        presence_penalty=data.presence_penalty,
    )

    def start(prompt: Prompt) -> Generation:
        return start_completion(ctx, data.model, prompt, options=options, keep_alive=data.keep_alive,
                                suffix=data.suffix, top_logprobs=data.logprobs)

    completion_id = f"cmpl-{random.randrange(999)}"
    created = int(time.time())

    def completion(choices: list[CompletionChoice], usage: Usage | None = None) -> Completion:
        value = Completion(id=completion_id, created=created, model=data.model, choices=choices)
        if usage is not None:
            value.usage = usage
        return value

    if not data.stream:
        choices: list[CompletionChoice] = []
        usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
        for index, prompt in enumerate(items):
            generation = start(prompt)
            outcome = await collect(generation.events)
            prefix = await _echo(ctx, generation, prompt) if data.echo else ""
            logprobs = legacy_logprobs(outcome.logprobs, len(prefix)) if data.logprobs is not None else None
            choices.append(CompletionChoice(text=prefix + outcome.content, index=index,
                                            finish_reason=outcome.final.done_reason, logprobs=logprobs))
            usage.prompt_tokens += outcome.final.prompt_eval_count
            usage.completion_tokens += outcome.final.eval_count
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        return json_response(completion(choices, usage))

    first = start(items[0])
    first_echo = await _echo(ctx, first, items[0]) if data.echo else ""
    first_events = await open_events(first.events)
    include_usage = data.stream_options is not None and data.stream_options.include_usage

    async def frames() -> AsyncGenerator[bytes, None]:
        usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
        for index, prompt in enumerate(items):
            if index == 0:
                events, echo = first_events, first_echo
            else:
                generation = start(prompt)
                echo = await _echo(ctx, generation, prompt) if data.echo else ""
                events = generation.events
            offset = len(echo)
            async with aclosing(events):
                if echo:
                    yield data_frame(completion([CompletionChoice(text=echo, index=index)]))
                async for event in events:
                    if isinstance(event, Final):
                        usage.prompt_tokens += event.prompt_eval_count
                        usage.completion_tokens += event.eval_count
                        choice = CompletionChoice(text="", index=index, finish_reason=event.done_reason)
                    elif event.content or event.logprobs:
                        choice = CompletionChoice(text=event.content, index=index)
                        if data.logprobs is not None:
                            choice.logprobs = legacy_logprobs(event.logprobs, offset)
                        offset += len(event.content)
                    else:
                        continue
                    yield data_frame(completion([choice]))
        if include_usage:
            usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
            yield data_frame(completion([], usage))
        yield DONE

    return event_stream(frames(), lambda exc: data_frame(error_body(exc.status, exc.message)))


ROUTES = [completions]
