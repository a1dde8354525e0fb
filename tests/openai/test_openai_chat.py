"""``/v1/chat/completions`` against a real server, through the ``openai`` client."""

from __future__ import annotations

import base64
import io
import json

import httpx
import openai
import pytest

from openai_fixtures import TIME_TOOL, V1, WEATHER_TOOL, v1  # noqa: F401 - the session fixture

pytestmark = pytest.mark.slow

USER = [{"role": "user", "content": "Say hello to me."}]
TOOL_TOKENS = 32  # a constrained call ({"name": "get_weather", "arguments": {"city": "Paris"}}) is ~20 tokens


def test_chat_non_stream(v1: V1) -> None:
    reply = v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=8)
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == v1.model
    assert reply.system_fingerprint == "fp_ollama"
    choice = reply.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage is not None and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_logprobs(v1: V1) -> None:
    reply = v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=8, temperature=0,
                                              logprobs=True, top_logprobs=3)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(entry.token for entry in logprobs.content) == reply.choices[0].message.content
    for entry in logprobs.content:
        assert bytes(entry.bytes or []).decode() == entry.token and entry.logprob <= 0
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
    stream = v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=8, temperature=0,
                                               logprobs=True, stream=True)
    streamed = [entry for chunk in stream if chunk.choices and chunk.choices[0].logprobs
                for entry in chunk.choices[0].logprobs.content or []]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in logprobs.content]
    plain = v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=8, temperature=0)
    assert plain.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError, match="top_logprobs must be between 0 and 20"):
        v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=2, logprobs=True,
                                          top_logprobs=21)


def test_chat_stream_with_usage(v1: V1) -> None:
    stream = v1.client.chat.completions.create(
        model=v1.model, messages=USER, max_tokens=8, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert content and content[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert 0 < last.usage.completion_tokens <= 8
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_stream_is_sse_ending_with_done(v1: V1) -> None:
    body = {"model": v1.model, "messages": USER, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", v1.url + "/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    finish = json.loads(events[-2][len("data: "):])
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] in ("stop", "length")
    assert "usage" not in finish


def test_max_tokens_seed_and_stop(v1: V1) -> None:
    ask = [{"role": "user", "content": "Write a long story about a dragon."}]
    one = v1.client.chat.completions.create(model=v1.model, messages=ask, max_tokens=5, seed=7, temperature=1.5)
    two = v1.client.chat.completions.create(model=v1.model, messages=ask, max_completion_tokens=5, seed=7,
                                            temperature=1.5)
    assert one.choices[0].finish_reason == "length" and one.usage is not None and one.usage.completion_tokens == 5
    assert one.choices[0].message.content == two.choices[0].message.content
    text = one.choices[0].message.content or ""
    word = text.split()[1] if len(text.split()) > 1 else text.strip()
    stopped = v1.client.chat.completions.create(model=v1.model, messages=ask, max_tokens=5, seed=7,
                                                temperature=1.5, stop=[word])
    assert word not in (stopped.choices[0].message.content or "")
    assert stopped.choices[0].finish_reason == "stop"


def test_json_schema_response_format(v1: V1) -> None:
    schema = {
        "type": "object",
        "properties": {"sunny": {"type": "boolean"}, "city": {"type": "string", "enum": ["Paris", "Tokyo"]}},
        "required": ["sunny", "city"],
        "additionalProperties": False,
    }
    reply = v1.client.chat.completions.create(
        model=v1.model,
        messages=[{"role": "user", "content": "Is it sunny in Paris? Answer in JSON."}],
        max_tokens=48,
        temperature=0,
        seed=1,
        response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}},
    )
    value = json.loads(reply.choices[0].message.content or "")
    assert set(value) == {"sunny", "city"}
    assert isinstance(value["sunny"], bool) and value["city"] in ("Paris", "Tokyo")


def test_json_object_response_format(v1: V1) -> None:
    reply = v1.client.chat.completions.create(
        model=v1.model, messages=[{"role": "user", "content": "Give me a JSON object."}], max_tokens=8,
        response_format={"type": "json_object"},
    )
    assert (reply.choices[0].message.content or "").lstrip().startswith("{")


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_tool_choice_forces_a_call(v1: V1, choice: object) -> None:
    reply = v1.client.chat.completions.create(
        model=v1.tools_model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL, TIME_TOOL] if choice != "required" else [WEATHER_TOOL],
        tool_choice=choice,  # type: ignore[arg-type]
        max_tokens=TOOL_TOKENS,
    )
    choice_out = reply.choices[0]
    assert choice_out.finish_reason == "tool_calls"
    calls = choice_out.message.tool_calls or []
    assert len(calls) == 1
    call = calls[0]
    assert call.id.startswith("call_") and len(call.id) == len("call_") + 8
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Tokyo")


