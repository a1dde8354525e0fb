"""``/v1/completions``, ``/v1/embeddings``, ``/v1/models`` and ``/v1/responses`` against a real server."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import openai
import pytest

from openai_fixtures import V1, WEATHER_TOOL, v1  # noqa: F401 - the session fixture

pytestmark = pytest.mark.slow


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_completions(v1: V1) -> None:
    reply = v1.client.completions.create(model=v1.model, prompt="Once upon a time", max_tokens=6, seed=3)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].text and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 6
    echoed = v1.client.completions.create(model=v1.model, prompt="Once upon a time", max_tokens=6, seed=3, echo=True)
    assert echoed.choices[0].text == "Once upon a time" + reply.choices[0].text


def test_completions_prompt_arrays(v1: V1) -> None:
    reply = v1.client.completions.create(model=v1.model, prompt=["The sky is", "Water is"], max_tokens=4)
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.finish_reason in ("stop", "length") for c in reply.choices)
    tokens = v1.client.completions.create(model=v1.model, prompt=[[504, 3258], [7593]], max_tokens=3)
    assert [c.index for c in tokens.choices] == [0, 1]
    with pytest.raises(openai.BadRequestError):
        v1.client.completions.create(model=v1.model, prompt=[1.5], max_tokens=3)  # type: ignore[list-item]


def test_completions_stream(v1: V1) -> None:
    chunks = list(v1.client.completions.create(model=v1.model, prompt="Hello", max_tokens=5, stream=True,
                                               stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (
        ["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_completions_logprobs(v1: V1) -> None:
    reply = v1.client.completions.create(model=v1.model, prompt="Once upon a time", max_tokens=6, temperature=0,
                                         logprobs=2, echo=True)
    choice = reply.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.text_offset
    assert choice.text == "Once upon a time" + "".join(logprobs.tokens)
    assert [choice.text[o:o + len(t)] for o, t in zip(logprobs.text_offset, logprobs.tokens)] == logprobs.tokens
    assert logprobs.top_logprobs is not None
    for token, value, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) <= 2 and max(top.values()) == value == top[token]
    chunks = list(v1.client.completions.create(model=v1.model, prompt="Once upon a time", max_tokens=6,
                                               temperature=0, logprobs=0, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens or []]
    assert streamed == logprobs.tokens
    with pytest.raises(openai.BadRequestError, match="top_logprobs must be between 0 and 20"):
        v1.client.completions.create(model=v1.model, prompt="Hi", max_tokens=2, logprobs=21)


def test_embeddings_float_and_base64(v1: V1) -> None:
    floats = v1.client.embeddings.create(model=v1.model, input=["hello world", "goodbye"], encoding_format="float")
    assert floats.object == "list" and [d.index for d in floats.data] == [0, 1]
    assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens
    raw = httpx.post(v1.url + "/embeddings", json={"model": v1.model, "input": ["hello world", "goodbye"],
                                                   "encoding_format": "base64"}, timeout=60).json()
    for item, expected in zip(raw["data"], floats.data, strict=True):
        data = base64.b64decode(item["embedding"])
        decoded = struct.unpack(f"<{len(data) // 4}f", data)
        assert len(decoded) == len(expected.embedding)
        assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(decoded, expected.embedding))
        assert math.isclose(norm(expected.embedding), 1.0, rel_tol=1e-5)
    client_decoded = v1.client.embeddings.create(model=v1.model, input="hello world")  # asks for base64, decodes
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
               for a, b in zip(client_decoded.data[0].embedding, floats.data[0].embedding))


def test_embeddings_dimensions_and_tokens(v1: V1) -> None:
    cut = v1.client.embeddings.create(model=v1.model, input="hello world", dimensions=16)
    assert len(cut.data[0].embedding) == 16
    assert math.isclose(norm(cut.data[0].embedding), 1.0, rel_tol=1e-5)
    tokens = v1.client.embeddings.create(model=v1.model, input=[[19556, 905], [4238]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "x", "encoding_format": "hex"}, "Invalid value for 'encoding_format' = hex"),
        ({"input": []}, "invalid input"),
        ({"input": None}, "invalid input"),
        ({"input": [1.5]}, "invalid input type"),
        ({"input": "x", "dimensions": -1}, "dimensions must be a positive number"),
    ],
)
def test_embeddings_bad_requests(v1: V1, body: dict[str, object], message: str) -> None:
    response = httpx.post(v1.url + "/embeddings", json={"model": v1.model, **body}, timeout=30)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_models_list_and_retrieve(v1: V1) -> None:
    listed = {m.id: m for m in v1.client.models.list()}
    entry = listed["smollm2:latest"]
    assert entry.object == "model" and entry.owned_by == "library" and entry.created > 0
    assert "smollm2-tools:latest" in listed
    model = v1.client.models.retrieve(v1.model)
    assert model.id == v1.model and model.owned_by == "library" and model.created == entry.created
    extra = model.model_extra or {}
    assert extra["context_length"] == 8192 and "completion" in extra["capabilities"]
    tools = v1.client.models.retrieve("library/smollm2-tools:latest").model_extra or {}
    assert "tools" in tools["capabilities"]


def test_missing_model_is_404_everywhere(v1: V1) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        v1.client.models.retrieve("no-such-model")
    assert raised.value.body == {"message": "model 'no-such-model' not found", "type": "not_found_error",
                                 "param": None, "code": None}
    for path, body in [("/completions", {"prompt": "x"}), ("/embeddings", {"input": "x"}),
                       ("/responses", {"input": "x"})]:
        response = httpx.post(v1.url + path, json={"model": "no-such-model", **body}, timeout=30)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"


def test_responses(v1: V1) -> None:
    reply = v1.client.responses.create(model=v1.model, input="Say hello.", instructions="Be brief.",
                                       max_output_tokens=6)
    assert reply.object == "response" and reply.status == "completed" and reply.id.startswith("resp_")
    assert reply.output_text and reply.instructions == "Be brief."
    assert reply.usage is not None and 0 < reply.usage.output_tokens <= 6


def test_responses_stream(v1: V1) -> None:
    events = list(v1.client.responses.create(
        model=v1.model, max_output_tokens=6, stream=True,
        input=[{"role": "developer", "content": "Be brief."},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}],
    ))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert deltas and done.text == deltas
    assert events[-1].response.output_text == deltas  # type: ignore[union-attr]


def test_responses_function_call(v1: V1) -> None:
    tool = {"type": "function", **WEATHER_TOOL["function"]}  # type: ignore[dict-item]
    reply = v1.client.responses.create(model=v1.tools_model, input="Weather in Paris?", tools=[tool],
                                       tool_choice="required", max_output_tokens=32)
    calls = [item for item in reply.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    arguments = calls[0].arguments
    assert json.loads(arguments)["city"] in ("Paris", "Tokyo")
    follow_up = v1.client.responses.create(
        model=v1.tools_model, tools=[tool], max_output_tokens=6,
        input=[{"role": "user", "content": "Weather in Paris?"},
               {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": arguments},
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny"}],
    )
    assert follow_up.status == "completed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": [{"type": "bogus"}]}, "input[0]"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input_file"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tool type 'web_search' is not supported"),
        ({"input": "x", "reasoning": {"effort": "huge"}}, "invalid reasoning value"),
    ],
)
def test_responses_bad_requests(v1: V1, body: dict[str, object], message: str) -> None:
    response = httpx.post(v1.url + "/responses", json={"model": v1.model, **body}, timeout=30)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
