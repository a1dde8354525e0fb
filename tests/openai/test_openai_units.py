"""The ``/v1`` request mapping and stream writers without a server: thinking, calls and failures."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import msgspec
import pytest

from ollama_api.openai.chat import chat_job
from ollama_api.openai.mapping import runtime_options, think_from_effort
from ollama_api.openai.responses import EventWriter, ResponseBuilder, convert_input
from ollama_api.openai.schemas import ChatCompletionRequest, ResponsesRequest
from ollama_api.openai.sse import data_frame, event_stream, open_events
from ollama_api.openai.tool_choice import plan_tools
from ollama_core.errors import RequestError
from ollama_core.generation import Chunk, Final

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
OTHER = {"type": "function", "function": {"name": "g"}}


def final(reason: str = "stop") -> Final:
    return Final(done_reason=reason, total_duration=1, load_duration=0, prompt_eval_count=3,
                 prompt_eval_duration=1, eval_count=2, eval_duration=1)


def chat(body: dict[str, Any]) -> ChatCompletionRequest:
    return msgspec.convert({"model": "m", **body}, ChatCompletionRequest)


def test_chat_request_needs_messages() -> None:
    with pytest.raises(RequestError, match="too short"):
        chat_job(chat({"messages": []}))


def events(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    parsed = []
    for frame in frames:
        name, data = frame.decode().rstrip("\n").split("\n")
        parsed.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return parsed


def test_options_defaults_and_precedence() -> None:
    assert runtime_options() == {"temperature": 1.0, "top_p": 1.0}
    merged = runtime_options(options={"temperature": 0.2, "num_ctx": 512, "top_k": 5}, num_ctx=2048, top_p=0.5,
                             max_tokens=7, stop="END", seed=1)
    assert merged == {"temperature": 0.2, "top_p": 0.5, "num_ctx": 2048, "top_k": 5, "num_predict": 7,
                      "stop": ["END"], "seed": 1}


@pytest.mark.parametrize(("effort", "think"), [(None, None), ("none", False), ("minimal", "low"),
                                               ("medium", "medium"), ("xhigh", "max"), ("ultra", "max")])
def test_reasoning_effort_levels(effort: str | None, think: bool | str | None) -> None:
    assert think_from_effort(effort) == think


def test_tool_choice_plans() -> None:
    assert plan_tools([TOOL], None).format is None
    assert plan_tools([TOOL], "none").tools is None
    required = plan_tools([TOOL, OTHER], "required").format
    assert required is not None and [s["properties"]["name"]["const"] for s in required["anyOf"]] == ["f", "g"]
    named = plan_tools([TOOL, OTHER], None, "g")
    assert named.tools is not None and len(named.tools) == 2
    assert named.format == {"type": "object", "properties": {"name": {"const": "g"}, "arguments": {"type": "object"}},
                            "required": ["name", "arguments"]}
    with pytest.raises(RequestError):
        plan_tools(None, "required")


def test_chat_messages_become_native_messages() -> None:
    job = chat_job(chat({
        "messages": [
            {"role": "System", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                                         {"type": "image_url", "image_url": "data:image/png;base64,AAAA"}]},
            {"role": "assistant", "content": None, "reasoning": "hmm",
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        "max_completion_tokens": 9, "reasoning": {"effort": "low"}, "response_format": {"type": "json_object"},
    }))
    system, user, assistant, tool = job.messages
    assert system == {"role": "system", "content": "Be brief."}
    assert user == {"role": "user", "content": "a\n\nb", "images": [b"\0\0\0"]}
    assert assistant["thinking"] == "hmm"
    assert assistant["tool_calls"] == [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}]
    assert tool == {"role": "tool", "content": "42", "tool_name": "f", "tool_call_id": "call_1"}
    assert job.options["num_predict"] == 9 and job.think == "low" and job.format == "json"


def test_responses_input_becomes_native_messages() -> None:
    data = msgspec.convert({"model": "m", "instructions": "sys", "input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
    ]}, ResponsesRequest)
    assert convert_input(data) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "thinking": "think",
         "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "done", "tool_call_id": "c1", "tool_name": "f"},
    ]


def test_response_events_for_thinking_text_and_calls() -> None:
    writer = EventWriter(ResponseBuilder(msgspec.convert({"model": "m", "input": "x"}, ResponsesRequest)))
    frames = writer.start()
    frames += writer.chunk(Chunk(thinking="let me see"))
    frames += writer.chunk(Chunk(content="Hi"))
    frames += writer.chunk(Chunk(tool_calls=[{"function": {"index": 0, "name": "f", "arguments": {"a": 1}}}]))
    frames += writer.chunk(Chunk(content="ignored after a call"))
    frames += writer.finish(final())
    parsed = events(frames)
    assert [name for name, _ in parsed] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in parsed)
    assert [data["sequence_number"] for _, data in parsed] == list(range(len(parsed)))
    completed = parsed[-1][1]["response"]
    assert [item["type"] for item in completed["output"]] == ["reasoning", "message", "function_call"]
    assert completed["output"][2]["arguments"] == '{"a":1}'
    assert completed["usage"]["input_tokens"] == 3 and completed["usage"]["output_tokens"] == 2
    failed = events([writer.failed(RequestError(500, "boom"))])[0][1]
    assert failed["response"]["status"] == "failed" and failed["response"]["error"]["message"] == "boom"


def test_errors_before_output_raise_and_after_become_a_frame() -> None:
    async def broken() -> AsyncGenerator[Chunk | Final, None]:
        raise RequestError(404, "model 'x' not found")
        yield Chunk()

    async def late() -> AsyncGenerator[Chunk | Final, None]:
        yield Chunk(content="a")
        raise RequestError(500, "runner crashed")

    async def run() -> list[bytes]:
        with pytest.raises(RequestError):
            await open_events(broken())
        stream = await open_events(late())

        async def frames() -> AsyncGenerator[bytes, None]:
            async for event in stream:
                assert isinstance(event, Chunk)
                yield data_frame({"content": event.content})

        response = event_stream(frames(), lambda exc: data_frame({"error": exc.message}))
        return [frame async for frame in response.iterator]  # type: ignore[union-attr]

    assert anyio.run(run) == [b'data: {"content":"a"}\n\n', b'data: {"error":"runner crashed"}\n\n']
