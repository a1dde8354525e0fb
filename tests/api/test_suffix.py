"""Fill-in-the-middle: ``suffix`` on ``/api/generate`` and ``/v1/completions`` goes through the template."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import pytest
from openai import BadRequestError, OpenAI

from live_server import Server

FIM_TEMPLATE = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{- else }}{{ .Prompt }}{{- end }}"


@pytest.fixture(scope="module")
def fim(server: Server, smollm2: str) -> Iterator[str]:
    created = httpx.post(server.url + "/api/create", timeout=120,
                         json={"model": "smollm2-fim", "from": smollm2, "template": FIM_TEMPLATE, "stream": False})
    assert created.status_code == 200, created.text
    yield "smollm2-fim"
    httpx.post(server.url + "/api/generate", json={"model": "smollm2-fim", "keep_alive": 0}, timeout=60)


def test_generate_renders_prefix_and_suffix(server: Server, fim: str) -> None:
    assert "insert" in ollama.Client(host=server.url).show(fim).capabilities
    debug = httpx.post(server.url + "/api/generate", timeout=60, json={
        "model": fim, "prompt": "def add(a, b):", "suffix": "    return total", "_debug_render_only": True,
    }).json()
    assert debug["_debug_info"]["rendered_template"] == "<PRE> def add(a, b): <SUF>    return total <MID>"
    plain = httpx.post(server.url + "/api/generate", timeout=60,
                       json={"model": fim, "prompt": "def add(a, b):", "_debug_render_only": True}).json()
    assert plain["_debug_info"]["rendered_template"] == "def add(a, b):"
    reply = ollama.Client(host=server.url, timeout=120).generate(
        model=fim, prompt="def add(a, b):", suffix="    return total", options={"num_predict": 8, "temperature": 0})
    assert reply.done and reply.eval_count


def test_suffix_needs_the_insert_capability(server: Server, smollm2: str, fim: str) -> None:
    refused = httpx.post(server.url + "/api/generate", timeout=60,
                         json={"model": smollm2, "prompt": "x", "suffix": "y", "stream": False})
    assert refused.status_code == 400 and "does not support insert" in refused.json()["error"]
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    with pytest.raises(BadRequestError):
        client.completions.create(model=smollm2, prompt="x", suffix="y", max_tokens=4)
    done = client.completions.create(model=fim, prompt="def add(a, b):", suffix="    return total", max_tokens=8,
                                     temperature=0, seed=1)
    again = ollama.Client(host=server.url, timeout=120).generate(
        model=fim, prompt="def add(a, b):", suffix="    return total",
        options={"num_predict": 8, "temperature": 0, "seed": 1})
    assert done.choices[0].text == again.response, "both surfaces render the same fill-in-the-middle prompt"
