"""64 concurrent clients on a small model: each request completes or gets 503; none hangs or is lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import Server, start_server

QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"
CLIENTS = 64


def rss(pid: int) -> int:
    """Resident memory of a process and its children, in bytes."""
    total = 0
    pids = [str(pid)]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += children.read_text().split()
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            continue
    return total


@pytest.fixture(scope="module")
def loaded_server(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("load")
    srv = start_server(tmp, {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_QUEUE": "24"})
    (tmp / "Modelfile").write_text(f"FROM {smollm2_gguf}\n")
    srv.cli("create", "small", "-f", str(tmp / "Modelfile"))
    yield srv
    srv.stop()


@pytest.mark.timeout(300)
def test_sixty_four_concurrent_clients(loaded_server: Server) -> None:
    url = loaded_server.url + "/api/generate"
    httpx.post(url, json={"model": "small", "prompt": "warm up", "stream": False,
                          "options": {"num_predict": 2}}, timeout=120)
    before = rss(loaded_server.process.pid)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        r = httpx.post(url, timeout=240, json={"model": "small", "prompt": f"Tell me about the number {i}.",
                                               "stream": i % 2 == 0, "options": {"num_predict": 8}})
        streamed = i % 2 == 0 and r.status_code == 200
        body = json.loads(r.text.splitlines()[-1]) if streamed else r.json()
        with lock:
            results.append((r.status_code, body))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=260)
    assert not any(t.is_alive() for t in threads), "no request hangs"
    assert len(results) == CLIENTS, "no request is lost"
    done = [b for s, b in results if s == 200]
    busy = [b for s, b in results if s == 503]
    assert len(done) + len(busy) == CLIENTS
    # Sampling is random, so a reply may end early at the end-of-generation token.
    finished = [b for b in done if b.get("done") and (b.get("done_reason"), b.get("eval_count")) in
                [("length", 8)] + [("stop", n) for n in range(1, 9)]]
    assert finished == done
    assert all(b == {"error": QUEUE_FULL} for b in busy)
    assert len(done) >= 24
    after = rss(loaded_server.process.pid)
    assert after - before < 256 * 1024 * 1024, f"memory grew by {(after - before) >> 20} MiB"
    assert loaded_server.alive()
