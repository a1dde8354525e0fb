"""Guards against known attacks on Ollama servers, performed against running servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import Server, start_server


def test_dns_rebinding_host_header_is_refused_on_loopback(server: Server) -> None:
    for host in ("evil.example.com", "attacker.com:11434", "1.2.3.4"):
        r = httpx.get(server.url + "/api/tags", headers={"Host": host})
        assert (r.status_code, r.content) == (403, b""), host
    for host in ("localhost", f"localhost:{server.url.rsplit(':', 1)[1]}", "127.0.0.1", "[::1]:80", "box.local",
                 "10.0.0.5", "app.localhost"):
        assert httpx.get(server.url + "/api/tags", headers={"Host": host}).status_code == 200, host


def test_cors_allows_local_origins_only(server: Server) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(server.url + "/api/chat", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        })

    for origin in ("http://localhost:3000", "http://127.0.0.1", "app://obsidian.md", "vscode-webview://abc"):
        r = preflight(origin)
        assert r.status_code in (200, 204) and r.headers.get("access-control-allow-origin") == origin, origin
    for origin in ("https://evil.example.com", "chrome-extension://abcdef"):
        r = preflight(origin)
        assert r.headers.get("access-control-allow-origin") != origin, origin
    r = httpx.get(server.url + "/api/version", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in r.headers


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("guarded"), {"OLLAMA_API_KEY": "s3cret",
                                                            "OLLAMA_ORIGINS": "chrome-extension://*"})
    yield srv
    srv.stop()


def test_api_key_protects_everything_but_liveness(guarded: Server) -> None:
    assert httpx.get(guarded.url + "/").status_code == 200
    assert httpx.get(guarded.url + "/api/version").status_code == 200
    for method, path in (("GET", "/api/tags"), ("POST", "/api/show"), ("DELETE", "/api/delete"),
                         ("POST", "/api/create"), ("HEAD", "/api/blobs/sha256:" + "0" * 64)):
        r = httpx.request(method, guarded.url + path, json={})
        assert r.status_code == 401, path
        r = httpx.request(method, guarded.url + path, json={}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, path
    r = httpx.get(guarded.url + "/api/tags", headers={"Authorization": "Bearer s3cret"})
    assert r.json() == {"models": []}
    assert guarded.cli("list").stdout.split() == ["NAME", "ID", "SIZE", "MODIFIED"], "the CLI sends OLLAMA_API_KEY"


def test_extension_origins_only_when_listed(guarded: Server) -> None:
    r = httpx.options(guarded.url + "/api/tags", headers={"Origin": "chrome-extension://abc",
                                                           "Access-Control-Request-Method": "GET"})
    assert r.headers.get("access-control-allow-origin") == "chrome-extension://abc"


def test_prompts_are_not_logged_at_the_default_level(server: Server, smollm2: str) -> None:
    secret = "zebra-password-91827"
    httpx.post(server.url + "/api/generate", timeout=120,
               json={"model": smollm2, "prompt": secret, "stream": False, "options": {"num_predict": 2}})
    assert secret not in server.log.read_text()


def test_oversized_json_body_is_refused(tmp_path: Path) -> None:
    srv = start_server(tmp_path, {"OLLAMA_MAX_REQUEST_SIZE": "4096"})
    try:
        r = httpx.post(srv.url + "/api/show", content=b'{"model":"' + b"a" * 10000 + b'"}')
        assert r.status_code == 413
        assert srv.alive()
    finally:
        srv.stop()