def test_tool_call_streams_whole_and_round_trips(v1: V1) -> None:
    stream = v1.client.chat.completions.create(
        model=v1.tools_model, messages=[{"role": "user", "content": "Weather in Tokyo?"}], tools=[WEATHER_TOOL],
        tool_choice="required", max_tokens=TOOL_TOKENS, stream=True,
    )
    chunks = list(stream)
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function is not None
    assert isinstance(json.loads(calls[0].function.arguments or ""), dict)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    follow_up = v1.client.chat.completions.create(
        model=v1.tools_model,
        messages=[
            {"role": "user", "content": "Weather in Tokyo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": calls[0].id, "type": "function",
                 "function": {"name": "get_weather", "arguments": calls[0].function.arguments}}]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 21 C"},
        ],
        tools=[WEATHER_TOOL], tool_choice="none", max_tokens=8,
    )
    assert follow_up.choices[0].message.tool_calls is None
    assert follow_up.choices[0].finish_reason in ("stop", "length")


def test_tools_on_a_model_without_tools(v1: V1) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        v1.client.chat.completions.create(model=v1.model, messages=USER, tools=[WEATHER_TOOL], max_tokens=4)
    assert "does not support tools" in raised.value.message
    reply = v1.client.chat.completions.create(model=v1.model, messages=USER, tools=[WEATHER_TOOL],
                                              tool_choice="none", max_tokens=4)
    assert reply.choices[0].message.tool_calls is None


def test_image_parts(v1: V1) -> None:
    """Image parts reach the model as images: a text-only model refuses them, an unreadable one is a 400."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    for data, message in ((out.getvalue(), f'"{v1.model}" does not support vision'),
                          (b"\x89PNG\r\n\x1a\n" + b"\0" * 16, "invalid image")):
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        parts = [{"type": "text", "text": "Describe this."}, {"type": "image_url", "image_url": {"url": url}}]
        with pytest.raises(openai.BadRequestError) as raised:
            v1.client.chat.completions.create(model=v1.model, messages=[{"role": "user", "content": parts}],
                                              max_tokens=4)
        assert message in raised.value.message
    remote = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as raised:
        v1.client.chat.completions.create(model=v1.model, messages=[{"role": "user", "content": remote}],
                                          max_tokens=4)
    assert "image URLs are not currently supported" in raised.value.message


def test_reasoning_effort(v1: V1) -> None:
    reply = v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=4, reasoning_effort="none")
    assert reply.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as raised:
        v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=4, reasoning_effort="high")
    assert "does not support thinking" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=4,
                                          extra_body={"reasoning_effort": "enormous"})
    assert "invalid reasoning value" in raised.value.message


def test_per_request_context_length(v1: V1) -> None:
    for extra in ({"num_ctx": 1024}, {"options": {"num_ctx": 1536}}):
        v1.client.chat.completions.create(model=v1.model, messages=USER, max_tokens=2, extra_body=extra)
        wanted = extra.get("num_ctx") or extra["options"]["num_ctx"]  # type: ignore[index]
        loaded = httpx.get(v1.server.url + "/api/ps", timeout=10).json()["models"]
        assert wanted in [m["context_length"] for m in loaded]


def test_unknown_model_is_openai_404(v1: V1) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        v1.client.chat.completions.create(model="no-such-model", messages=USER, max_tokens=4)
    assert raised.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        v1.client.chat.completions.create(model="no-such-model", messages=USER, max_tokens=4, stream=True)
    response = httpx.post(v1.url + "/chat/completions", json={"model": "no-such-model", "messages": USER}, timeout=30)
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "model 'no-such-model' not found", "type": "not_found_error",
                                         "param": None, "code": None}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "[] is too short - 'messages'"),
        ({"messages": "hello"}, "Expected `array`"),
        ({"messages": USER, "response_format": {"type": "xml"}}, "invalid response_format type"),
        ({"messages": USER, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "not among the tools"),
        ({"messages": USER, "tool_choice": "sometimes"}, "invalid tool_choice"),
        ({"messages": USER, "stop": [1, 2]}, "Expected `str`"),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]},
         "invalid tool call arguments"),
        ({"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]}, "Invalid value 'video'"),
        ({"messages": USER, "keep_alive": "soon"}, ""),
    ],
)
def test_bad_requests_are_openai_400(v1: V1, body: dict[str, object], message: str) -> None:
    response = httpx.post(v1.url + "/chat/completions", json={"model": v1.model, **body}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] is None and error["code"] is None
    assert message in error["message"]


def test_empty_body_is_400(v1: V1) -> None:
    response = httpx.post(v1.url + "/chat/completions", content=b"", timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "missing request body"
