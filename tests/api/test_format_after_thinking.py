"""``format`` with thinking on constrains only the answer: the thought stays free text (Ollama's rule).

SmolLM2 gets a Go template that opens a ``<think>`` block at the end of the prompt, and a few-shot
prompt whose greedy continuation is ``6+6=12</think>{"answer": 12}``. With a schema that asks for a
different key, the thought must still be the model's free text and the answer must follow the
schema: a grammar applied from the first token would have forced ``{`` and left no thought at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import ollama
import pytest

from live_server import Server

THINKING_TEMPLATE = (
    "{{- range .Messages }}{{ if eq .Role \"user\" }}{{ .Content }}"
    "{{ else }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}{{ end }}{{ end }}<think>"
)
FEW_SHOT = '<think>2+2=4</think>{"answer": 4}\n<think>3+3=6</think>{"answer": 6}\n<think>5+5=10</think>{"answer": 10}\n'
SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "integer"}},
    "required": ["total"],
    "additionalProperties": False,
}
GREEDY = {"temperature": 0, "seed": 1, "num_predict": 40}


@pytest.fixture(scope="module")
def thinker(server: Server, smollm2: str) -> Iterator[str]:
    created = httpx.post(server.url + "/api/create", timeout=120,
                         json={"model": "smollm2-thinks", "from": smollm2, "template": THINKING_TEMPLATE,
                               "stream": False})
    assert created.status_code == 200, created.text
    yield "smollm2-thinks"
    httpx.post(server.url + "/api/generate", json={"model": "smollm2-thinks", "keep_alive": 0}, timeout=60)


def test_model_thinks_freely_without_format(server: Server, thinker: str) -> None:
    client = ollama.Client(host=server.url, timeout=120)
    assert "thinking" in client.show(thinker).capabilities
    reply = client.chat(model=thinker, messages=[{"role": "user", "content": FEW_SHOT}], think=True, options=GREEDY)
    assert reply.message.thinking == "6+6=12"
    assert reply.message.content.startswith('{"answer": 12}')


@pytest.mark.parametrize("stream", [False, True])
def test_format_applies_after_the_thought(server: Server, thinker: str, stream: bool) -> None:
    client = ollama.Client(host=server.url, timeout=120)
    messages = [{"role": "user", "content": FEW_SHOT}]
    if stream:
        parts = list(client.chat(model=thinker, messages=messages, think=True, format=SCHEMA, options=GREEDY,
                                 stream=True))
        thinking = "".join(p.message.thinking or "" for p in parts)
        content = "".join(p.message.content for p in parts)
        final = parts[-1]
        assert all(not (p.message.thinking and p.message.content) for p in parts[:-1])
        first_content = next(i for i, p in enumerate(parts) if p.message.content)
        assert not any(p.message.thinking for p in parts[first_content:]), "the thought comes before the answer"
    else:
        final = client.chat(model=thinker, messages=messages, think=True, format=SCHEMA, options=GREEDY)
        thinking, content = final.message.thinking, final.message.content
    assert thinking == "6+6=12"
    answer = json.loads(content)
    assert list(answer) == ["total"] and isinstance(answer["total"], int)
    assert final.done and final.eval_count and final.eval_count > 6


def test_format_without_thinking_constrains_from_the_first_token(server: Server, thinker: str) -> None:
    client = ollama.Client(host=server.url, timeout=120)
    reply = client.chat(model=thinker, messages=[{"role": "user", "content": FEW_SHOT}], think=False,
                        format=SCHEMA, options=GREEDY)
    assert not reply.message.thinking
    assert list(json.loads(reply.message.content)) == ["total"]
