"""What Ollama users ask for that Ollama lacks: tokenize/detokenize and Prometheus metrics."""

from __future__ import annotations

import httpx

from live_server import Server


def test_tokenize_round_trip(server: Server, smollm2: str) -> None:
    r = httpx.post(server.url + "/api/tokenize", json={"model": smollm2, "content": "Hello world"}, timeout=60)
    tokens = r.json()["tokens"]
    assert r.status_code == 200 and tokens and all(isinstance(t, int) for t in tokens)
    r = httpx.post(server.url + "/api/detokenize", json={"model": smollm2, "tokens": tokens}, timeout=60)
    assert r.json()["content"].endswith("Hello world")
    r = httpx.post(server.url + "/api/tokenize", json={"model": "nope", "content": "x"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'nope' not found"})
    r = httpx.post(server.url + "/api/detokenize", json={"model": smollm2, "tokens": ["a"]})
    assert r.status_code == 400


def test_metrics(server: Server, smollm2: str) -> None:
    httpx.post(server.url + "/api/generate", timeout=120,
               json={"model": smollm2, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
    text = httpx.get(server.url + "/metrics").text
    lines = {line.split(" ")[0]: line.split(" ")[-1] for line in text.splitlines() if line and line[0] != "#"}
    assert float(lines['ollama_generated_tokens_total{model="smollm2:latest"}']) >= 3
    assert float(lines['ollama_prompt_tokens_total{model="smollm2:latest"}']) >= 1
    assert 'ollama_loaded_models{model="smollm2:latest"}' in lines
    assert "ollama_queue_depth" in lines
    assert any(key.startswith("ollama_requests_total") and 'path="/api/generate"' in key for key in lines)
    assert any(key.startswith("ollama_request_duration_seconds_bucket") for key in lines)
