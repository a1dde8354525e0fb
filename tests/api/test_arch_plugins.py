"""Architecture plugins end to end: ``ollama create`` from a safetensors checkpoint, then inference.

The reference outputs were computed by transformers (see the fixtures' README).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from openai import OpenAI

from live_server import ROOT, Server

FIXTURES = ROOT.parent / "shared" / "fixtures"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="reference fixtures are not beside the checkout")


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def create_from_dir(server: Server, name: str, checkpoint: Path, tmp_path: Path, *, verify: bool = False) -> str:
    modelfile = tmp_path / f"Modelfile.{name}"
    modelfile.write_text(f"FROM {checkpoint}\n")
    flags = ["--verify"] if verify else []
    return server.cli("create", name, "-f", str(modelfile), *flags, timeout=300).stdout


def test_modernbert_checkpoint_converts_and_embeds_like_transformers(server: Server, tmp_path: Path) -> None:
    pytest.importorskip("ollama_arch_modernbert")
    out = create_from_dir(server, "mbert", FIXTURES / "modernbert-a", tmp_path, verify=True)
    assert "converting model" in out and "verifying conversion" in out and out.strip().endswith("success")
    cosines = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("probe ")]
    assert len(cosines) == 4 and min(cosines) >= 0.9999
    client = ollama.Client(host=server.url, timeout=120)
    info = client.show("mbert")
    assert info.capabilities == ["embedding"] and info.details.family == "modern-bert"
    reference = json.loads((FIXTURES / "modernbert-a" / "reference.json").read_text())
    texts = [t["text"] for t in reference["texts"]]
    result = client.embed(model="mbert", input=texts)
    assert result.prompt_eval_count == sum(t["n_tokens"] for t in reference["texts"])
    for got, want in zip(result.embeddings, reference["texts"]):
        assert cosine(got, want["embedding"]) >= 0.9999, want["text"]
    v1 = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    through_v1 = v1.embeddings.create(model="mbert", input=texts)
    for got, want in zip(through_v1.data, reference["texts"]):
        assert cosine(got.embedding, want["embedding"]) >= 0.9999, want["text"]
    r = httpx.post(server.url + "/api/generate", json={"model": "mbert", "prompt": "hi"})
    assert (r.status_code, r.json()) == (400, {"error": '"mbert" does not support generate'})


@pytest.fixture(scope="module")
def gemma4_tiny(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gemma4-a fixture converted on the server with ``--verify``; yields the CLI's output."""
    pytest.importorskip("ollama_arch_gemma4")
    yield create_from_dir(server, "gemma4-tiny", FIXTURES / "gemma4-a", tmp_path_factory.mktemp("gemma4"), verify=True)
    httpx.post(server.url + "/api/generate", json={"model": "gemma4-tiny", "keep_alive": 0}, timeout=60)


def test_gemma4_checkpoint_converts_and_continues_like_transformers(server: Server, gemma4_tiny: str) -> None:
    out = gemma4_tiny
    assert "verifying conversion" in out and out.strip().endswith("success")
    cosines = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("probe ")]
    assert len(cosines) == 4 and min(cosines) >= 0.9999, "last-position logits agree with the numpy reference"
    client = ollama.Client(host=server.url, timeout=120)
    info = client.show("gemma4-tiny")
    assert info.details.family == "gemma4" and "completion" in info.capabilities
    assert "thinking" in info.capabilities and "tools" in info.capabilities
    r = httpx.post(server.url + "/api/chat", json={"model": "gemma4-tiny", "think": False, "_debug_render_only": True,
                                                   "messages": [{"role": "user", "content": "Hi"}]})
    assert r.json()["_debug_info"]["rendered_template"].endswith("<|turn>user\nHi<turn|>\n<|turn>model\n")
    reply = client.chat(model="gemma4-tiny", messages=[{"role": "user", "content": "Hi"}],
                        options={"num_predict": 6, "temperature": 0})
    assert reply.done and reply.eval_count
    reference = json.loads((FIXTURES / "gemma4-a" / "reference.json").read_text())
    for case in reference["greedy"]:
        if case["min_margin"] < 0.05:
            continue
        reply = client.generate(model="gemma4-tiny", prompt=case["prompt_text"], raw=True,
                                options={"temperature": 0, "num_predict": len(case["continuation_ids"])})
        assert reply.response == case["continuation_text"], case["prompt_text"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Tokyo"]},
                "days": {"type": "integer"},
                "detail": {"type": "object", "properties": {"hourly": {"type": "boolean"}}, "required": ["hourly"]},
            },
            "required": ["city", "days", "detail"],
        },
    },
}


def test_gemma4_tool_calls_and_thinking_reach_the_clients_structured(server: Server, gemma4_tiny: str) -> None:
    """The random-weight model is steered: a forced tool call is constrained to Gemma 4's own call
    syntax (so the Gemma 4 parser must read it), and after a tool result with thinking on the
    prompt ends inside an open thought block, so whatever the model says is thinking (a high
    presence penalty keeps the random model from repeating newlines, which thinking trims)."""
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        reply = client.chat.completions.create(
            model="gemma4-tiny", messages=[{"role": "user", "content": "Weather in Paris for two days?"}],
            tools=[WEATHER], tool_choice=choice, max_tokens=300, temperature=0, reasoning_effort="none",
        )
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "tool_calls" and not message.content
        call = message.tool_calls[0]
        assert call.function.name == "get_weather"
        arguments = json.loads(call.function.arguments)
        assert arguments["city"] in ("Paris", "Tokyo") and isinstance(arguments["days"], int)
        assert isinstance(arguments["detail"]["hourly"], bool)
    native = ollama.Client(host=server.url, timeout=120)
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                           "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
    ]
    thought = native.chat(model="gemma4-tiny", messages=history, tools=[WEATHER], think=True,
                          options={"num_predict": 32, "temperature": 0, "presence_penalty": 100})
    assert thought.message.thinking and thought.message.thinking.strip()


@pytest.mark.parametrize("quantization", ["q8_0", "q4_K_M"])
def test_create_quantizes_an_f16_model(server: Server, tmp_path: Path, quantization: str) -> None:
    pytest.importorskip("ollama_arch_gemma4")
    client = ollama.Client(host=server.url, timeout=120)
    if "gemma4-f16:latest" not in {m.model for m in client.list().models}:
        create_from_dir(server, "gemma4-f16", FIXTURES / "gemma4-a", tmp_path)
    assert client.show("gemma4-f16").details.quantization_level == "F16"
    statuses = [p.status for p in client.create(model=f"gemma4-{quantization}", from_="gemma4-f16",
                                                  quantize=quantization, stream=True)]
    assert f"quantizing F16 model to {quantization.upper()}" in statuses and statuses[-1] == "success"
    shown = server.cli("show", f"gemma4-{quantization}").stdout
    assert f"quantization        {quantization.upper()}" in shown
    reply = client.generate(model=f"gemma4-{quantization}", prompt="The quick brown fox", raw=True,
                            options={"temperature": 0, "num_predict": 4})
    assert reply.done and reply.eval_count


def test_quantize_refuses_quantized_sources_and_unknown_types(server: Server, smollm2: str) -> None:
    r = httpx.post(server.url + "/api/create", json={"model": "requant", "from": smollm2, "quantize": "q8_0"})
    assert r.status_code == 400 and "only supported for F16, BF16 and F32" in r.json()["error"]
    r = httpx.post(server.url + "/api/create", json={"model": "requant", "from": smollm2, "quantize": "q9_9"})
    assert r.status_code == 400 and "unsupported quantization type" in r.json()["error"]
