"""``ollama push`` / ``ollama pull`` through a running server and a real registry, then the model runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from live_server import Server, start_server


@pytest.fixture(scope="module")
def registry_server(docker_registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("registry-server"), {"OLLAMA_REGISTRIES": docker_registry})
    yield srv
    srv.stop()


def test_push_delete_pull_run(registry_server: Server, docker_registry: str, smollm2_gguf: Path,
                              tmp_path: Path) -> None:
    srv = registry_server
    (tmp_path / "Modelfile").write_text(f"FROM {smollm2_gguf}\nPARAMETER temperature 0\n")
    srv.cli("create", "smollm2", "-f", str(tmp_path / "Modelfile"))
    remote = f"{docker_registry}/library/smollm2:latest"
    srv.cli("cp", "smollm2", remote)
    pushed = srv.cli("push", remote, "--insecure").stdout
    assert "pushing manifest" in pushed and pushed.strip().endswith("success")
    srv.cli("rm", "smollm2", remote)
    assert not list((srv.models / "blobs").glob("sha256-*")), "deleting both names freed every blob"

    pulled = srv.cli("pull", remote, "--insecure").stdout.splitlines()
    assert pulled[0] == "pulling manifest" and pulled[-1] == "success"
    assert "verifying sha256 digest" in pulled and "writing manifest" in pulled
    model_sha = hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    blob = srv.models / "blobs" / f"sha256-{model_sha}"
    assert blob.is_file() and blob.stat().st_size == smollm2_gguf.stat().st_size

    client = ollama.Client(host=srv.url, timeout=120)
    assert client.show(remote).parameters.split() == ["temperature", "0"]
    reply = client.generate(model=remote, prompt="Hello", options={"num_predict": 4})
    assert reply.done and reply.response


def test_pull_of_unknown_model_reports_the_error_in_the_stream(registry_server: Server, docker_registry: str) -> None:
    with httpx.stream("POST", registry_server.url + "/api/pull",
                      json={"model": f"{docker_registry}/library/missing", "insecure": True}) as r:
        lines = [json.loads(line) for line in r.iter_lines()]
    assert r.status_code == 200
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"error": "pull model manifest: file does not exist"}
    r = httpx.post(registry_server.url + "/api/pull", json={"model": f"{docker_registry}/library/missing",
                                                            "insecure": True, "stream": False})
    assert r.status_code == 404 and r.json() == {"error": "pull model manifest: file does not exist"}


def test_pull_refuses_unlisted_and_metadata_registries(registry_server: Server) -> None:
    before = sorted(registry_server.models.rglob("*"))
    for name in ("169.254.169.254/library/x", "metadata.google.internal/library/x", "example.com/library/x"):
        r = httpx.post(registry_server.url + "/api/pull", json={"model": name, "stream": False})
        assert r.status_code in (400, 403), name
    assert sorted(registry_server.models.rglob("*")) == before
