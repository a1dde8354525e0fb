"""Native inference endpoints against a real server and a real model, through the official client."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time

import httpx
import ollama
import pytest

from live_server import Server

FAST = {"num_predict": 12, "temperature": 0, "seed": 1}
TOOLS_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- if .Tools }}<|im_start|>system\nTools:{{ range .Tools }} {{ .Function.Name }}{{ end }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}"
    '{{- range .ToolCalls }}<tool_call>{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}'
    "</tool_call>{{ end }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def client(server: Server, smollm2: str) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


@pytest.fixture
def only_smollm2(server: Server, client: ollama.Client, smollm2: str) -> None:
    """Unload whatever other tests sharing this server left loaded."""
    for running in client.ps().models:
        if running.model != "smollm2:latest":
            httpx.post(server.url + "/api/generate", json={"model": running.model, "keep_alive": 0}, timeout=60)
    assert [m.model for m in client.ps().models if m.model != "smollm2:latest"] == []


def test_generate_stream_and_final_metrics(client: ollama.Client, smollm2: str) -> None:
    parts = list(client.generate(model=smollm2, prompt="Why is the sky blue?", options=FAST, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    final = parts[-1]
    assert final.done_reason == "length" and final.eval_count == 12
    assert final.prompt_eval_count and final.total_duration and final.eval_duration
    assert final.context and isinstance(final.context[0], int)
    text = "".join(p.response for p in parts)
    assert text.strip()
    again = client.generate(model=smollm2, prompt="Why is the sky blue?", options=FAST, stream=False)
    assert again.response == text, "greedy output is deterministic"


def test_generate_raw_and_debug_render(server: Server, client: ollama.Client, smollm2: str) -> None:
    raw = client.generate(model=smollm2, prompt="The capital of France is", raw=True, options=FAST)
    assert raw.response and raw.context is None
    r = httpx.post(server.url + "/api/generate",
                   json={"model": smollm2, "prompt": "hello", "system": "Be brief.", "_debug_render_only": True})
    rendered = r.json()["_debug_info"]["rendered_template"]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in rendered and rendered.endswith("<|im_start|>assistant\n")


def test_chat_stream_and_not(client: ollama.Client, smollm2: str) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    parts = list(client.chat(model=smollm2, messages=messages, options=FAST, stream=True))
    streamed = "".join(p.message.content for p in parts)
    whole = client.chat(model=smollm2, messages=messages, options=FAST)
    assert whole.message.role == "assistant" and whole.message.content == streamed and whole.done
    assert whole.eval_count == 12 and whole.done_reason == "length"


def test_chat_json_schema_format_gives_valid_json(client: ollama.Client, smollm2: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    reply = client.chat(
        model=smollm2,
        messages=[{"role": "user", "content": "Invent a person. Answer in JSON."}],
        format=schema,
        options={"num_predict": 60, "temperature": 0},
    )
    value = json.loads(reply.message.content)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_chat_with_tools(server: Server, client: ollama.Client, smollm2: str) -> None:
    r = httpx.post(server.url + "/api/chat", json={"model": smollm2, "messages": [{"role": "user", "content": "x"}],
                                                   "tools": [WEATHER_TOOL]})
    assert (r.status_code, r.json()) == (400, {"error": "registry.ollama.ai/library/smollm2:latest does not support tools"})
    client.create(model="smollm2-tools", from_=smollm2, template=TOOLS_TEMPLATE)
    assert "tools" in client.show("smollm2-tools").capabilities
    call_schema = {
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
        "required": ["name", "arguments"],
    }
    reply = client.chat(
        model="smollm2-tools",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        format=call_schema,
        options={"num_predict": 40, "temperature": 0},
    )
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "Sunny", "tool_name": "get_weather"},
    ]
    r = httpx.post(server.url + "/api/chat", json={"model": "smollm2-tools", "messages": history,
                                                   "tools": [WEATHER_TOOL], "_debug_render_only": True})
    rendered = r.json()["_debug_info"]["rendered_template"]
    assert '<tool_call>{"name": "get_weather", "arguments": {"city":"Paris"}}</tool_call>' in rendered


def test_embed_and_legacy_embeddings(client: ollama.Client, smollm2: str) -> None:
    result = client.embed(model=smollm2, input=["first text", "second text"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 576
    for vector in result.embeddings:
        assert abs(sum(v * v for v in vector) - 1.0) < 1e-4
    assert result.prompt_eval_count and result.prompt_eval_count > 2
    cut = client.embed(model=smollm2, input="first text", dimensions=8)
    assert len(cut.embeddings[0]) == 8 and abs(sum(v * v for v in cut.embeddings[0]) - 1) < 1e-4
    legacy = client.embeddings(model=smollm2, prompt="first text")
    norm = sum(v * v for v in legacy.embedding) ** 0.5
    assert norm > 1.01 or norm < 0.99, "the legacy endpoint does not normalise"
    assert all(abs(a - b / norm) < 1e-4 for a, b in zip(result.embeddings[0], legacy.embedding))
    assert client.embed(model=smollm2, input=[]).embeddings == []


def test_load_unload_and_ps(server: Server, client: ollama.Client, smollm2: str, only_smollm2: None) -> None:
    loaded = httpx.post(server.url + "/api/generate", json={"model": smollm2}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load" and loaded["response"] == ""
    running = client.ps().models
    assert [m.model for m in running] == ["smollm2:latest"] and running[0].context_length == 4096
    assert len(running[0].digest) == 64 and running[0].size > 90_000_000
    table = server.cli("ps").stdout.splitlines()
    assert table[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert "100% CPU" in table[1] and "4096" in table[1]
    unloaded = httpx.post(server.url + "/api/chat", json={"model": smollm2, "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload" and unloaded["message"] == {"role": "assistant", "content": ""}
    assert client.ps().models == []
    httpx.post(server.url + "/api/generate", json={"model": smollm2, "keep_alive": -1})
    assert "Forever" in server.cli("ps").stdout
    server.cli("stop", smollm2)
    assert client.ps().models == []


def test_cli_run_one_shot_and_interactive(server: Server, smollm2: str) -> None:
    out = server.cli("run", smollm2, "Why is the sky blue?", "--verbose")
    assert out.stdout.strip() and "eval rate:" in out.stderr
    piped = server.cli("run", smollm2, input="Say hi.")
    assert piped.stdout.strip()
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "ollama_core.cli", "run", smollm2], env=server.env,
                               stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(secondary)
    os.write(primary, b'/set parameter num_predict 5\nHello\n"""Two\nlines"""\n/bye\n')
    out, err = process.communicate(timeout=120)
    os.close(primary)
    assert process.returncode == 0, err
    assert "Set parameter 'num_predict' to '5'" in out and out.count(">>> ") >= 3


def test_request_errors(server: Server, smollm2: str) -> None:
    def post(path: str, body: dict) -> httpx.Response:
        return httpx.post(server.url + path, json=body)

    assert post("/api/generate", {"model": "nope", "prompt": "x"}).json() == {"error": "model 'nope' not found"}
    assert post("/api/chat", {"messages": []}).json() == {"error": "model is required"}
    r = post("/api/embed", {"model": "nope", "input": "x"})
    assert (r.status_code, r.json()) == (404, {"error": 'model "nope" not found, try pulling it first'})
    bad_options = [{"num_ctx": 0}, {"num_predict": -3}, {"top_k": "many"}, {"temperature": "hot"}, {"num_batch": 0}]
    for options in bad_options:
        r = post("/api/generate", {"model": smollm2, "prompt": "x", "options": options})
        assert r.status_code == 400, (options, r.text)
        assert next(iter(options)) in r.json()["error"]
    r = post("/api/generate", {"model": smollm2, "prompt": "x", "think": True})
    assert (r.status_code, r.json()) == (400, {"error": f'"{smollm2}" does not support thinking'})
    r = post("/api/generate", {"model": smollm2, "prompt": "x", "raw": True, "system": "s"})
    assert r.json() == {"error": "raw mode does not support template, system, or context"}
    r = post("/api/generate", {"model": smollm2, "prompt": "x", "format": "yaml"})
    assert r.status_code == 400 and r.json()["error"].startswith("invalid format")
    r = post("/api/generate", {"model": smollm2, "prompt": "x", "keep_alive": "forever"})
    assert r.status_code == 400
    r = post("/api/embed", {"model": smollm2, "input": ["ok", 3]})
    assert (r.status_code, r.json()) == (400, {"error": "invalid input type"})
    assert server.alive()


def test_four_concurrent_streams_complete(client: ollama.Client, smollm2: str) -> None:
    results: list[str] = []

    def one(i: int) -> None:
        reply = client.generate(model=smollm2, prompt=f"Count to {i}", options=FAST)
        results.append(reply.response)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 4 and all(results)


def test_killed_runner_gives_error_line_and_next_request_reloads(server: Server, client: ollama.Client,
                                                                  smollm2: str, only_smollm2: None) -> None:
    client.generate(model=smollm2, prompt="warm up", options=FAST)
    runner_pid = _runner_pid(server)
    lines: list[dict] = []
    with httpx.stream("POST", server.url + "/api/generate", timeout=60,
                      json={"model": smollm2, "prompt": "Tell a long story.", "options": {"num_predict": 2000}}) as r:
        for raw in r.iter_lines():
            lines.append(json.loads(raw))
            if len(lines) == 3:
                os.kill(runner_pid, signal.SIGKILL)
    assert r.status_code == 200
    assert "error" in lines[-1] and not lines[-1].get("done")
    assert server.alive()
    deadline = time.monotonic() + 10
    while client.ps().models and time.monotonic() < deadline:
        time.sleep(0.2)
    reply = client.generate(model=smollm2, prompt="Hello again", options=FAST)
    assert reply.done and reply.response
    assert _runner_pid(server) != runner_pid


def _runner_pid(server: Server) -> int:
    children = open(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read().split()
    for pid in children:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        if b"ollama_core.runner" in cmdline:
            return int(pid)
    raise AssertionError("no runner process")


def test_logprobs_on_generate_and_chat(client: ollama.Client, smollm2: str) -> None:
    parts = list(client.generate(model=smollm2, prompt="Why is the sky blue?", options=FAST, stream=True,
                                 logprobs=True, top_logprobs=2))
    entries = [entry for part in parts for entry in part.logprobs or []]
    assert len(entries) == parts[-1].eval_count == 12
    assert "".join(e.token for e in entries) == "".join(p.response for p in parts)
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].token == entry.token  # greedy
    whole = client.generate(model=smollm2, prompt="Why is the sky blue?", options=FAST, logprobs=True)
    assert [(e.token, e.logprob) for e in whole.logprobs] == [(e.token, e.logprob) for e in entries]
    assert all(not e.top_logprobs for e in whole.logprobs)
    plain = client.generate(model=smollm2, prompt="Why is the sky blue?", options=FAST, top_logprobs=2)
    assert plain.logprobs is None and plain.response == whole.response

    reply = client.chat(model=smollm2, messages=[{"role": "user", "content": "Hi!"}], options=FAST, logprobs=True,
                        top_logprobs=1)
    assert "".join(e.token for e in reply.logprobs) == reply.message.content
    # The end-of-generation token has no text and gets no entry.
    assert len(reply.logprobs) == reply.eval_count - (reply.done_reason == "stop")

    too_many = httpx.post(client._client.base_url.join("/api/chat"), timeout=60, json={
        "model": smollm2, "messages": [{"role": "user", "content": "Hi!"}], "logprobs": True, "top_logprobs": 21})
    assert too_many.status_code == 400 and too_many.json() == {"error": "top_logprobs must be between 0 and 20"}


def test_a_long_chat_drops_its_oldest_messages(server: Server, client: ollama.Client, smollm2: str) -> None:
    filler = "word " * 60
    messages = [{"role": "system", "content": "You are terse."}]
    for i in range(8):
        messages += [{"role": "user", "content": f"Question {i}: {filler}"}, {"role": "assistant", "content": f"A{i}."}]
    messages.append({"role": "user", "content": "Last question?"})
    options = {"num_ctx": 256, "num_predict": 4, "temperature": 0}
    body = {"model": smollm2, "messages": messages, "options": options}
    text = httpx.post(server.url + "/api/chat", json={**body, "_debug_render_only": True},
                      timeout=60).json()["_debug_info"]["rendered_template"]
    assert "You are terse." in text and "Last question?" in text and "Question 7:" in text
    assert "Question 0:" not in text
    kept = [i for i in range(8) if f"Question {i}:" in text]
    assert kept == list(range(kept[0], 8)), "the oldest messages go first"
    tokens = httpx.post(server.url + "/api/tokenize", json={"model": smollm2, "content": text}, timeout=60).json()
    assert 150 < len(tokens["tokens"]) <= 256
    reply = client.chat(model=smollm2, messages=messages, options=options)
    assert reply.done and reply.prompt_eval_count <= len(tokens["tokens"])
    whole = httpx.post(server.url + "/api/chat", json={**body, "truncate": False, "_debug_render_only": True},
                       timeout=60).json()["_debug_info"]["rendered_template"]
    assert "Question 0:" in whole


def test_chunks_carry_utc_times_with_nanoseconds(client: ollama.Client, smollm2: str) -> None:
    import re
    from datetime import datetime, timezone

    parts = list(client.generate(model=smollm2, prompt="Hi", options=FAST, stream=True))
    stamps = [p.created_at or "" for p in parts]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", s) for s in stamps), stamps
    padded = [s[:-1].ljust(29, "0") if "." in s else s[:-1] + ".000000000" for s in stamps]
    assert padded == sorted(padded)
    last = datetime.strptime(stamps[-1][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - last).total_seconds()) < 60
