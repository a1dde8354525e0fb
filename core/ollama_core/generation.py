"""What a generation yields, and how a runner's tokens become it.

:class:`Chunk` and :class:`Final` are what :meth:`ollama_core.inference.Inference.generate` streams
to the API surfaces; the helpers here parse the runner's text into chunks, run the unconstrained
first phase of a format that applies after the thinking (:class:`ThinkingFirst`) and turn the
runner's Done into the final metrics.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from ollama_core import metrics
from ollama_core.descriptors import Parser
from ollama_core.runner.protocol import Done, Generate, Logprob

if TYPE_CHECKING:
    from ollama_core.inference import Target


@dataclass
class Chunk:
    """Parsed output so far: new content, thinking, whole tool calls, and the log probabilities of
    the tokens generated since the last chunk when they were asked for."""

    content: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[Logprob] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.thinking or self.tool_calls or self.logprobs)


@dataclass
class Final:
    """The end of a generation, with Ollama's metrics (durations in ns)."""

    done_reason: str
    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    context: list[int] | None = None


class ThinkingFirst:
    """The unconstrained first phase of a generation whose format applies after the thinking.

    Feeds the raw output to the parser until the first answer content or tool call; that
    chunk's thinking is passed on and the rest held back. ``kept`` is then the raw output
    before the answer (the thinking with its markers), which the constrained second phase
    continues from; its slot's cached tokens make that continuation cheap.
    """

    def __init__(self, parser: Parser) -> None:
        self.parser = parser
        self.raw = ""
        self.kept: str | None = None
        self.tokens = 0
        self.started = time.perf_counter_ns()
        self.first_token = 0
        self.ended = 0

    def feed(self, text: str) -> Chunk:
        """Parse one piece; returns what may be streamed now."""
        now = time.perf_counter_ns()
        self.first_token = self.first_token or now
        self.tokens += 1
        before = self.raw
        self.raw += text
        chunk = parse_chunk(self.parser, text)
        if not (chunk.content.strip() or chunk.tool_calls):
            return chunk
        self.ended = now
        at = self.raw.rfind(chunk.content) if chunk.content else -1
        self.kept = self.raw[:at] if at >= 0 else before
        return Chunk(thinking=chunk.thinking)

    def resume(self, job: Generate, prompt: str) -> Generate:
        """The constrained second phase: the prompt plus the thinking, the rest of the token budget."""
        num_predict = job.num_predict
        if num_predict > 0:
            num_predict = max(1, num_predict - self.tokens)
        return msgspec.structs.replace(job, prompt=prompt, num_predict=num_predict)

    def add_metrics(self, done: Done) -> None:
        """Count the first phase's tokens and time into the final metrics."""
        m = done.metrics
        m.eval_count += self.tokens
        m.eval_duration += self.ended - self.first_token
        m.prompt_eval_duration += self.first_token - self.started


async def finish(
    done: Done, parser: Parser | None, started: int, load_duration: int, target: Target
) -> AsyncIterator[Chunk | Final]:
    if parser is not None:
        tail = collect(parser.finish())
        if tail:
            yield tail
    final = final_of(done, started, load_duration)
    metrics.record_generation(target.display, final.prompt_eval_count, final.eval_count)
    yield final


def collect(events: Sequence[Any]) -> Chunk:
    chunk = Chunk()
    for event in events:
        if event.kind == "content":
            chunk.content += event.text
        elif event.kind == "thinking":
            chunk.thinking += event.text
        elif event.kind == "tool_call" and event.tool_call is not None:
            chunk.tool_calls.append(dict(event.tool_call))
    return chunk


def parse_chunk(parser: Parser, text: str) -> Chunk:
    return collect(parser.feed(text))


def final_of(done: Done, started: int, load_duration: int) -> Final:
    m = done.metrics
    return Final(
        done_reason=done.done_reason,
        total_duration=time.monotonic_ns() - started,
        load_duration=load_duration,
        prompt_eval_count=m.prompt_eval_count,
        prompt_eval_duration=m.prompt_eval_duration,
        eval_count=m.eval_count,
        eval_duration=m.eval_duration,
        context=done.context,
    )
