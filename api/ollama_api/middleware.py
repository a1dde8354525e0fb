"""Request guards applied before routing: Host-header check, optional bearer token, CORS origins."""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Iterable

from litestar.config.cors import CORSConfig
from litestar.types import ASGIApp, Receive, Scope, Send

from ollama_core.settings import Settings

DEFAULT_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")
DEFAULT_ORIGIN_SCHEMES = ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
OPEN_PATHS = frozenset({"/", "/api/version"})


def _host_name(header: str) -> str:
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host


def allowed_host(header: str) -> bool:
    """Whether a ``Host`` header names this machine (Ollama's rule for loopback listeners)."""
    host = _host_name(header)
    if not host or host == "localhost":
        return True
    try:
        if host == socket.gethostname().lower():
            return True
    except OSError:
        pass
    if host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


def _send_status(status: int) -> tuple[dict[str, object], dict[str, object]]:
    start = {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]}
    return start, {"type": "http.response.body", "body": b""}


def guard_middleware(settings: Settings) -> type:
    """An ASGI middleware class enforcing the Host check (loopback listeners only) and ``OLLAMA_API_KEY``."""
    check_host = settings.host.is_loopback
    expected = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    class Guard:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            headers = dict(scope.get("headers") or [])
            if check_host and not allowed_host(headers.get(b"host", b"").decode("latin-1")):
                for message in _send_status(403):
                    await send(message)  # type: ignore[arg-type]
                return
            if expected is not None and scope["method"] != "OPTIONS" and scope["path"] not in OPEN_PATHS:
                given = headers.get(b"authorization", b"")
                if not hmac.compare_digest(given, expected):
                    body = b'{"error":"unauthorized"}'
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 401,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            await self.app(scope, receive, send)

    return Guard


def _origin_pattern(origins: Iterable[str]) -> str:
    parts = []
    for origin in origins:
        parts.append(".*".join(re.escape(piece) for piece in origin.split("*")))
    return "^(" + "|".join(parts) + ")$"


def cors_config(settings: Settings) -> CORSConfig:
    """CORS: ``OLLAMA_ORIGINS`` plus localhost origins on any port and desktop-app schemes."""
    origins = list(settings.origins)
    for host in DEFAULT_ORIGIN_HOSTS:
        origins += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    origins += list(DEFAULT_ORIGIN_SCHEMES)
    return CORSConfig(
        allow_origins=[],
        allow_origin_regex=_origin_pattern(origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=["*"],
        allow_credentials=False,
    )
