"""Running converted ``/v1`` requests on the shared inference service, as the native routes do.

A chat (``/v1/chat/completions``, ``/v1/responses``) follows ``/api/chat``: the model must exist
and have ``completion`` (and ``tools`` when tools are offered), thinking defaults on for thinking
models, Modelfile MESSAGEs and SYSTEM join the conversation. A completion follows ``/api/generate``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from ollama_api.native.chat import conversation
from ollama_api.native.checks import check_think, require
from ollama_api.openai.tool_choice import ToolPlan
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.generation import Chunk, Final, Logprob
from ollama_core.inference import Target, parse_keep_alive

Events = AsyncGenerator[Chunk | Final, None]


@dataclass
class Generation:
    """A started generation: the model, its merged options, and the event stream."""

    target: Target
    options: dict[str, Any]
    events: Events


@dataclass
class Outcome:
    """A whole generation, collected."""

    content: str
    thinking: str
    tool_calls: list[dict[str, Any]]
    final: Final
    logprobs: list[Logprob]

    @property
    def finish_reason(self) -> str:
        """``tool_calls`` when the model called tools, else Ollama's ``done_reason``."""
        return "tool_calls" if self.tool_calls else self.final.done_reason


@dataclass
class ChatJob:
    """A chat request in Ollama's terms."""

    model: str
    messages: list[dict[str, Any]]
    tools: ToolPlan
    options: dict[str, Any]
    think: bool | str | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: str | float | None = None
    truncate: bool = True
    logprobs: bool = False
    top_logprobs: int = 0


def _resolve(ctx: ServerContext, model: str) -> Target:
    if not model:
        raise RequestError(400, "model is required")
    return ctx.inference.resolve(model, f"model '{model}' not found")


async def start_chat(ctx: ServerContext, job: ChatJob) -> Generation:
    """Check, render and start a chat; errors before generation raise here."""
    inference = ctx.inference
    target = _resolve(ctx, job.model)
    keep_alive = parse_keep_alive(job.keep_alive)
    require(target, "completion", f'"{job.model}" does not support chat')
    tools = job.tools.tools
    if tools:
        require(target, "tools", f"{target.model.name.full()} does not support tools")
    think = check_think(target, job.think)
    options = inference.options(target, job.options)
    messages, rendered = await inference.render_chat(target, conversation(target, job.messages), tools=tools,
                                                     think=job.think if think else False, options=options,
                                                     truncate=job.truncate)
    media = await inference.decode_media(target, messages)
    grammar = inference.tool_grammar(target, job.tools.forced) if job.tools.forced else None
    events = inference.generate(
        target, rendered.text, add_bos=rendered.add_bos, options=options, keep_alive=keep_alive,
        parser=inference.parser(target, tools, think, rendered.text),
        format=None if grammar else job.tools.format or job.format, grammar=grammar,
        think=think,
        truncate=job.truncate,
        media=media,
        logprobs=job.logprobs,
        top_logprobs=job.top_logprobs,
    )
    return Generation(target, options, events)


def start_completion(
    ctx: ServerContext,
    model: str,
    prompt: str | list[int],
    *,
    options: Mapping[str, Any],
    keep_alive: str | float | None,
    suffix: str | None = None,
    top_logprobs: int | None = None,
) -> Generation:
    """Start a completion of ``prompt``: text goes through the model's template as ``/api/generate``
    does without ``raw``; a token list is fed to the model as it is. ``top_logprobs`` (not None)
    asks for log probabilities with that many alternatives."""
    inference = ctx.inference
    target = _resolve(ctx, model)
    ttl = parse_keep_alive(keep_alive)
    require(target, "completion", f'"{model}" does not support generate')
    if suffix:
        require(target, "insert", f"{target.model.name.full()} does not support insert")
    think = check_think(target, None)
    merged = inference.options(target, options)
    logprobs, top = top_logprobs is not None, top_logprobs or 0
    if isinstance(prompt, list):
        events = inference.generate(target, prompt, add_bos=False, options=merged, keep_alive=ttl, parser=None,
                                    logprobs=logprobs, top_logprobs=top)
        return Generation(target, merged, events)
    messages: list[dict[str, Any]] = []
    if target.model.system:
        messages.append({"role": "system", "content": target.model.system})
    messages += [dict(m) for m in target.model.messages]
    messages.append({"role": "user", "content": prompt})
    rendered = inference.render(target, messages, tools=None, think=None if think else False, suffix=suffix)
    events = inference.generate(target, rendered.text, add_bos=rendered.add_bos, options=merged, keep_alive=ttl,
                                parser=inference.parser(target, None, think, rendered.text),
                                logprobs=logprobs, top_logprobs=top)
    return Generation(target, merged, events)


async def collect(events: Events) -> Outcome:
    """Run a generation to its end and join its pieces."""
    content: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    logprobs: list[Logprob] = []
    final: Final | None = None
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Final):
                final = event
            else:
                content.append(event.content)
                thinking.append(event.thinking)
                calls.extend(event.tool_calls)
                logprobs.extend(event.logprobs)
    if final is None:
        raise RequestError(500, "no response from the model")
    return Outcome("".join(content), "".join(thinking), calls, final, logprobs)
