"""Scheduling through a real server: eviction, keep-alive, the bounded queue, cancellation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import ollama
import pytest

from live_server import Server, start_server

QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("scheduler")
    srv = start_server(tmp, {"OLLAMA_MAX_LOADED_MODELS": "1", "OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "2"})
    (tmp / "Modelfile").write_text(f"FROM {smollm2_gguf}\n")
    srv.cli("create", "small", "-f", str(tmp / "Modelfile"))
    (tmp / "Modelfile.ctx").write_text("FROM small\nPARAMETER num_ctx 1024\n")
    srv.cli("create", "small-1k", "-f", str(tmp / "Modelfile.ctx"))
    yield srv
    srv.stop()


def loaded(server: Server) -> list[tuple[str, int]]:
    return [(m.model, m.context_length) for m in ollama.Client(host=server.url).ps().models]


def test_max_loaded_models_evicts_the_idle_model(busy_server: Server) -> None:
    client = ollama.Client(host=busy_server.url, timeout=120)
    client.generate(model="small", prompt="")
    assert loaded(busy_server) == [("small:latest", 4096)]
    client.generate(model="small-1k", prompt="")
    assert loaded(busy_server) == [("small-1k:latest", 1024)]
    client.generate(model="small-1k", prompt="", keep_alive=0)
    assert loaded(busy_server) == []


def test_keep_alive_expires_an_idle_model(busy_server: Server) -> None:
    client = ollama.Client(host=busy_server.url, timeout=120)
    client.generate(model="small", prompt="", keep_alive="1s")
    assert loaded(busy_server) == [("small:latest", 4096)]
    deadline = time.monotonic() + 30
    while loaded(busy_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert loaded(busy_server) == []


@pytest.mark.timeout(120)
def test_client_disconnect_cancels_the_sequence(busy_server: Server) -> None:
    body = {"model": "small", "prompt": "Write an endless story.", "options": {"num_predict": -1, "temperature": 1}}
    with httpx.stream("POST", busy_server.url + "/api/generate", json=body, timeout=60) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n == 2:
                break
    reply = ollama.Client(host=busy_server.url, timeout=100).generate(
        model="small", prompt="Hi", options={"num_predict": 3, "temperature": 0}
    )
    assert reply.done and reply.eval_count == 3, "the one slot was freed when the first client left"


@pytest.mark.timeout(120)
def test_tokenizing_does_not_wait_for_the_busy_slot(busy_server: Server) -> None:
    # A schema that needs 300 numbers cannot end before num_predict: the one slot stays busy for seconds.
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 300}
    body = {"model": "small", "prompt": "Count.", "format": schema, "options": {"temperature": 0, "num_predict": 300}}
    with httpx.stream("POST", busy_server.url + "/api/generate", json=body, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        tokens = httpx.post(busy_server.url + "/api/tokenize", json={"model": "small", "content": "Hello world"},
                            timeout=30).json()["tokens"]
        text = httpx.post(busy_server.url + "/api/detokenize", json={"model": "small", "tokens": tokens},
                          timeout=30).json()["content"]
        answered = time.time()
        final = json.loads(list(lines)[-1])
    assert text == "Hello world"
    finished = datetime.strptime(final["created_at"][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    assert final["done"] and finished.timestamp() > answered, "answered while the generation still ran"


@pytest.mark.timeout(180)
def test_full_queue_answers_503_and_nothing_hangs(busy_server: Server) -> None:
    ollama.Client(host=busy_server.url, timeout=120).generate(model="small", prompt="")
    results: list[tuple[int, dict]] = []

    def one(i: int) -> None:
        r = httpx.post(busy_server.url + "/api/generate", timeout=150, json={
            "model": "small", "prompt": f"Story {i}", "stream": False,
            "options": {"num_predict": 24, "temperature": 0},
        })
        results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=170)
    assert len(results) == 8, "every request was answered"
    busy = [body for status, body in results if status == 503]
    done = [body for status, body in results if status == 200]
    assert busy and all(body == {"error": QUEUE_FULL} for body in busy)
    assert done and all(body["done"] and body["eval_count"] == 24 for body in done)
    assert len(busy) + len(done) == 8
    assert busy_server.alive()


def test_stream_false_error_status_for_unknown_model(busy_server: Server) -> None:
    r = httpx.post(busy_server.url + "/api/chat", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert (r.status_code, json.loads(r.text)) == (404, {"error": "model 'nope' not found"})
