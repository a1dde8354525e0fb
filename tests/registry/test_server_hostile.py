"""A hostile registry against a running server's ``/api/pull`` (security.md classes 1, 6 and 8).

The server may pull from the test's registry (listed in ``OLLAMA_REGISTRIES``); every attack ends
in an error line or status, nothing is written outside the store, no model appears, and the
server keeps answering.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from live_server import Server, start_server
from ollama_core.store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST

from .servers import FakeRegistry, digest_of

MANIFEST = "/v2/library/tiny/manifests/latest"


@pytest.fixture(scope="module")
def hostile() -> Iterator[FakeRegistry]:
    registry = FakeRegistry().start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def pulling_server(hostile: FakeRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("hostile-pull"), {"OLLAMA_REGISTRIES": hostile.host})
    yield srv
    srv.stop()


def _pull(server: Server, registry: FakeRegistry) -> list[dict]:
    lines: list[dict] = []
    with httpx.stream("POST", server.url + "/api/pull", timeout=60,
                      json={"model": f"{registry.host}/library/tiny", "insecure": True}) as r:
        if r.status_code != 200:
            return [json.loads(r.read())]
        lines = [json.loads(line) for line in r.iter_lines()]
    return lines


def _files(server: Server) -> list[Path]:
    return sorted(p for p in server.models.rglob("*") if p.is_file() and "partial" not in p.name)


@pytest.fixture
def clean(pulling_server: Server, hostile: FakeRegistry) -> Iterator[None]:
    hostile.routes.clear()
    hostile.blobs.clear()
    files = _files(pulling_server)
    beside = sorted(p.name for p in pulling_server.models.parent.iterdir())
    yield
    assert _files(pulling_server) == files, "no model or blob appeared"
    assert sorted(p.name for p in pulling_server.models.parent.iterdir()) == beside, "nothing beside the store"
    assert pulling_server.alive()


def _serve_manifest(registry: FakeRegistry, manifest: dict[str, object]) -> None:
    raw = msgspec.json.encode(manifest)
    registry.routes[("GET", MANIFEST)] = lambda h: h.reply(200, raw, {"Content-Type": MEDIA_TYPE_MANIFEST})


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize("digest", ["sha256:../../../../escaped", "../../escaped", "sha256:" + "0" * 64 + "/../x"])
def test_traversing_digest(pulling_server: Server, hostile: FakeRegistry, digest: str) -> None:
    config = {"mediaType": MEDIA_TYPE_CONFIG, "digest": digest_of(b"{}"), "size": 2}
    _serve_manifest(hostile, {"schemaVersion": 2, "config": config, "layers": [{**config, "digest": digest}]})
    lines = _pull(pulling_server, hostile)
    assert "invalid digest" in lines[-1]["error"]
    assert not (pulling_server.models.parent / "escaped").exists()
    assert hostile.paths()[-1] == f"GET {MANIFEST}", "no blob is requested from a bad manifest"


@pytest.mark.usefixtures("clean")
def test_compression_bomb(pulling_server: Server, hostile: FakeRegistry) -> None:
    bomb = gzip.compress(b"\0" * (16 << 20))
    hostile.routes[("GET", MANIFEST)] = lambda h: h.reply(200, bomb, {"Content-Encoding": "gzip"})
    assert "compressed response" in _pull(pulling_server, hostile)[-1]["error"]


@pytest.mark.usefixtures("clean")
def test_blob_not_matching_its_digest(pulling_server: Server, hostile: FakeRegistry) -> None:
    raw = hostile.add_small_model(params=b'{"seed":1}')
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]
    hostile.blobs[digest] = b'{"seed":2}'
    assert _pull(pulling_server, hostile)[-1]["error"].startswith("digest mismatch")


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/",
                                      "http://metadata.google.internal/computeMetadata/v1/"])
def test_redirect_to_cloud_metadata(pulling_server: Server, hostile: FakeRegistry, location: str) -> None:
    raw = hostile.add_small_model()
    digest = msgspec.json.decode(raw)["layers"][0]["digest"]
    hostile.routes[("GET", f"/v2/library/tiny/blobs/{digest}")] = lambda h: h.reply(307, headers={"Location": location})
    assert "refusing" in _pull(pulling_server, hostile)[-1]["error"]
