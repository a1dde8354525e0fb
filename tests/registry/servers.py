"""Loopback servers for registry tests: a scriptable (and, when told, hostile) registry and a TCP proxy."""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec

from ollama_core.store import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_PARAMS,
    Layer,
    Manifest,
    encode_manifest,
)

Route = Callable[["RegistryHandler"], None]

_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")
_MANIFEST_RE = re.compile(r"/v2/(.+)/manifests/([^/]+)")
_BLOB_RE = re.compile(r"/v2/(.+)/blobs/([^/]+)")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryHandler(BaseHTTPRequestHandler):
    """Dispatches every request to the :class:`FakeRegistry` that owns the server."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.server.registry.dispatch(self)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    @property
    def route_path(self) -> str:
        return self.path.partition("?")[0]

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """A complete response with ``Content-Length`` (no body for ``HEAD``)."""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def raw(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: FakeRegistry

    def handle_error(self, request: object, client_address: object) -> None:
        return


class FakeRegistry:
    """A registry v2 subset on ``127.0.0.1``: manifests and blobs from dictionaries, ranges,
    optional Bearer auth, a ``/storage/<digest>`` blob host, and overrides in ``routes`` keyed by
    ``(method, path)`` where a path ending in ``*`` matches by prefix."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.token = ""
        self.realm = ""
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), RegistryHandler)
        self._server.registry = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeRegistry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def paths(self) -> list[str]:
        """``METHOD path`` of every request received so far."""
        with self._lock:
            return [f"{method} {path}" for method, path, _ in self.requests]

    def add_model(self, repo: str, tag: str, layers: list[tuple[str, bytes]], config: bytes = b"{}") -> bytes:
        """Serve a manifest for ``repo:tag`` with these ``(media type, content)`` layers; returns its bytes."""
        entries = []
        for media_type, content in layers:
            self.blobs[digest_of(content)] = content
            entries.append(Layer(mediaType=media_type, digest=digest_of(content), size=len(content)))
        self.blobs[digest_of(config)] = config
        manifest = Manifest(
            config=Layer(mediaType=MEDIA_TYPE_CONFIG, digest=digest_of(config), size=len(config)), layers=entries
        )
        raw = encode_manifest(manifest)
        self.manifests[(repo, tag)] = raw
        return raw

    def add_small_model(self, repo: str = "library/tiny", tag: str = "latest", params: bytes = b'{"seed":1}') -> bytes:
        return self.add_model(repo, tag, [(MEDIA_TYPE_PARAMS, params)])

    def dispatch(self, h: RegistryHandler) -> None:
        path = h.route_path
        with self._lock:
            self.requests.append((h.command, path, {k.lower(): v for k, v in h.headers.items()}))
        route = self._route(h.command, path)
        if route is not None:
            route(h)
            return
        if path == "/token":
            h.reply(200, msgspec.json.encode({"token": self.token}), {"Content-Type": "application/json"})
            return
        if path.startswith("/storage/"):
            self._serve_blob(h, path.removeprefix("/storage/"))
            return
        if self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
            challenge = f'Bearer realm="{self.realm}",service="fake",scope="repository:x:pull"'
            h.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            return
        if match := _MANIFEST_RE.fullmatch(path):
            raw = self.manifests.get((match.group(1), match.group(2)))
            if raw is None:
                h.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
                return
            h.reply(200, raw, {"Content-Type": MEDIA_TYPE_MANIFEST, "Docker-Content-Digest": digest_of(raw)})
            return
        if match := _BLOB_RE.fullmatch(path):
            self._serve_blob(h, match.group(2))
            return
        h.reply(404)

    def _route(self, method: str, path: str) -> Route | None:
        for (route_method, pattern), route in self.routes.items():
            if route_method != method:
                continue
            if pattern == path or (pattern.endswith("*") and path.startswith(pattern[:-1])):
                return route
        return None

    def _serve_blob(self, h: RegistryHandler, digest: str) -> None:
        data = self.blobs.get(digest)
        if data is None:
            h.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            return
        match = _RANGE_RE.fullmatch(h.headers.get("Range", ""))
        if match is None or h.command == "HEAD":
            h.reply(200, data, {"Content-Type": "application/octet-stream"})
            return
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
        h.reply(206, data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})


class Proxy:
    """A loopback TCP proxy to ``127.0.0.1:target``.

    Counts the bytes sent back to clients; with ``cut_after`` it closes every connection and
    stops listening once that many bytes have gone back.
    """

    def __init__(self, target: int, cut_after: int | None = None) -> None:
        self.target = target
        self.cut_after = cut_after
        self.downstream = 0
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.cut.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if downstream:
                    with self._lock:
                        allowed = len(data) if self.cut_after is None else max(0, self.cut_after - self.downstream)
                        data = data[:allowed]
                        self.downstream += len(data)
                    sink.sendall(data)
                    if self.cut_after is not None and self.downstream >= self.cut_after:
                        self.close()
                        return
                else:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
